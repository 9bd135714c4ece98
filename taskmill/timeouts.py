"""How long taskmill waits for the network, in one place.

Every wait on another process (connecting, a request's reply, a stream
closing, a worker handing its data over) is bounded by one of the timeouts
below.  Each is read from its environment variable when it is used (so a
value set before a process starts applies to everything in it, and tests
can change it), falling back to the default.  A timeout error names what
was being waited for, the address, and the variable to raise.

=============================  =======  ==========================================
variable                       default  what it bounds
=============================  =======  ==========================================
TASKMILL_CONNECT_TIMEOUT       10 s     connecting to the scheduler (refused
                                        connections are retried until then)
TASKMILL_PEER_CONNECT_TIMEOUT  2 s      connecting to a worker or nanny (a refused
                                        connection almost always means it died)
TASKMILL_REQUEST_TIMEOUT       30 s     the reply to a short request (who-has,
                                        scheduler-info, a nanny's worker-exited)
TASKMILL_DATA_TIMEOUT          300 s    the reply to a get-data (moving results)
TASKMILL_RETIRE_TIMEOUT        30 s     replicate / retire_workers: copies made, data
                                        moved off a retiring worker
TASKMILL_RECONNECT_TIMEOUT     30 s     a worker trying to reach its scheduler, at
                                        start or after losing it, before it exits
                                        (its nanny then stops too instead of
                                        respawning it); ``--death-timeout``
TASKMILL_LEASE_TIMEOUT         30 s     how long a Lock or Semaphore lease outlives
                                        its holder's last sign of life while its
                                        client stays connected (a disconnect frees
                                        it at once; see taskmill.server.locks)
=============================  =======  ==========================================

Waits that are deliberately unbounded: a user's ``result()``/``gather``
without ``timeout=`` (the computation may take hours; a lost scheduler or
worker ends it with an error instead), and ``Executor.run`` (user code).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Timeout:
    """One configurable timeout: ``get()`` is its value in seconds."""

    env: str
    default: float
    what: str

    def get(self) -> float:
        """The value from ``$env`` (seconds, > 0), else the default."""
        text = os.environ.get(self.env)
        if text is None or text.strip() == "":
            return self.default
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not value > 0:
            raise ValueError(
                f"{self.env}={text!r} is not a valid timeout: give a number of seconds > 0 "
                f"(it bounds {self.what})")
        return value


CONNECT = Timeout("TASKMILL_CONNECT_TIMEOUT", 10.0, "connecting to the scheduler")
PEER_CONNECT = Timeout("TASKMILL_PEER_CONNECT_TIMEOUT", 2.0, "connecting to a worker or nanny")
REQUEST = Timeout("TASKMILL_REQUEST_TIMEOUT", 30.0, "the reply to a short request")
DATA = Timeout("TASKMILL_DATA_TIMEOUT", 300.0, "the reply to a get-data request")
RETIRE = Timeout("TASKMILL_RETIRE_TIMEOUT", 30.0, "moving data off retiring workers")
RECONNECT = Timeout("TASKMILL_RECONNECT_TIMEOUT", 30.0,
                    "a worker trying to reach its scheduler (at start or after losing it) "
                    "before it exits")
LEASE = Timeout("TASKMILL_LEASE_TIMEOUT", 30.0,
                "how long a Lock or Semaphore lease outlives its silent holder")


def seconds(timeout: float | Timeout) -> tuple[float, str]:
    """``timeout`` in seconds, and a hint naming its variable for error messages
    (empty for a plain number: the caller chose it)."""
    if isinstance(timeout, Timeout):
        return timeout.get(), f" (set {timeout.env} to change it)"
    return timeout, ""
