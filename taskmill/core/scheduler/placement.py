"""Placement for the pure scheduler: where a ready task runs, and the queues
of the ready tasks that found no free slot.

Theory of operation
-------------------
:class:`Placement` owns everything the scheduler knows for choosing: the
shared heap of queued tasks (``queue``), the per-worker heaps of tasks
strictly restricted to some workers (kept on ``WorkerRecord.restricted_queue``
so a worker freeing a slot finds them at once), the index of strictly
restricted tasks waiting for an address (``restricted_waiting``, so a worker
joining there finds them), and what finished tasks taught it per task-name
prefix (``durations``, ``output_bytes``).  Tasks needing abstract resources
are queued in the :class:`~taskmill.core.scheduler.resource_index.ResourceIndex`
it is given instead.  The policy itself (slots, locality, the lazy heaps) is
the pure functions of ``taskmill.core.scheduler.policy``.

Placement decides; the task machine acts.  ``where(ts)`` names the worker a
ready task should start on now, or the state it should wait in (``queued``
or ``no-worker``); ``pop_for(ws)`` hands a worker with a free slot the best
queued task it may run; ``big_results(ts)`` says whether a root task takes
its queued root siblings along.  The task machine makes the
transitions and tells placement when a task enters or leaves a queue
(``enqueue``, ``stall``, ``unindex``) and when workers come and go
(``worker_joined``, ``worker_left``).  Nothing here changes a task's state.

Invariants (checked by ``taskmill.core.scheduler.validate``):

* a ``queued`` task without resources has a live entry in the shared heap
  (unrestricted or ``allow_other_workers``) or in the heap of every live
  worker it is strictly restricted to; with resources, in its group's heap;
* a strictly restricted task (without resources) is in
  ``restricted_waiting`` under each of its addresses exactly while it is
  ``queued`` or ``no-worker``;
* no task is ``queued`` while a worker it may use has a free slot.

Cost: O(log n) per operation on a restricted or resource heap (lazy
deletion: a popped or moved task leaves dead entries behind, dropped when
they reach the top); the shared queue is a
:class:`~taskmill.core.scheduler.task_queue.TaskQueue`, O(1) for tasks
queued in order (the common case) and O(log n) for the others; ``where``
looks at the idle workers (at most ``MAX_IDLE_SCAN``) and the holders of the
task's inputs only.

Look-ahead (a dependent sent to the worker still computing its inputs) is
decided by ``look_ahead.LookAhead``, kept here as ``look_ahead``.
"""

from __future__ import annotations

import heapq

from taskmill.core.scheduler.look_ahead import LookAhead
from taskmill.core.scheduler.membership import Membership
from taskmill.core.scheduler.policy import (
    PULL_SIBLINGS_BYTES,
    QueueEntry,
    choose_worker,
    queue_peek,
    queue_push,
)
from taskmill.core.scheduler.records import (
    MAX_PREFIXES,
    NO_WORKER,
    QUEUED,
    TaskRecord,
    WorkerRecord,
)
from taskmill.core.scheduler.resource_index import ResourceIndex
from taskmill.core.scheduler.task_queue import TaskQueue
from taskmill.protocol.vocabulary import Address, TaskFinished


