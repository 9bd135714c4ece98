"""The scheduler's pure state machine: ``SchedulerState.handle(*events) -> commands``.

See :mod:`taskmill.core.scheduler.state` for its theory of operation.
"""

from taskmill.core.scheduler.state import SchedulerState

__all__ = ["SchedulerState"]
