"""Worker-choice policy and the lazy heaps of queued tasks, for the scheduler.

Theory of operation
-------------------
Pure functions over records, used by ``Placement``
(``taskmill.core.scheduler.placement``, which owns the queues and the
estimates) and the ``ResourceIndex``; they own no data and never change a
task's state themselves.

**Slots.**  A worker may have about ``nthreads * SATURATION`` tasks processing
so that it stays busy while the next round trip is in flight.  Tasks whose
prefix is known to take under ``TINY_TASK_SECONDS`` cost far less: up to
``nthreads * TINY_SATURATION`` of them may be in flight.  Both are expressed
in integer *slot units*: a worker has ``nthreads * UNITS_PER_THREAD`` units, a
normal task costs ``NORMAL_COST`` and a tiny one ``TINY_COST``.  A worker "has
a free slot" while ``used < capacity`` (the last task placed may overshoot by
one task); such workers sit in the scheduler's ``idle`` index.

**Placement** (:func:`choose_worker`): among workers with a free slot that the
task may use, the one holding the most bytes of the task's dependencies, ties
(and tasks without dependencies) broken by lowest occupancy.  When no holder
has a free slot, a busy holder still gets the task (past its slots) if it
would start there sooner than on an idle worker that must first fetch the
inputs: queued work against bytes to move.  Root tasks take their queued root
siblings along when their kind makes big results (``TaskMachine``'s
``_pull_siblings``).  Only the idle workers, the holders of the task's dependencies and
a bounded number of siblings are looked at: never all workers or all tasks.

**Queues** (:func:`queue_push`, :func:`queue_peek`): ready tasks that found no free slot
wait in a heap ordered by ``TaskRecord.sort_key`` (priority, then submission
order).  Unrestricted tasks (and ``allow_other_workers`` ones) share the
scheduler-wide queue (a ``TaskQueue``, ``task_queue``: a sorted run beside
such a heap); tasks restricted to some workers are pushed onto each of
those workers' own heaps.  Entries are ``(sort_key, epoch, task)`` and deleted
lazily: an entry is live only while the task is ``queued`` with that same
``queue_epoch`` (bumped on every enqueue), so a task popped from one worker's
heap leaves dead entries behind in the others.
"""

from __future__ import annotations

import heapq
from itertools import islice
from typing import Iterable

from taskmill.protocol.vocabulary import Address
from taskmill.core.scheduler.records import QUEUED, SortKey, TaskRecord, WorkerRecord

#: Tasks in flight per thread, for tasks of normal or unknown duration.
SATURATION = 2
#: Tasks in flight per thread for tasks whose prefix is known to be tiny.
TINY_SATURATION = 50
#: Below this estimated duration (seconds) a task counts as tiny.
TINY_TASK_SECONDS = 0.005

UNITS_PER_THREAD = TINY_SATURATION
NORMAL_COST = UNITS_PER_THREAD // SATURATION
TINY_COST = UNITS_PER_THREAD // TINY_SATURATION

#: Bandwidth between workers (bytes/s) assumed when weighing a transfer
#: against waiting for a busy worker that already holds the inputs.
ASSUMED_BANDWIDTH = 200e6
#: Duration (seconds) assumed for a task whose kind never finished yet.
UNKNOWN_DURATION = 0.05

#: A root task whose kind makes results at least this big (bytes, on average)
#: takes its queued root siblings along to its worker (see ``_pull_siblings``).
PULL_SIBLINGS_BYTES = 1_000_000
#: At most this many siblings go along, and only for dependents with at most one more input.
MAX_PULLED_SIBLINGS = 3

#: When more workers than this have free slots, only this many are compared.
MAX_IDLE_SCAN = 16

QueueEntry = tuple[SortKey, int, TaskRecord]


def worker_capacity(nthreads: int) -> int:
    """Slot units of a worker with ``nthreads`` threads (at least one task)."""
    return max(1, nthreads) * UNITS_PER_THREAD


def slot_cost(duration_estimate: float | None) -> int:
    """Slot units a task with this estimated duration takes while processing."""
    if duration_estimate is not None and duration_estimate < TINY_TASK_SECONDS:
        return TINY_COST
    return NORMAL_COST


def _occupancy(ws: WorkerRecord) -> float:
    return ws.used / ws.capacity


def least_occupied(candidates: Iterable[WorkerRecord]) -> WorkerRecord | None:
    """The candidate with the lowest ``used / capacity`` (the first on ties)."""
    best: WorkerRecord | None = None
    best_occ = 0.0
    for ws in candidates:
        occ = ws.used / ws.capacity
        if best is None or occ < best_occ:
            best, best_occ = ws, occ
    return best


