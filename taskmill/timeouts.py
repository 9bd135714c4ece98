"""How long taskmill waits for the network, in one place.

Every wait on another process (connecting, a request's reply, a stream
closing, a worker handing its data over) is bounded by one of the timeouts
below, each an option of :mod:`taskmill.config` (``comm.timeouts.*`` and
``scheduler.lease-timeout``; docs/configuration.md has the table of every
option, its default and its older environment variable, such as
``TASKMILL_CONNECT_TIMEOUT``, which still works).  Each is read when it is
used, from the configuration's cache, so ``taskmill.config.set`` applies at
once.  A timeout error names what was being waited for, the address, and
the option and variable to raise.

Waits that are deliberately unbounded: a user's ``result()``/``gather``
without ``timeout=`` (the computation may take hours; a lost scheduler or
worker ends it with an error instead), and ``Executor.run`` (user code).
"""

from __future__ import annotations

from dataclasses import dataclass

from taskmill import config
from taskmill.config_checks import seconds as _seconds


@dataclass(frozen=True, slots=True)
class Timeout:
    """One configurable timeout: ``get()`` is its value in seconds."""

    key: str
    env: str
    what: str

    def get(self) -> float:
        """The value of option ``key`` in seconds (> 0); a bad value raises
        ValueError naming the option, where its value came from, and what it bounds."""
        try:
            return config.read(self.key, _seconds)
        except ValueError as exc:
            raise ValueError(f"{exc} (it bounds {self.what})") from None

    @property
    def hint(self) -> str:
        """How to change it, for error messages."""
        return f"set {self.env} or the option {self.key} to change it"


CONNECT = Timeout("comm.timeouts.connect", "TASKMILL_CONNECT_TIMEOUT", "connecting to the scheduler")
PEER_CONNECT = Timeout("comm.timeouts.peer-connect", "TASKMILL_PEER_CONNECT_TIMEOUT",
                       "connecting to a worker or nanny")
REQUEST = Timeout("comm.timeouts.request", "TASKMILL_REQUEST_TIMEOUT", "the reply to a short request")
DATA = Timeout("comm.timeouts.data", "TASKMILL_DATA_TIMEOUT", "the reply to a get-data request")
RETIRE = Timeout("comm.timeouts.retire", "TASKMILL_RETIRE_TIMEOUT", "moving data off retiring workers")
RECONNECT = Timeout("comm.timeouts.reconnect", "TASKMILL_RECONNECT_TIMEOUT",
                    "a worker trying to reach its scheduler (at start or after losing it) "
                    "before it exits")
CLIENT_RECONNECT = Timeout("comm.timeouts.client-reconnect", "TASKMILL_CLIENT_RECONNECT_TIMEOUT",
                           "a client trying to reach its scheduler again after losing it, before "
                           "its pending futures fail")
HELD_GRACE = Timeout("scheduler.held-keys-grace", "TASKMILL_HELD_KEYS_GRACE",
                     "how long a scheduler keeps data that re-registering workers hold and no "
                     "client has claimed (re-submitted) yet, before it frees it")
LEASE = Timeout("scheduler.lease-timeout", "TASKMILL_LEASE_TIMEOUT",
                "how long a Lock or Semaphore lease outlives its silent holder")


def seconds(timeout: float | Timeout) -> tuple[float, str]:
    """``timeout`` in seconds, and a hint naming its option and variable for
    error messages (empty for a plain number: the caller chose it)."""
    if isinstance(timeout, Timeout):
        return timeout.get(), f" ({timeout.hint})"
    return timeout, ""
