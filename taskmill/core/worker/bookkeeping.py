"""The worker's books: its records, the indexes over them, and the moves that
keep the two in step.

Theory of operation
-------------------
:class:`WorkerBookkeeping` is the lower half of the pure worker state machine.
:class:`~taskmill.core.worker.state.WorkerState` builds on it: the event
handlers there decide what an event means for the keys it names; the moves
here carry a record from one state to another and update every index that
the change touches.  Nothing here reads an event or a clock.

What it keeps (all of it checked by :mod:`taskmill.core.worker.validate`):

* ``tasks``: one :class:`~taskmill.core.worker.records.TaskRecord` per key
  this worker knows, in one state (see :mod:`taskmill.core.worker.records`);
* ``executing`` (threads busy), ``seceded`` and ``rejoining`` (tasks out of
  the thread count, and those of them waiting for a thread), the ready heap of ``(priority, seq, key)``
  with its live count, ``in_memory`` with ``nbytes_in_memory``, the
  ``_missing`` keys, and the :class:`~taskmill.core.worker.fetch_queue.FetchQueue`
  (holders of each key, per-peer queues, requests in flight);
* the story: a bounded log of every state change and note, each tagged with
  the stimulus that caused it;
* the scratch of the ``handle`` call under way: the commands emitted so far
  (``_out``), the keys to delete after the current event (``_delete``), the
  keys to ask the scheduler about at the end of the call (``_ask``), and the
  current stimulus id (``_stim``).  ``WorkerState.handle`` resets them.

Legality: every state change goes through :meth:`WorkerBookkeeping._set_state`,
which checks the edge against ``TRANSITIONS`` and raises
:class:`~taskmill.core.worker.records.InvalidWorkerTransition` with the key's
story on a missing edge.  The *logic* lives in the handlers, not in per-edge
functions: each event touches a handful of records in ways that depend on the
event, and a table of functions would only move that code around at the price
of an indirection on the hot path.

Heap entries are never removed eagerly: a ready entry is valid while its
record is ``ready`` with the same ``seq``; stale ones are skipped when popped,
and the heap is rebuilt when stale entries outnumber live ones (plus a slack).
Each move costs O(1) plus O(the record's inputs or dependents), times
O(log n) for heap operations; nothing scans all tasks.
"""

from __future__ import annotations

import heapq
from collections import deque
from itertools import count
from typing import Iterable

from taskmill.core.worker.events import CancelExecution, DataRetained, WorkerOutput
from taskmill.core.worker.fetch_queue import FetchQueue
from taskmill.core.worker.records import (
    _ALLOWED,
    CANCELLED,
    ERROR,
    EXECUTING,
    FETCH,
    FLIGHT,
    MEMORY,
    MISSING,
    READY,
    RELEASED,
    WAITING,
    InvalidWorkerTransition,
    StoryEntry,
    TaskRecord,
    _HeapEntry,
)
from taskmill.protocol.vocabulary import Address, Key, Priority

__all__ = ["WorkerBookkeeping"]


