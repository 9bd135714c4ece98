"""The worker's half of work stealing: give a task back only if it has not started.

Theory of operation
-------------------
The scheduler may move a task it sent here to another worker (see
:mod:`taskmill.core.scheduler.stealing`).  It asks first, with
``StealRequest(key)`` on this worker's stream, and moves the task only when
this worker confirms, so the call never runs twice and is never dropped by
both workers:

* the key is a task assigned here that has not started (``waiting`` for its
  inputs or ``ready`` for a thread): the worker lets it go exactly as a
  ``FreeKeys`` would (:meth:`WorkerBookkeeping._drop_assignment`: its queue
  entry and the fetches only it needed go; an input of another task here is
  kept), and answers ``StealResponse(stolen=True)``;
* anything else (executing, cancelled, finished, failed, a copy in flight, or
  a key not known here because a ``FreeKeys`` came first): the worker keeps
  what it has and answers ``stolen=False``.  A finished task's
  ``TaskFinished`` left before this answer on the same FIFO stream, so the
  scheduler has already seen it.

The answer carries ``seen``: the request's own ``epoch`` (this layer takes it
as the last one handled, as for every scheduler message), which the
scheduler uses to match the answer to its request and to recognise an
answer that crossed a ``FreeKeys`` of the key.  This layer is part of
:class:`~taskmill.core.worker.state.WorkerState`; it decides from the
record's state only, with no clock.
"""

from __future__ import annotations

from taskmill.core.worker.bookkeeping import WorkerBookkeeping
from taskmill.core.worker.records import READY, WAITING
from taskmill.protocol.vocabulary import StealRequest, StealResponse

__all__ = ["StealHandlers"]


class StealHandlers(WorkerBookkeeping):
    """The ``StealRequest`` handler of the worker machine (see the module docstring)."""

    #: the ``epoch`` of the last scheduler message handled (set by ``WorkerState``)
    epoch: int

    def _on_steal_request(self, ev: StealRequest) -> None:
        """Release ``ev.key`` if it has not started, and say whether it was."""
        self.epoch = ev.epoch
        key = ev.key
        ts = self.tasks.get(key)
        stolen = ts is not None and ts.assigned and (ts.state == WAITING or ts.state == READY)
        if ts is not None and stolen:
            self._note(key, "note", "stolen: released before it started")
            self._drop_assignment(ts)
        else:
            state = "unknown here" if ts is None else ts.state
            self._note(key, "ignored", f"steal refused: {state}")
        self._out.append(StealResponse(ev.stimulus_id, self.address, key, stolen, seen=self.epoch))
