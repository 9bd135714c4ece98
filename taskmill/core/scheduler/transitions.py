"""The scheduler's task transitions: the table of legal state changes.

Theory of operation
-------------------
``SchedulerCore`` holds all scheduler state and the transition table
``(from_state, to_state) -> method``; ``SchedulerState``
(``taskmill.core.scheduler.state``) adds the event handlers and queries on top.

One event is processed in four phases, all inside ``handle``:

1. the event handler makes the direct transitions the event implies
   (``TaskFinished`` -> processing->memory, ...);
2. transitions do not recurse: consequences for *other* tasks are pushed as
   *recommendations* on ``_recs`` and drained in FIFO order (``_drain``).  The
   main recommendation is ``CHECK``: bring a task in line with whether it is
   still needed (``_check``), which is what makes reference counting,
   releasing, forgetting and recomputing-from-lineage work.  Deep graphs
   therefore never hit Python's recursion limit;
3. tasks whose inputs are all in memory were collected on ``_ready``; they are
   placed in priority order (``_schedule_ready``), then workers whose slots
   freed up take queued tasks (``_fill``);
4. ``FreeKeys`` gathered per worker are flushed (a ``ComputeTask`` to a worker
   first flushes that worker's pending frees, so a free never overtakes a
   compute of the same key).

Neededness: a task is *needed* while a client wants it or an active dependent
(``waiters``) still needs its data.  A task that is not needed is released
(its data freed on every holder); a released or erred task with no dependents
and no wanting client is forgotten.  Released tasks with dependents stay as
lineage so lost data can be recomputed.  A needed released task is recomputed
(or errs as lost if it has no run spec: scattered data).

A transition missing from the table raises :class:`InvalidTransition` with the
key's story: it is a bug in the state machine, never a user error.
"""

from __future__ import annotations

import heapq
from itertools import islice
from collections import deque
from typing import Any, Callable

from taskmill.core.scheduler.placement import (
    MAX_PULLED_SIBLINGS,
    PULL_SIBLINGS_BYTES,
    QueueEntry,
    choose_worker,
    queue_peek,
    queue_push,
    slot_cost,
)
from taskmill.core.scheduler.events import SchedulerOutput, TaskStalled
from taskmill.protocol.serialize import Serialized
from taskmill.protocol.vocabulary import (
    Address,
    ComputeTask,
    FreeKeys,
    Key,
    KeyErred,
    KeyInMemory,
    KeyLost,
)
from taskmill.core.scheduler.records import (
    ACTIVE_STATES,
    ERRED,
    FORGOTTEN,
    LOST_DATA,
    MEMORY,
    MISSING_DEPENDENCY,
    NO_WORKER,
    PROCESSING,
    QUEUED,
    RELEASED,
    WAITING,
    ClientRecord,
    FIRE_AND_FORGET,
    ErrorInfo,
    TaskRecord,
    WorkerRecord,
)
from taskmill.core.scheduler.resource_index import ResourceIndex, acquire, release

#: Recommendation kinds (besides target states).
CHECK = "check"

StoryEntry = tuple[Key, str, str, str, str]
Recommendation = tuple[TaskRecord, str, Any]


class InvalidTransition(RuntimeError):
    """A transition that is not in the table was requested (a bug)."""


