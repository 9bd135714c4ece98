"""Look-ahead placement: a dependent goes to the worker computing its inputs
before they finish.

Theory of operation
-------------------
Without look-ahead each link of a chain of tasks costs a scheduler round
trip: the worker reports ``TaskFinished`` for link k, the scheduler marks it
in memory, places link k+1 and sends its ``ComputeTask``, and only then does
the worker start it.  With look-ahead, a *waiting* task whose inputs are all
either in memory on worker W or ``processing`` on W is sent to W at once
(``ComputeTask`` with no holder for the inputs still being computed).  W's
machine keeps it ``waiting`` on its local inputs (it never fetches a key it
computes itself) and starts it the moment they are in memory, in the same
step as the inputs' ``TaskFinished``: the link costs no round trip.

On the scheduler such a task is ``processing`` on W with a non-empty
``waiting_on`` (the inputs not in memory yet, every one processing on W):
that is the whole record of a look-ahead assignment, and the story says
``look-ahead on W``.  When an input finishes there it leaves ``waiting_on``
as for any waiter and the task is an ordinary processing one.

:class:`LookAhead` decides (``eligible``), the task machine acts
(``TaskMachine``'s ``_look_ahead`` pass at the end of ``schedule_ready``).
Candidates are collected on ``Step.ahead``: the waiters of a task that
starts processing, and a task that starts waiting while its inputs are
being computed.  A dependent goes ahead only when W would have been chosen
anyway once its inputs finish (``policy.choose_worker`` takes the idle
worker holding the inputs):

* W has a free slot now (``Membership.idle``: alive, open, ``used <
  capacity``), so look-ahead never goes past a worker's slots and a window
  of at most a worker's slots of a chain is in flight; a candidate refused
  only for want of a slot is remembered (``blocked``, at most
  ``MAX_BLOCKED`` per worker) and tried again when W frees one, unless tasks
  wait in the scheduler's queue: a freed slot goes to queued work first, so
  look-ahead never competes with it (in a big graph it acts on the tail, once
  the roots are placed);
* every input is in memory on W or processing on W (inputs split across
  workers: no look-ahead), and there are at most ``MAX_AHEAD_INPUTS`` of
  them (a wide reduction moves data anyway, and checking it on every
  input's start would cost O(inputs^2));
* the task needs no abstract resources, is not an actor, and its
  restrictions (if any) allow W.

At most ``MAX_AHEAD_SCAN`` waiters of a starting task are looked at (a task
with thousands of dependents is not scanned on every start), and at most
``MAX_AHEAD_SCAN`` refused candidates are tried again per freed slot, oldest
first; one that no longer waits on that worker's inputs is dropped then.

Failure paths (the task machine and stealing keep to them):

* an input leaves ``processing`` other than to memory (it erred, was
  retried, stolen, released, or its worker died): its look-ahead dependents
  are withdrawn (recommended back to ``waiting``: ``FreeKeys`` to W, which
  drops them) and placed again, or erred, as for any dependent;
* work stealing never asks for a look-ahead task nor for an input with a
  dependent sent ahead (``sent_ahead``);
* a look-ahead task never counts as suspicious when its worker dies (it
  cannot have started: its inputs were not reported finished);
* an input lost from memory on W sends the dependent back to waiting, as
  for any processing task;
* a dependent sent ahead may start on W before a cancel or release of it
  gets there (when its input finishes first); W then drops its result, as
  for any task already sent to a worker.

Cost: O(1) per candidate (at most ``MAX_AHEAD_INPUTS`` inputs looked at);
a task that starts processing adds at most ``MAX_AHEAD_SCAN`` candidates,
a freed slot as many.  Off with the option ``scheduler.look-ahead: false``.
"""

from __future__ import annotations

from itertools import islice

from taskmill.core.scheduler.membership import Membership
from taskmill.core.scheduler.records import MEMORY, PROCESSING, WAITING, TaskRecord, WorkerRecord
from taskmill.core.scheduler.task_queue import TaskQueue