class Placement:
    """Where ready tasks go, and the queues of those that wait.

    Owns the shared heap (``queue``), the per-worker restricted heaps
    (``WorkerRecord.restricted_queue``), ``restricted_waiting`` and the
    per-prefix ``durations`` and ``output_bytes``; uses the membership's
    ``workers``/``idle`` and the resource index it is given.  Invariants: a
    queued task has a live entry in the heaps it may be taken from; a
    strictly restricted task is indexed under its addresses exactly while
    queued or no-worker; no task is queued while a worker it may use has a
    free slot (see the module docstring)."""

    def __init__(self, membership: Membership, resources: ResourceIndex,
                 look_ahead: bool = True) -> None:
        self.membership = membership
        self.resources = resources
        #: scheduler-wide queue of queued tasks (unrestricted or allow_other_workers)
        self.queue = TaskQueue()
        #: dependents sent to the worker computing their inputs (``look_ahead``)
        self.look_ahead = LookAhead(membership, self.queue, look_ahead)
        #: address -> strictly restricted tasks allowed there that are queued
        #: or no-worker (so a worker joining at that address finds them)
        self.restricted_waiting: dict[Address, dict[TaskRecord, None]] = {}
        #: task prefix -> exponential average of its duration (seconds)
        self.durations: dict[str, float] = {}
        #: task prefix -> exponential average of its result's size (bytes)
        self.output_bytes: dict[str, float] = {}

    # ------------------------------------------------------------------ #
    # Estimates
    # ------------------------------------------------------------------ #
    def learn(self, ts: TaskRecord, ev: TaskFinished) -> None:
        """``ts`` finished as ``ev`` says: update its prefix's estimates."""
        duration = ev.stop - ev.start
        if duration >= 0 and ev.stop > 0:  # zero times: obtained without running it
            durations = self.durations
            old = durations.get(ts.prefix)
            if old is not None:
                durations[ts.prefix] = 0.5 * old + 0.5 * duration
            elif len(durations) < MAX_PREFIXES:
                durations[ts.prefix] = duration
            output_bytes = self.output_bytes
            old_bytes = output_bytes.get(ts.prefix)
            if old_bytes is not None:
                output_bytes[ts.prefix] = 0.5 * old_bytes + 0.5 * ev.nbytes
            elif len(output_bytes) < MAX_PREFIXES:
                output_bytes[ts.prefix] = ev.nbytes

    def big_results(self, ts: TaskRecord) -> bool:
        """Whether tasks of ``ts``'s kind make results big enough for a root
        task to take its queued root siblings along to its worker
        (``TaskMachine``'s ``_pull_siblings``)."""
        return self.output_bytes.get(ts.prefix, 0.0) >= PULL_SIBLINGS_BYTES

    # ------------------------------------------------------------------ #
    # Decisions
    # ------------------------------------------------------------------ #
    def where(self, ts: TaskRecord) -> WorkerRecord | str:
        """Where ready task ``ts`` goes now: a worker to start on, or the
        state to wait in (``queued``, ``no-worker``)."""
        workers = self.membership.workers
        idle = self.membership.idle
        if ts.resources is not None:
            # run it where its resources are free now, else queue it while
            # some live worker declares enough, else no-worker
            ws = self.resources.choose(ts, workers, idle)
            if ws is not None:
                return ws
            return QUEUED if self.resources.able(ts, workers) else NO_WORKER
        strict = ts.restrictions is not None and not ts.allow_other_workers
        if not strict:
            top = self.queue.peek()
            if top is not None and top.sort_key < ts.sort_key:
                return QUEUED
        ws = choose_worker(ts, workers, idle, self.durations.get(ts.prefix))
        if ws is not None:
            return ws
        if strict:
            assert ts.restrictions is not None
            if any(addr in workers for addr in ts.restrictions):
                return QUEUED
            return NO_WORKER
        return QUEUED

    def pop_for(self, ws: WorkerRecord) -> TaskRecord | None:
        """Take the best queued task ``ws`` may run now off its heap: the best
        of the shared queue, its restricted queue and the resource groups it
        can serve now; None if there is none."""
        queue = self.queue
        rqueue = ws.restricted_queue
        a = queue.peek()
        b = queue_peek(rqueue) if rqueue else None
        heap: list[QueueEntry] | None  # where the best comes from; None: the shared queue
        if a is None or (b is not None and b.sort_key < a.sort_key):
            ts, heap = b, rqueue
        else:
            ts, heap = a, None
        if ws.resources and self.resources.groups:
            c = self.resources.best_for(ws)
            if c is not None and (ts is None or c[1].sort_key < ts.sort_key):
                heap, ts = c
        if ts is not None:
            if heap is None:
                queue.pop()
            else:
                heapq.heappop(heap)
        return ts

    # ------------------------------------------------------------------ #
    # Queued and no-worker tasks
    # ------------------------------------------------------------------ #
    def enqueue(self, ts: TaskRecord) -> None:
        """``ts`` becomes queued: onto the shared heap, or onto the heaps of
        the live workers a strictly restricted task may use, or its resource
        group's."""
        ts.queue_epoch += 1
        if ts.resources is not None:
            self.resources.enqueue(ts)
        elif ts.restrictions is not None and not ts.allow_other_workers:
            self._index_restricted(ts)
            workers = self.membership.workers
            for addr in ts.restrictions:
                ws = workers.get(addr)
                if ws is not None:
                    queue_push(ws.restricted_queue, ts)
        else:
            self.queue.push(ts)

    def stall(self, ts: TaskRecord) -> tuple[str, bool]:
        """``ts`` becomes no-worker: why, and whether its group (its
        resources, or its restriction's workers) just started waiting, which
        is worth one warning."""
        if ts.resources is not None:
            return self.resources.stall(ts, self.membership.workers)
        assert ts.restrictions is not None
        first = not any(addr in self.restricted_waiting for addr in ts.restrictions)
        self._index_restricted(ts)
        return f"may run only on {', '.join(ts.restrictions)}, none of them a live worker", first

    def unindex(self, ts: TaskRecord) -> None:
        """``ts`` leaves queued/no-worker: drop it from the restriction (or
        resource) index; its heap entries die lazily."""
        if ts.resources is not None:
            self.resources.unindex(ts)
            return
        if ts.restrictions is None or ts.allow_other_workers:
            return
        for addr in ts.restrictions:
            tasks = self.restricted_waiting.get(addr)
            if tasks is not None:
                tasks.pop(ts, None)
                if not tasks:
                    del self.restricted_waiting[addr]

    def _index_restricted(self, ts: TaskRecord) -> None:
        assert ts.restrictions is not None
        for addr in ts.restrictions:
            tasks = self.restricted_waiting.get(addr)
            if tasks is None:
                self.restricted_waiting[addr] = {ts: None}
            else:
                tasks[ts] = None

    # ------------------------------------------------------------------ #
    # Workers coming and going
    # ------------------------------------------------------------------ #
    def worker_joined(self, ws: WorkerRecord) -> list[TaskRecord]:
        """``ws`` joined: its queued restricted tasks go onto its heap; returns
        the no-worker tasks it could run (to be scheduled)."""
        runnable = self.resources.add_worker(ws)
        for ts in self.restricted_waiting.get(ws.address, ()):
            if ts.state == NO_WORKER:
                runnable.append(ts)
            elif ts.state == QUEUED:
                queue_push(ws.restricted_queue, ts)
        return runnable

    def worker_left(self, ws: WorkerRecord) -> list[TaskRecord]:
        """``ws`` (no longer a member) left: returns the queued tasks no live
        worker may run any more (to become no-worker)."""
        workers = self.membership.workers
        stranded = [
            ts for ts in self.restricted_waiting.get(ws.address, ())
            if ts.state == QUEUED
            and not any(a in workers for a in ts.restrictions or ())
        ]
        stranded.extend(self.resources.remove_worker(ws, workers))
        ws.restricted_queue.clear()
        self.look_ahead.worker_left(ws)
        return stranded

    def clear_tasks(self) -> None:
        """Every task is gone (restart); workers stay."""
        self.queue.clear()
        self.restricted_waiting.clear()
        self.resources.clear_tasks()
        self.look_ahead.clear_tasks()
        for ws in self.membership.workers.values():
            ws.restricted_queue.clear()
