"""Tasks that wait while no worker is connected.

Theory of operation
-------------------
With every worker gone (killed, retired, never started), submitted tasks
wait in ``queued`` or ``no-worker`` (and their dependents in ``waiting``)
until a worker joins: a computation simply stops.  Waiting is right when
workers are coming (a batch job in a queue, a restart), but it must not be
silent, and a user may prefer an error to a wait without end.

The shell keeps the clock (:mod:`taskmill.server.no_workers_watch`): it asks
``waiting()`` how many tasks are still to compute while the cluster has no
worker, warns the clients at growing intervals, and once the option
``scheduler.no-workers-timeout`` has passed it feeds ``NoWorkersTimedOut``.
This part then errs every ready task (``queued``, ``no-worker``) with
``NoWorkersError``, naming how long no worker was there and the option; their
dependents err with the same error, as for any failed input.  A worker that
joined meanwhile makes the event a no-op: the tasks run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taskmill.core.scheduler.events import NoWorkersTimedOut
from taskmill.core.scheduler.membership import Membership
from taskmill.core.scheduler.records import ACTIVE_STATES, ERRED, NO_WORKER, QUEUED, ErrorInfo
from taskmill.core.scheduler.step import Step
from taskmill.core.scheduler.transitions import TaskMachine

__all__ = ["NO_WORKERS", "NoWorkers", "NoWorkersClock", "Stranded"]

#: the error type of tasks failed for want of workers (``KeyErred.error_type``)
NO_WORKERS = "NoWorkersError"


class NoWorkers:
    """Counts the tasks stranded without workers; errs them when told the wait is over."""

    def __init__(self, machine: TaskMachine, membership: Membership) -> None:
        self.machine = machine
        self.membership = membership

    def handlers(self) -> dict[type, Callable[[Step, Any], None]]:
        """The events this part handles, for ``SchedulerState``'s table."""
        return {NoWorkersTimedOut: self.timed_out}

    def waiting(self) -> int:
        """How many tasks wait to be computed while no worker is connected (0
        while one is: then nothing is stranded)."""
        if self.membership.workers:
            return 0
        return sum(1 for ts in self.machine.tasks.values() if ts.state in ACTIVE_STATES)

    def timed_out(self, step: Step, ev: NoWorkersTimedOut) -> None:
        """Err the ready tasks (their dependents follow), unless a worker joined."""
        if self.membership.workers:
            return
        text = (f"no worker was connected to the scheduler for {ev.waited:.0f}s "
                f"(option scheduler.no-workers-timeout: {ev.timeout:g}s), so the task could "
                f"not run: start workers, or raise or unset that option to wait longer")
        error = ErrorInfo(None, None, text, "", NO_WORKERS)
        for ts in [ts for ts in self.machine.tasks.values() if ts.state in (QUEUED, NO_WORKER)]:
            self.machine.transition(step, ts, ERRED, error)


#: seconds of waiting without workers before the first warning; each next one
#: comes after twice the wait of the one before (5 s, 10 s, 20 s, 40 s ...)
FIRST_WARNING = 5.0


@dataclass(slots=True)
class Stranded:
    """What one tick of :class:`NoWorkersClock` found."""

    #: seconds tasks have waited with no worker connected (0: not waiting)
    waited: float = 0.0
    #: warn now (the clients and the log)
    warn: bool = False
    #: the no-workers timeout has passed: err the tasks now
    timed_out: bool = False


class NoWorkersClock:
    """Since when tasks have waited without any worker, when to warn, and when
    the option ``scheduler.no-workers-timeout`` (``timeout``; None: never)
    has passed.  The shell ticks it about once a second with the count of
    ``NoWorkers.waiting`` and its clock."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.since: float | None = None
        self._next_warning = FIRST_WARNING

    def tick(self, waiting: int, now: float) -> Stranded:
        """``waiting`` tasks wait with no worker at ``now`` (0: none, or workers are there)."""
        if not waiting:
            self.since = None
            self._next_warning = FIRST_WARNING
            return Stranded()
        if self.since is None:
            self.since = now
        waited = now - self.since
        result = Stranded(waited)
        if waited >= self._next_warning:
            result.warn = True
            self._next_warning *= 2
        if self.timeout is not None and waited >= self.timeout:
            result.timed_out = True
            self.since = None  # the tasks err; new ones start a new wait
            self._next_warning = FIRST_WARNING
        return result
