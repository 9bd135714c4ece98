"""Exceptions users see.  Each message says what went wrong and how to fix it."""

from __future__ import annotations


class TaskmillError(Exception):
    """Base class of errors raised by taskmill itself."""


class KilledWorker(TaskmillError):
    """A task was running on several workers when each of them died."""


class MissingDependencyError(TaskmillError, KeyError):
    """A task depends on a key that no task provides and no client holds."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class FutureLostError(TaskmillError):
    """The data of a future is gone and cannot be recomputed (e.g. scattered
    data held only by a worker that died)."""


class SchedulerGoneError(TaskmillError, ConnectionError):
    """The connection to the scheduler was lost and not regained within the
    client's reconnect window (option ``comm.timeouts.client-reconnect``), or
    the Executor was closed; pending futures fail with it."""


class RemoteTaskError(TaskmillError):
    """A task raised an exception whose type cannot be rebuilt on the client."""


class ActorLostError(TaskmillError, ConnectionError):
    """An actor's object is gone: its worker died or restarted, or the actor
    was released.  An actor lives on one worker only; make a new one."""


class NoWorkersError(TaskmillError):
    """No worker was connected for longer than the option
    ``scheduler.no-workers-timeout``, so a task could not run."""


class RemoteTraceback(Exception):
    """Carries the traceback text of a task that raised on a worker.  Set as
    the ``__cause__`` of the re-raised exception, as ``concurrent.futures.process``
    does, so the remote frames print under the local ones."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


SCHEDULER_ERROR_TYPES: dict[str, type[TaskmillError]] = {
    "KilledWorker": KilledWorker,
    "MissingDependencyError": MissingDependencyError,
    "FutureLostError": FutureLostError,
    "ActorLostError": ActorLostError,
    "NoWorkersError": NoWorkersError,
}