class SchedulerCore:
    """State and transitions of the scheduler (see module docstring)."""

    def __init__(self, *, allowed_failures: int = 3, validate: bool = False) -> None:
        self.allowed_failures = allowed_failures
        self.validate_each_event = validate
        self.tasks: dict[Key, TaskRecord] = {}
        #: function token -> the serialized function (sent once to each worker)
        self.functions: dict[str, Serialized] = {}
        #: fire-and-forget keys done this step (released at its end)
        self._forgotten_done: list[Key] = []
        self.workers: dict[Address, WorkerRecord] = {}
        self.clients: dict[str, ClientRecord] = {}
        #: live workers with a free slot
        self.idle: dict[WorkerRecord, None] = {}
        #: scheduler-wide heap of queued tasks (unrestricted or allow_other_workers)
        self.queue: list[QueueEntry] = []
        #: address -> strictly restricted tasks allowed there that are queued
        #: or no-worker (so a worker joining at that address finds them)
        self.restricted_waiting: dict[Address, dict[TaskRecord, None]] = {}
        #: workers by declared resource; queued/no-worker tasks needing resources
        #: (``taskmill.core.scheduler.resource_index``)
        self.resource_index = ResourceIndex()
        #: task prefix -> exponential average of its duration (seconds)
        self.durations: dict[str, float] = {}
        #: task prefix -> exponential average of its result's size (bytes)
        self.output_bytes: dict[str, float] = {}
        #: workers being retired (see ``taskmill.core.scheduler.replicas``)
        self.retiring: dict[WorkerRecord, None] = {}
        #: a replica changed while workers retire: re-check their progress
        self._retire_dirty = False
        #: per-step scratch: copies requested, by worker (see ``scheduler_replicas``)
        self._acquire_batch: dict[WorkerRecord, list[TaskRecord]] = {}
        self.transition_log: deque[StoryEntry] = deque(maxlen=100_000)
        self._seq = 0
        # per-event scratch space
        self._stimulus_id = ""
        self._cmds: list[SchedulerOutput] = []
        self._recs: deque[Recommendation] = deque()
        self._ready: list[TaskRecord] = []
        self._freed: dict[WorkerRecord, None] = {}
        self._pending_free: dict[WorkerRecord, list[Key]] = {}
        self._table: dict[tuple[str, str], Callable[[TaskRecord, Any], None]] = {
            (RELEASED, WAITING): self._released_waiting,
            (RELEASED, MEMORY): self._to_memory_scattered,
            (RELEASED, ERRED): self._to_erred,
            (RELEASED, FORGOTTEN): self._forget,
            (WAITING, PROCESSING): self._start,
            (WAITING, QUEUED): self._enqueue,
            (WAITING, NO_WORKER): self._to_no_worker,
            (WAITING, RELEASED): self._active_released,
            (WAITING, ERRED): self._active_erred,
            (QUEUED, PROCESSING): self._start,
            (QUEUED, NO_WORKER): self._to_no_worker,
            (QUEUED, RELEASED): self._active_released,
            (QUEUED, ERRED): self._active_erred,
            (NO_WORKER, PROCESSING): self._start,
            (NO_WORKER, QUEUED): self._enqueue,
            (NO_WORKER, RELEASED): self._active_released,
            (NO_WORKER, ERRED): self._active_erred,
            (PROCESSING, MEMORY): self._processing_memory,
            (PROCESSING, RELEASED): self._active_released,
            (PROCESSING, ERRED): self._active_erred,
            (MEMORY, RELEASED): self._memory_released,
            (MEMORY, ERRED): self._memory_erred,
            (ERRED, RELEASED): self._erred_released,
            (ERRED, FORGOTTEN): self._forget,
        }

    # ------------------------------------------------------------------ #
    # Story
    # ------------------------------------------------------------------ #
    def story(self, key: Key) -> list[StoryEntry]:
        """Every recorded transition (and ignored stimulus) of ``key``:
        ``(key, from_state, to_state, stimulus_id, note)``."""
        return [e for e in self.transition_log if e[0] == key]

    def _log(self, key: Key, start: str, finish: str, note: str = "") -> None:
        self.transition_log.append((key, start, finish, self._stimulus_id, note))

    def _ignore(self, key: Key, note: str) -> None:
        ts = self.tasks.get(key)
        state = ts.state if ts is not None else FORGOTTEN
        self._log(key, state, state, "ignored: " + note)

    def _story_text(self, key: Key) -> str:
        return "\n".join(f"  {e}" for e in self.story(key)[-30:])

    # ------------------------------------------------------------------ #
    # Transition machinery
    # ------------------------------------------------------------------ #
    def _transition(self, ts: TaskRecord, finish: str, arg: Any = None) -> None:
        start = ts.state
        if start == finish:
            return
        fn = self._table.get((start, finish))
        if fn is None:
            if (start, RELEASED) in self._table and (RELEASED, finish) in self._table:
                self._transition(ts, RELEASED)
                self._transition(ts, finish, arg)
                return
            raise InvalidTransition(
                f"no transition {start} -> {finish} for task {ts.key!r}; story:\n"
                + self._story_text(ts.key)
            )
        fn(ts, arg)
        self.transition_log.append((ts.key, start, finish, self._stimulus_id, ""))

    def _drain(self) -> None:
        """Apply recommendations until none is left."""
        recs = self._recs
        while recs:
            ts, what, arg = recs.popleft()
            state = ts.state
            if state == FORGOTTEN:
                continue
            if what == CHECK:
                self._check(ts)
            elif what == WAITING:
                if state == QUEUED or state == PROCESSING or state == NO_WORKER:
                    self._transition(ts, WAITING)
            elif what == ERRED:
                if state in ACTIVE_STATES:
                    self._transition(ts, ERRED, arg)
            else:  # pragma: no cover - programming error
                raise AssertionError(f"unknown recommendation {what!r}")

    def _check(self, ts: TaskRecord) -> None:
        """Bring ``ts`` in line with whether it is still needed."""
        state = ts.state
        if ts.who_wants or ts.waiters:
            if state == RELEASED:
                if ts.run_spec is None:
                    self._transition(
                        ts,
                        ERRED,
                        ErrorInfo(
                            None,
                            None,
                            f"key {ts.key!r} was scattered data whose every copy is gone",
                            "",
                            LOST_DATA,
                        ),
                    )
                    return
                for dts in ts.dependencies:
                    if dts.state == ERRED:
                        assert dts.error is not None
                        self._transition(ts, ERRED, self._derived_error(dts, dts.error))
                        return
                self._transition(ts, WAITING)
        elif state == MEMORY or state in ACTIVE_STATES:
            self._transition(ts, RELEASED)
        elif (state == RELEASED or state == ERRED) and not ts.dependents:
            self._transition(ts, FORGOTTEN)

    def _derived_error(self, failed: TaskRecord, info: ErrorInfo) -> ErrorInfo:
        """The error a dependent of ``failed`` gets."""
        if info.error_type == LOST_DATA:
            return ErrorInfo(
                None,
                None,
                f"a dependency's data was lost: {info.exception_text}",
                "",
                MISSING_DEPENDENCY,
            )
        return info

    # ------------------------------------------------------------------ #
    # Helpers used by transitions
    # ------------------------------------------------------------------ #
    def _free(self, ws: WorkerRecord, key: Key) -> None:
        if ws.alive:
            pending = self._pending_free.get(ws)
            if pending is None:
                self._pending_free[ws] = [key]
            else:
                pending.append(key)

    def _flush_frees(self, ws: WorkerRecord | None = None) -> None:
        if ws is None:
            pending = self._pending_free
            self._pending_free = {}
            for w, keys in pending.items():
                self._cmds.append(FreeKeys(self._stimulus_id, w.address, tuple(keys)))
        else:
            keys = self._pending_free.pop(ws, [])
            if keys:
                self._cmds.append(FreeKeys(self._stimulus_id, ws.address, tuple(keys)))

    def _add_replica(self, ts: TaskRecord, ws: WorkerRecord) -> None:
        if ws not in ts.who_has:
            ts.who_has[ws] = None
            ws.has_what[ts] = None
            if ts.nbytes > 0:
                ws.nbytes += ts.nbytes
            if ts.acquiring_on and ts.acquiring_on.pop(ws, 0) is None:
                del ws.acquiring[ts]
            if self.retiring:
                self._retire_dirty = True

    def _remove_replica(self, ts: TaskRecord, ws: WorkerRecord) -> None:
        if ts.who_has.pop(ws, 0) is None:
            del ws.has_what[ts]
            if ts.nbytes > 0:
                ws.nbytes -= ts.nbytes
            if self.retiring:
                self._retire_dirty = True

    def _drop_acquisition(self, ts: TaskRecord, ws: WorkerRecord) -> None:
        """``ws`` will not get a copy of ``ts`` after all."""
        if ts.acquiring_on.pop(ws, 0) is None:
            del ws.acquiring[ts]
            if self.retiring:
                self._retire_dirty = True

    def _cancel_acquisitions(self, ts: TaskRecord) -> None:
        """``ts`` leaves memory: workers fetching a copy drop it (``FreeKeys``)."""
        for ws in list(ts.acquiring_on):
            self._free(ws, ts.key)
            self._drop_acquisition(ts, ws)

    def _unassign(self, ts: TaskRecord) -> WorkerRecord:
        """Take ``ts`` off the worker processing it; that slot frees up."""
        ws = ts.processing_on
        assert ws is not None
        del ws.processing[ts]
        ws.used -= ts.slot_cost
        ts.slot_cost = 0
        if ts.resources is not None:
            release(ws, ts.resources)
        ts.processing_on = None
        if ws.alive and ws.used < ws.capacity and ws.open:
            self.idle[ws] = None
            self._freed[ws] = None
        return ws

    def _leave_active(self, ts: TaskRecord) -> None:
        """``ts`` no longer needs its inputs: re-check each of them."""
        recs = self._recs
        for dts in ts.dependencies:
            dts.waiters.pop(ts, None)
            recs.append((dts, CHECK, None))
        ts.waiting_on.clear()

    def _index_restricted(self, ts: TaskRecord) -> None:
        assert ts.restrictions is not None
        for addr in ts.restrictions:
            tasks = self.restricted_waiting.get(addr)
            if tasks is None:
                self.restricted_waiting[addr] = {ts: None}
            else:
                tasks[ts] = None

    def _unindex_restricted(self, ts: TaskRecord) -> None:
        """``ts`` leaves queued/no-worker: drop it from the restriction (or resource) index."""
        if ts.resources is not None:
            self.resource_index.unindex(ts)
            return
        if ts.restrictions is None or ts.allow_other_workers:
            return
        for addr in ts.restrictions:
            tasks = self.restricted_waiting.get(addr)
            if tasks is not None:
                tasks.pop(ts, None)
                if not tasks:
                    del self.restricted_waiting[addr]

    def _data_in_memory(self, ts: TaskRecord) -> None:
        """Tell active dependents that ``ts``'s data is available."""
        ready = self._ready
        for dts in ts.waiters:
            dts.waiting_on.pop(ts, None)
            if not dts.waiting_on and dts.state == WAITING:
                ready.append(dts)

    def _report_memory(self, ts: TaskRecord, value: Any = None) -> None:
        if not ts.who_wants:
            return
        who = tuple([ws.address for ws in ts.who_has])
        wants = ts.who_wants
        for client, last in wants.items():
            if last != MEMORY:
                wants[client] = MEMORY
                if client == FIRE_AND_FORGET:
                    self._forgotten_done.append(ts.key)
                    continue
                self._cmds.append(
                    KeyInMemory(self._stimulus_id, client, ts.key, who, ts.type_name, value)
                )

    def _report_erred(self, ts: TaskRecord) -> None:
        info = ts.error
        assert info is not None
        lost = info.error_type == LOST_DATA
        kind = "lost" if lost else ERRED
        wants = ts.who_wants
        for client, last in wants.items():
            if last == kind:
                continue
            wants[client] = kind
            if client == FIRE_AND_FORGET:
                self._forgotten_done.append(ts.key)
            elif lost:
                self._cmds.append(
                    KeyLost(self._stimulus_id, client, ts.key, info.exception_text)
                )
            else:
                self._cmds.append(
                    KeyErred(
                        self._stimulus_id,
                        client,
                        ts.key,
                        info.exception,
                        info.traceback,
                        info.exception_text,
                        info.worker,
                        info.error_type,
                    )
                )

    def _report_current(self, ts: TaskRecord) -> None:
        """Report ``ts``'s outcome (if it has one) to wanting clients not yet told."""
        if ts.state == MEMORY:
            self._report_memory(ts)
        elif ts.state == ERRED:
            self._report_erred(ts)

    # ------------------------------------------------------------------ #
    # Transitions
    # ------------------------------------------------------------------ #
    def _released_waiting(self, ts: TaskRecord, _: Any) -> None:
        ts.state = WAITING
        waiting_on = ts.waiting_on
        for dts in ts.dependencies:
            dts.waiters[ts] = None
            if dts.state != MEMORY:
                waiting_on[dts] = None
                if dts.state == RELEASED:
                    self._recs.append((dts, CHECK, None))
                elif dts.state == ERRED:
                    assert dts.error is not None
                    self._recs.append((ts, ERRED, self._derived_error(dts, dts.error)))
        if not waiting_on:
            self._ready.append(ts)

    def _start(self, ts: TaskRecord, ws: WorkerRecord) -> None:
        """waiting/queued/no-worker -> processing on ``ws``."""
        if ts.state != WAITING:
            self._unindex_restricted(ts)
        ts.state = PROCESSING
        ts.processing_on = ws
        cost = slot_cost(self.durations.get(ts.prefix))
        ts.slot_cost = cost
        ws.used += cost
        ws.processing[ts] = None
        if ts.resources is not None:
            acquire(ws, ts.resources)
        if ws.used >= ws.capacity:
            self.idle.pop(ws, None)
        if ws in self._pending_free:
            self._flush_frees(ws)
        spec = ts.run_spec
        assert spec is not None
        token = spec.func_token
        if token in ws.funcs:
            func = None
        else:
            ws.funcs.add(token)
            func = self.functions.get(token)
        who_has: dict[Key, tuple[Address, ...]] = {}
        nbytes: dict[Key, int] = {}
        if ts.dependencies:
            for dts in ts.dependencies:
                who_has[dts.key] = tuple([w.address for w in dts.who_has])
                nbytes[dts.key] = dts.nbytes
        self._cmds.append(
            ComputeTask(
                self._stimulus_id,
                ws.address,
                ts.key,
                token,
                func,
                spec.args,
                who_has,
                nbytes,
                ts.priority,
                bool(ts.who_wants),
            )
        )

    def _enqueue(self, ts: TaskRecord, _: Any) -> None:
        """waiting/no-worker -> queued: onto the shared heap, or onto the
        heaps of the live workers a strictly restricted task may use."""
        ts.state = QUEUED
        ts.queue_epoch += 1
        if ts.resources is not None:
            self.resource_index.enqueue(ts)
        elif ts.restrictions is not None and not ts.allow_other_workers:
            self._index_restricted(ts)
            for addr in ts.restrictions:
                ws = self.workers.get(addr)
                if ws is not None:
                    queue_push(ws.restricted_queue, ts)
        else:
            heapq.heappush(self.queue, (ts.sort_key, ts.queue_epoch, ts))

    def _to_no_worker(self, ts: TaskRecord, _: Any) -> None:
        if ts.resources is not None:
            why, first = self.resource_index.stall(ts, self.workers)
            self._log(ts.key, ts.state, NO_WORKER, why)
            if first:
                self._cmds.append(TaskStalled(self._stimulus_id, ts.key, why))
        else:
            self._index_restricted(ts)
        ts.state = NO_WORKER

    def _active_released(self, ts: TaskRecord, _: Any) -> None:
        """waiting/queued/no-worker/processing -> released (stop computing)."""
        state = ts.state
        if state == PROCESSING:
            ws = self._unassign(ts)
            self._free(ws, ts.key)
        elif state == NO_WORKER or state == QUEUED:
            self._unindex_restricted(ts)
        self._leave_active(ts)
        ts.state = RELEASED
        self._recs.append((ts, CHECK, None))

    def _active_erred(self, ts: TaskRecord, info: ErrorInfo) -> None:
        state = ts.state
        if state == PROCESSING:
            ws = self._unassign(ts)
            self._free(ws, ts.key)  # drop the worker's record of the failure
        elif state == NO_WORKER or state == QUEUED:
            self._unindex_restricted(ts)
        self._leave_active(ts)
        self._to_erred(ts, info)

    def _to_erred(self, ts: TaskRecord, info: ErrorInfo) -> None:
        """-> erred: report it, and err every active dependent (transitively)."""
        ts.state = ERRED
        ts.error = info
        self._report_erred(ts)
        if ts.waiters:
            derived = self._derived_error(ts, info)
            for dts in ts.waiters:
                self._recs.append((dts, ERRED, derived))
        self._recs.append((ts, CHECK, None))

    def _processing_memory(
        self, ts: TaskRecord, arg: tuple[WorkerRecord, int, str, Any]
    ) -> None:
        ws, nbytes, type_name, value = arg
        self._unassign(ts)
        ts.state = MEMORY
        ts.nbytes = nbytes
        ts.type_name = type_name
        self._add_replica(ts, ws)
        if ts.dependencies:
            self._leave_active(ts)
        if ts.waiters:
            self._data_in_memory(ts)
        if ts.who_wants:
            self._report_memory(ts, value)

    def _to_memory_scattered(
        self, ts: TaskRecord, arg: tuple[list[WorkerRecord], int, str]
    ) -> None:
        holders, nbytes, type_name = arg
        ts.state = MEMORY
        if nbytes >= 0 or ts.nbytes < 0:
            ts.nbytes = nbytes
        if type_name:
            ts.type_name = type_name
        for ws in holders:
            self._add_replica(ts, ws)
        self._data_in_memory(ts)
        self._report_memory(ts)
        self._recs.append((ts, CHECK, None))

    def _memory_released(self, ts: TaskRecord, _: Any) -> None:
        """Data freed (not needed) or lost (no holder left)."""
        if ts.acquiring_on:
            self._cancel_acquisitions(ts)
        for ws in list(ts.who_has):
            self._free(ws, ts.key)
            self._remove_replica(ts, ws)
        ts.state = RELEASED
        recs = self._recs
        for dts in ts.waiters:
            dts.waiting_on[ts] = None
            if dts.state != WAITING:
                recs.append((dts, WAITING, None))
        recs.append((ts, CHECK, None))

    def _memory_erred(self, ts: TaskRecord, info: ErrorInfo) -> None:
        """The last copy of a key without lineage is gone."""
        if ts.acquiring_on:
            self._cancel_acquisitions(ts)
        for ws in list(ts.who_has):
            self._free(ws, ts.key)
            self._remove_replica(ts, ws)
        for dts in ts.waiters:
            dts.waiting_on[ts] = None
        self._to_erred(ts, info)

    def _erred_released(self, ts: TaskRecord, _: Any) -> None:
        ts.error = None
        ts.state = RELEASED
        self._recs.append((ts, CHECK, None))

    def _forget(self, ts: TaskRecord, _: Any) -> None:
        """released/erred -> forgotten: drop the record and every link to it."""
        ts.state = FORGOTTEN
        del self.tasks[ts.key]
        recs = self._recs
        for dts in ts.dependencies:
            dts.dependents.pop(ts, None)
            dts.waiters.pop(ts, None)
            recs.append((dts, CHECK, None))
        for dts in ts.dependents:  # only on a forced forget (cancel)
            dts.dependencies.pop(ts, None)
            dts.waiting_on.pop(ts, None)
        for client in ts.who_wants:  # only on a forced forget (cancel)
            cs = self.clients.get(client)
            if cs is not None:
                cs.wants.pop(ts, None)
        ts.who_wants.clear()

    # ------------------------------------------------------------------ #
    # Placement
    # ------------------------------------------------------------------ #
    def _schedule_ready(self) -> None:
        """Place the tasks that became ready, best priority first, then let
        workers whose slots freed take queued work."""
        while self._ready:
            ready = self._ready
            self._ready = []
            if len(ready) > 1:
                ready.sort(key=_sort_key)
            for ts in ready:
                state = ts.state
                if (state == WAITING or state == NO_WORKER) and not ts.waiting_on:
                    self._schedule(ts)
        if self._freed:
            freed = self._freed
            self._freed = {}
            for ws in freed:
                if ws.alive:
                    self._fill(ws)

    def _schedule(self, ts: TaskRecord) -> None:
        if ts.resources is not None:
            self._schedule_with_resources(ts)
            return
        strict = ts.restrictions is not None and not ts.allow_other_workers
        if not strict and self.queue:
            top = queue_peek(self.queue)
            if top is not None and top.sort_key < ts.sort_key:
                self._transition(ts, QUEUED)
                return
        ws = choose_worker(ts, self.workers, self.idle, self.durations.get(ts.prefix))
        if ws is not None:
            self._transition(ts, PROCESSING, ws)
            self._pull_siblings(ts, ws)
        elif strict:
            assert ts.restrictions is not None
            if any(addr in self.workers for addr in ts.restrictions):
                self._transition(ts, QUEUED)
            else:
                self._transition(ts, NO_WORKER)
        else:
            self._transition(ts, QUEUED)

    def _schedule_with_resources(self, ts: TaskRecord) -> None:
        """Run ``ts`` where its resources are free now, else queue it while
        some live worker declares enough, else no-worker."""
        ws = self.resource_index.choose(ts, self.workers, self.idle)
        if ws is not None:
            self._transition(ts, PROCESSING, ws)
        elif self.resource_index.able(ts, self.workers):
            self._transition(ts, QUEUED)
        else:
            self._transition(ts, NO_WORKER)

    def _fill(self, ws: WorkerRecord) -> None:
        """Give ``ws`` queued tasks until its slots are full: the best of the
        shared queue, its restricted queue and the resource groups it can
        serve now."""
        queue = self.queue
        rqueue = ws.restricted_queue
        resource_index = self.resource_index
        while ws.used < ws.capacity:
            a = queue_peek(queue) if queue else None
            b = queue_peek(rqueue) if rqueue else None
            if a is None or (b is not None and b.sort_key < a.sort_key):
                ts, heap = b, rqueue
            else:
                ts, heap = a, queue
            if ws.resources and resource_index.groups:
                c = resource_index.best_for(ws)
                if c is not None and (ts is None or c[1].sort_key < ts.sort_key):
                    heap, ts = c
            if ts is None:
                return
            heapq.heappop(heap)
            self._transition(ts, PROCESSING, ws)
            self._pull_siblings(ts, ws)

    def _pull_siblings(self, ts: TaskRecord, ws: WorkerRecord) -> None:
        """Root task ``ts`` just went to ``ws``: send its queued root *siblings*
        (the other inputs of its dependents) along, even past ``ws``'s slots,
        when tasks of this kind make big results.  The dependent then finds
        all its inputs on one worker instead of moving one of them (blocks
        (i, j) and (j, i) of ``x + x.T`` are queued next to each other, but
        workers freeing slots in turn would split every pair).  Bounded:
        at most ``MAX_PULLED_SIBLINGS`` tasks, dependents with few inputs only."""
        if ts.dependencies or not ts.dependents:
            return
        if self.output_bytes.get(ts.prefix, 0.0) < PULL_SIBLINGS_BYTES:
            return
        pulled = 0
        for dts in islice(ts.dependents, MAX_PULLED_SIBLINGS):
            if len(dts.dependencies) > MAX_PULLED_SIBLINGS + 1:
                continue  # a wide reduction: its inputs move anyway
            for sts in dts.dependencies:
                if (sts.state == QUEUED and not sts.dependencies and sts.restrictions is None
                        and sts.resources is None and pulled < MAX_PULLED_SIBLINGS):
                    self._transition(sts, PROCESSING, ws)
                    pulled += 1


def _sort_key(ts: TaskRecord) -> tuple[Any, int]:
    return ts.sort_key
