"""The worker's pure state machine: ``WorkerState.handle(*events) -> commands``.

See :mod:`taskmill.core.worker.state` for its theory of operation.
"""

from taskmill.core.worker.state import WorkerState

__all__ = ["WorkerState"]