def by_locality(
    ts: TaskRecord, allowed: dict[WorkerRecord, None] | None, idle: dict[WorkerRecord, None]
) -> WorkerRecord | None:
    """The idle (and allowed) worker holding most bytes of ``ts``'s inputs."""
    scores: dict[WorkerRecord, int] = {}
    for dts in ts.dependencies:
        nb = dts.nbytes if dts.nbytes > 0 else 1
        for ws in dts.who_has:
            if ws in idle and (allowed is None or ws in allowed):
                scores[ws] = scores.get(ws, 0) + nb
    if not scores:
        return None
    best: WorkerRecord | None = None
    best_key: tuple[int, float] = (0, 0.0)
    for ws, score in scores.items():
        key = (score, -_occupancy(ws))
        if best is None or key > best_key:
            best, best_key = ws, key
    return best


def choose_worker(
    ts: TaskRecord,
    workers: dict[Address, WorkerRecord],
    idle: dict[WorkerRecord, None],
    duration: float | None = None,
) -> WorkerRecord | None:
    """Where to run ready task ``ts`` now, or None if no allowed worker has a
    free slot.  ``idle`` is the index of live workers with a free slot;
    ``duration`` the estimated duration of tasks of ``ts``'s kind, if known."""
    if not idle:
        if ts.dependencies and ts.restrictions is None:
            return _busy_holder_worth_waiting_for(ts, None, duration)
        return None
    if ts.restrictions is not None:
        allowed: dict[WorkerRecord, None] = {}
        for addr in ts.restrictions:
            ws = workers.get(addr)
            if ws is not None and ws in idle:
                allowed[ws] = None
        if allowed:
            if ts.dependencies:
                ws = by_locality(ts, allowed, idle)
                if ws is not None:
                    return ws
            return least_occupied(allowed)
        if not ts.allow_other_workers:
            return None
    least = least_occupied(idle if len(idle) <= MAX_IDLE_SCAN else islice(idle, MAX_IDLE_SCAN))
    if ts.dependencies:
        ws = by_locality(ts, None, idle)
        if ws is not None:
            return ws
        ws = _busy_holder_worth_waiting_for(ts, least, duration)
        if ws is not None:
            return ws
    return least


def _busy_holder_worth_waiting_for(
    ts: TaskRecord, least: WorkerRecord | None, duration: float | None
) -> WorkerRecord | None:
    """No worker holding ``ts``'s inputs has a free slot.  The holder where
    ``ts`` would start soonest, if sooner than on ``least``, the least
    occupied idle worker (None: no worker has a free slot), counting the
    work queued there against the time to move the missing inputs
    (``missing bytes / ASSUMED_BANDWIDTH``); None when moving is faster.  The task then goes there past its slots, like dask's
    dependents: only root tasks are held back on the scheduler, and a
    dependent never outnumbers the inputs that made it ready."""
    per_task = duration if duration is not None else UNKNOWN_DURATION
    held: dict[WorkerRecord, int] = {}
    total = 0
    for dts in ts.dependencies:
        nb = dts.nbytes if dts.nbytes > 0 else 1
        total += nb
        for ws in dts.who_has:
            if ws.alive and ws.open:
                held[ws] = held.get(ws, 0) + nb
    best: WorkerRecord | None = None
    best_start = (float("inf") if least is None
                  else _start_estimate(least, total - held.get(least, 0), per_task))
    for ws, local in held.items():
        start = _start_estimate(ws, total - local, per_task)
        if start < best_start:
            best, best_start = ws, start
    return best


def _start_estimate(ws: WorkerRecord, missing_bytes: int, per_task: float) -> float:
    """Seconds until a new task could start on ``ws``: its queued work, then
    moving ``missing_bytes`` there."""
    return len(ws.processing) / ws.nthreads * per_task + missing_bytes / ASSUMED_BANDWIDTH


# --------------------------------------------------------------------------- #
# Lazy-deletion heaps of queued tasks
# --------------------------------------------------------------------------- #
def queue_push(heap: list[QueueEntry], ts: TaskRecord) -> None:
    """Push ``ts`` (already given its current ``queue_epoch``)."""
    heapq.heappush(heap, (ts.sort_key, ts.queue_epoch, ts))


def entry_live(entry: QueueEntry) -> bool:
    """Whether a heap entry still stands for its task (queued, same epoch)."""
    ts = entry[2]
    return ts.state == QUEUED and ts.queue_epoch == entry[1]


def queue_peek(heap: list[QueueEntry]) -> TaskRecord | None:
    """The best live task of ``heap`` (dropping dead entries on the way)."""
    while heap:
        entry = heap[0]
        if entry_live(entry):
            return entry[2]
        heapq.heappop(heap)
    return None


def queue_live(heap: list[QueueEntry]) -> list[TaskRecord]:
    """All live tasks of ``heap`` (for validation and worker departure)."""
    return [e[2] for e in heap if entry_live(e)]