class WorkerBookkeeping:
    """Records and indexes of one worker, and the moves between states (see
    the module docstring).  Public, read-only for the shell: ``tasks``,
    ``executing``, ``in_memory``, ``nbytes_in_memory``, ``paused``, the
    figures ``executing_count`` and ``ready_count``, ``task_state`` and
    ``story``."""

    def __init__(self, address: Address, nthreads: int, max_fetch_keys_per_request: int,
                 max_concurrent_fetches: int, story_size: int) -> None:
        self.address = address
        self.nthreads = nthreads
        self.max_fetch_keys_per_request = max_fetch_keys_per_request
        self.max_concurrent_fetches = max_concurrent_fetches
        self.tasks: dict[Key, TaskRecord] = {}
        #: keys whose execution occupies a thread (including cancelled ones).
        #: A plain set: the machine only tests membership and counts it.
        self.executing: set[Key] = set()
        #: executing keys whose task called ``secede()``: their threads do not
        #: count against ``nthreads`` (see :mod:`taskmill.core.worker.secession`)
        self.seceded: dict[Key, None] = {}
        #: seceded keys waiting in ``rejoin()`` for a thread, first come first served
        self.rejoining: dict[Key, None] = {}
        #: keys whose data is in the shell's data store.  A plain set: the
        #: machine only tests membership (the shell may iterate it freely).
        self.in_memory: set[Key] = set()
        self.nbytes_in_memory = 0
        #: memory is short: start no task and no fetch (``PauseChanged``)
        self.paused = False
        self._ready: list[_HeapEntry] = []
        self._ready_count = 0
        self._fq = FetchQueue(self.tasks, address, max_fetch_keys_per_request, max_concurrent_fetches)
        #: keys with no known holder (``AskWhoHas`` sent); ordered, as a
        #: re-ask of every missing key would walk it
        self._missing: dict[Key, None] = {}
        self._log: deque[StoryEntry] = deque(maxlen=story_size)
        self._counter = count(1)
        # scratch of the handle() call under way
        self._out: list[WorkerOutput] = []
        self._delete: list[Key] = []
        self._ask: dict[Key, None] = {}
        self._stim = ""

    # ------------------------------------------------------------------ #
    # Public figures
    # ------------------------------------------------------------------ #
    @property
    def executing_count(self) -> int:
        """Threads busy (cancelled executions still hold their thread)."""
        return len(self.executing)

    @property
    def busy_threads(self) -> int:
        """Threads counted against ``nthreads``: executing tasks, less the seceded ones."""
        return len(self.executing) - len(self.seceded)

    @property
    def ready_count(self) -> int:
        """Tasks queued for a thread."""
        return self._ready_count

    def task_state(self, key: Key) -> str | None:
        """The state of ``key`` here, or None when it is unknown/forgotten."""
        ts = self.tasks.get(key)
        return None if ts is None else ts.state

    @property
    def story_log(self) -> deque[StoryEntry]:
        """Every recorded state change and note, oldest first (bounded)."""
        return self._log

    def story(self, key: Key) -> list[StoryEntry]:
        """Recorded transitions and notes about ``key``, oldest first:
        ``(key, start, finish, stimulus_id)``; ``start`` is ``"ignored"`` or
        ``"note"`` for events that changed nothing."""
        return [e for e in self._log if e[0] == key]

    # ------------------------------------------------------------------ #
    # Moves
    # ------------------------------------------------------------------ #
    def _set_state(self, ts: TaskRecord, finish: str) -> None:
        """Move ``ts`` to ``finish`` if ``TRANSITIONS`` allows it, and log it."""
        start = ts.state
        if finish not in _ALLOWED[start]:
            raise InvalidWorkerTransition(
                f"{ts.key!r}: {start} -> {finish} is not a legal transition "
                f"(stimulus {self._stim!r}); story: {self.story(ts.key)}"
            )
        ts.state = finish
        self._log.append((ts.key, start, finish, self._stim))

    def _note(self, key: Key, what: str, detail: str) -> None:
        """Log an event that changed nothing (``what``: "ignored" or "note")."""
        self._log.append((key, what, detail, self._stim))

    def _new(self, key: Key, priority: Priority) -> TaskRecord:
        """A new record (state ``released`` until its first move)."""
        ts = TaskRecord(key, priority)
        self.tasks[key] = ts
        return ts

    def _new_remote(self, key: Key, priority: Priority, nbytes: int, holders: Iterable[Address]) -> TaskRecord:
        """A new record for data that lives elsewhere: queued for fetching
        from ``holders``, or missing (and asked for) if there are none.  The
        caller says why it is needed (``dependents`` or ``held``)."""
        ts = self._new(key, priority)
        ts.nbytes = nbytes
        self._fq.add_holders(ts, holders)
        self._to_fetch_or_missing(ts)
        return ts

    def _forget(self, ts: TaskRecord) -> None:
        """Drop the record (its state-specific indexes are already cleaned)."""
        if ts.who_has:
            self._fq.clear_holders(ts)
        del self.tasks[ts.key]
        self._set_state(ts, RELEASED)

    def _to_fetch_or_missing(self, ts: TaskRecord) -> None:
        """Queue a dependency for fetching, or mark it missing (and ask)."""
        if ts.who_has:
            self._set_state(ts, FETCH)
            ts.seq = next(self._counter)
            self._fq.push(ts)
        else:
            self._set_state(ts, MISSING)
            self._missing[ts.key] = None
            self._ask[ts.key] = None

    def _make_ready(self, ts: TaskRecord) -> None:
        """Queue ``ts`` (all inputs here) for a thread."""
        self._set_state(ts, READY)
        ts.seq = seq = next(self._counter)
        heapq.heappush(self._ready, (ts.priority, seq, ts.key))
        self._ready_count += 1

    def _unready(self, ts: TaskRecord) -> None:
        """Bookkeeping for a record leaving ``ready`` other than to execute."""
        self._ready_count -= 1
        ready = self._ready
        if len(ready) > 2 * self._ready_count + 1024:
            tasks = self.tasks
            self._ready = [
                e
                for e in ready
                if (t := tasks.get(e[2])) is not None
                and t is not ts
                and t.state == READY
                and t.seq == e[1]
            ]
            heapq.heapify(self._ready)

    def _put_in_memory(self, ts: TaskRecord, nbytes: int) -> None:
        """The shell stored ``ts``'s data: tasks waiting only for it become ready."""
        if ts.who_has:
            self._fq.clear_holders(ts)
        self._set_state(ts, MEMORY)
        ts.nbytes = nbytes
        key = ts.key
        self.in_memory.add(key)
        self.nbytes_in_memory += nbytes
        if ts.dependents:
            tasks = self.tasks
            for dkey in ts.dependents:  # in order: it sets their ``seq``
                dts = tasks[dkey]
                w = dts.waiting
                if w:
                    w.pop(key, None)
                    if not w and dts.state == WAITING:
                        self._make_ready(dts)

    def _on_data_retained(self, ev: DataRetained) -> None:
        """Data kept from before this registration: in memory and ``held``
        (the scheduler learns of it from the registration itself)."""
        for key, nbytes in ev.nbytes.items():
            if key not in self.tasks:
                ts = self._new(key, (0,))
                self._put_in_memory(ts, nbytes)
                ts.held = True

    def _drop_memory(self, ts: TaskRecord) -> None:
        """Forget ``ts``'s data here and have the shell delete it."""
        self.in_memory.discard(ts.key)
        self.nbytes_in_memory -= ts.nbytes
        self._delete.append(ts.key)

    def _release_deps(self, ts: TaskRecord) -> None:
        """``ts`` no longer needs its inputs: release those nobody else needs."""
        deps = ts.deps
        if not deps:
            return
        ts.deps = ()
        ts.waiting = None
        key = ts.key
        tasks = self.tasks
        for dkey in deps:
            dts = tasks.get(dkey)
            if dts is None or not dts.dependents:
                continue
            dts.dependents.pop(key, None)
            if not dts.dependents and not dts.assigned and not dts.held:
                self._release(dts)

    def _drop_assignment(self, ts: TaskRecord) -> None:
        """The scheduler no longer wants ``ts`` here (``FreeKeys``, or a steal
        given up to another worker): release what nothing else here needs.  An
        input of a task here keeps its data, and one computed here for it is
        fetched instead."""
        ts.assigned = ts.held = False
        ts.req = None
        if not ts.dependents:
            self._release(ts)
            return
        st = ts.state
        if st == WAITING or st == READY:
            if st == READY:
                self._unready(ts)
            self._release_deps(ts)
            self._to_fetch_or_missing(ts)
        elif st == ERROR:
            self._to_fetch_or_missing(ts)
        else:
            self._note(ts.key, "note", "freed but kept: input of a task here")

    def _release(self, ts: TaskRecord) -> None:
        """Nobody here needs ``ts`` any more: drop data, queue entries or work."""
        st = ts.state
        if st == EXECUTING:
            ts.previous = EXECUTING
            self._set_state(ts, CANCELLED)
            self._out.append(CancelExecution(self._stim, ts.key))
            return
        if st == FLIGHT:
            ts.previous = FLIGHT
            self._set_state(ts, CANCELLED)
            return
        if st == CANCELLED:
            return
        if st == MEMORY:
            self._drop_memory(ts)
        elif st == READY:
            self._unready(ts)
        elif st == MISSING:
            self._missing.pop(ts.key, None)
        ts.req = None
        self._release_deps(ts)
        self._forget(ts)