__all__ = ["LookAhead", "MAX_AHEAD_INPUTS", "MAX_AHEAD_SCAN", "MAX_BLOCKED", "sent_ahead"]

#: A task with more inputs than this never goes ahead.
MAX_AHEAD_INPUTS = 4
#: Waiters of a task starting to process looked at for look-ahead, at most.
MAX_AHEAD_SCAN = 8
#: Refused candidates remembered per worker, at most (the oldest is forgotten).
MAX_BLOCKED = 64


def sent_ahead(ts: TaskRecord) -> bool:
    """Whether ``ts`` (processing) has a dependent sent ahead to its worker:
    a processing waiter of a task not in memory can only be a look-ahead one."""
    for dts in ts.waiters:
        if dts.state == PROCESSING:
            return True
    return False


class LookAhead:
    """The look-ahead rule (see the module docstring).  Owns ``blocked``:
    worker -> candidates refused only for want of a free slot there, tried
    again when it frees one (entries die lazily)."""

    def __init__(self, membership: Membership, queue: TaskQueue, enabled: bool) -> None:
        self.membership = membership
        #: the shared queue of queued tasks (``Placement.queue``)
        self.queue = queue
        #: the option ``scheduler.look-ahead``
        self.enabled = enabled
        self.blocked: dict[WorkerRecord, dict[TaskRecord, None]] = {}

    @staticmethod
    def candidates(ts: TaskRecord) -> list[TaskRecord]:
        """The waiters of ``ts`` (which just started processing) to consider:
        those with few enough inputs to ever go ahead (the sums of a wide
        reduction never do, and are not looked at again for each input)."""
        return [dts for dts in islice(ts.waiters, MAX_AHEAD_SCAN)
                if len(dts.dependencies) <= MAX_AHEAD_INPUTS]

    def eligible(self, ts: TaskRecord) -> WorkerRecord | None:
        """The worker ``ts`` may go ahead to now, or None (see the module docstring)."""
        if ts.state != WAITING or not ts.waiting_on or ts.resources is not None:
            return None
        if ts.func_token is None or ts.actor or len(ts.dependencies) > MAX_AHEAD_INPUTS:
            return None
        ws = next(iter(ts.waiting_on)).processing_on
        if ws is None:
            return None
        free = ws in self.membership.idle
        if not free and (not ws.open or self.queue.peek() is not None):
            return None  # its next free slot goes to queued work
        if ts.restrictions is not None and ws.address not in ts.restrictions:
            return None
        for dts in ts.dependencies:
            if dts.state == MEMORY:
                if ws not in dts.who_has:
                    return None
            elif dts.processing_on is not ws:
                return None
        if not free:
            blocked = self.blocked.get(ws)
            if blocked is None:
                self.blocked[ws] = {ts: None}
            else:
                if len(blocked) >= MAX_BLOCKED:
                    del blocked[next(iter(blocked))]
                blocked[ts] = None
            return None
        return ws

    def unblock(self, ws: WorkerRecord) -> list[TaskRecord]:
        """``ws`` has a free slot again: the oldest ``MAX_AHEAD_SCAN`` candidates
        it refused, to try again (the others wait for the next free slot, so a
        freed slot costs O(1) however many wait)."""
        blocked = self.blocked.get(ws)
        if not blocked:
            return []
        retry = list(islice(blocked, MAX_AHEAD_SCAN))
        if len(retry) == len(blocked):
            del self.blocked[ws]
        else:
            for ts in retry:
                del blocked[ts]
        return retry

    def worker_left(self, ws: WorkerRecord) -> None:
        """``ws`` is gone: forget its refused candidates."""
        self.blocked.pop(ws, None)

    def clear_tasks(self) -> None:
        """Every task is gone (restart)."""
        self.blocked.clear()
