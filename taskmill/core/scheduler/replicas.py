"""Workers coming and going, for the pure scheduler: copies of data, graceful
retirement, paused workers, removal.

Theory of operation
-------------------
``ReplicaManagement`` sits between ``SchedulerCore`` (state and transitions,
``taskmill.core.scheduler.transitions``) and ``SchedulerState`` (the other
event handlers, ``taskmill.core.scheduler.state``).  Like the rest of the
state machine it never touches sockets or the clock.

**Copies.**  The scheduler never moves data itself: it tells a worker to
fetch keys from their holders (``AcquireReplicas``, one per worker and
``handle`` call) through the worker's ordinary fetch path.  Until the worker
reports the copy (``AddKeys``) the request is remembered on both
records (``TaskRecord.acquiring_on`` / ``WorkerRecord.acquiring``), so that

* a key leaving memory meanwhile is freed on the fetching worker too
  (``FreeKeys``), and the worker never keeps a copy nobody tracks;
* a worker that cannot take the copy (``ReleasedKeys``: it is computing
  or failed that key itself) or that leaves is struck off, and whoever waits
  for the copy (``replicate``, a retirement) sees it settle.

``ReplicateRequested`` is one-shot, like dask's ``replicate``: each key in
memory gets copies until ``n`` workers of the pool hold it or fetch it;
existing extra copies are kept, later losses are not made good.

**Retirement.**  ``RetireRequested`` marks workers *retiring*: they leave the
``idle`` index (no new task goes there; tasks already there go on) and every
key held only on retiring workers gets a copy requested on an open worker
(least bytes per thread first).  Progress is re-checked whenever a replica,
an acquisition or the set of open workers changes (``_retire_dirty``), which
also makes good what happens meanwhile: a result finishing on the retiring
worker, a target that dies or declines.  A retiring worker that holds no key
without a copy elsewhere is removed (``WorkerRetired``); its tasks still
processing go back to waiting without counting as suspicious (the worker did
not die running them).  If no open worker is left to take its data, or the
shell cancels (``RetireCancelled``), or it dies first, the retirement ends
with ``RetirementAborted`` and, if alive, the worker is back at work.

**Removal** (``_remove_worker``, for ``WorkerLeft`` and retirement): see
"Worker loss" in ``taskmill.core.scheduler.state``.

**Insurance copies while workers die.**  A result held on one worker whose
inputs were already freed costs its whole freed lineage to recompute when
that worker dies (with each kill losing a third of a 3-worker cluster's
results, that cascade is what made repeated deaths diverge).  So for
``INSURANCE_WINDOW`` seconds after a worker left unexpectedly (time comes from
the events' ``now``), every *small* result (at most ``INSURED_BYTES``) that is
still needed and held in one place gets a copy requested on another open
worker, through the same ``AcquireReplicas`` path as ``replicate``: when a
result finishes, and when a death (or a dropped copy) leaves such a key with a
single holder (a result that finds no open worker is retried when one joins
or resumes).  Small results cost little memory and one batched transfer;
big ones are left to lineage (doubling them could cause the next death).
Outside the window nothing changes, so a healthy cluster pays nothing.

**Pause.**  ``Paused`` takes a worker out of the ``idle`` index while
its memory is short, so placement sends its new tasks elsewhere; with every
worker paused, ready tasks wait in the scheduler's queue.  Tasks already
sent there stay (it finishes what it runs; the rest starts when it resumes).
Paused workers are not chosen for new copies either, but still serve data.

Cost: a replicate is O(keys x pool); a retirement re-check is O(keys held by
retiring workers + workers), done at most once per ``handle`` step and only
while a retirement is in progress and something relevant changed.
"""

from __future__ import annotations

from itertools import islice

from taskmill.core.scheduler.events import (
    ReplicateRequested,
    RetireCancelled,
    RetireRequested,
    RetirementAborted,
    WorkerRetired,
)
from taskmill.protocol.vocabulary import (
    AcquireReplicas,
    Address,
    Key,
    Paused,
)
from taskmill.core.scheduler.records import (
    ERRED,
    KILLED_WORKER,
    LOST_DATA,
    MEMORY,
    NO_WORKER,
    QUEUED,
    RELEASED,
    WAITING,
    ErrorInfo,
    TaskRecord,
    WorkerRecord,
)
from taskmill.core.scheduler.transitions import SchedulerCore


def _by_load(workers: list[WorkerRecord]) -> list[WorkerRecord]:
    """Least bytes held per thread first, then least busy."""
    return sorted(workers, key=lambda ws: (ws.nbytes / max(1, ws.nthreads), ws.used / ws.capacity))


def _keys_held(ws: WorkerRecord) -> int:
    """Keys ``ws`` holds or is fetching a copy of."""
    return len(ws.has_what) + len(ws.acquiring)


#: Results up to this size (bytes) get an insurance copy while workers die.
INSURED_BYTES = 64 * 1024
#: How long (seconds) after an unexpected worker death results are insured.
INSURANCE_WINDOW = 60.0
#: At most this many open workers are compared when choosing where a copy goes.
MAX_COPY_TARGET_SCAN = 16


class ReplicaManagement(SchedulerCore):
    """Replication, retirement, pause and worker removal (see the module docstring)."""

    def __init__(self, *, allowed_failures: int = 3, validate: bool = False) -> None:
        super().__init__(allowed_failures=allowed_failures, validate=validate)
        #: the latest ``now`` seen on an event (the state machine has no clock)
        self.clock = 0.0
        #: small results get insurance copies while ``clock`` is before this
        self.insured_until = float("-inf")
        #: results that found no worker to take their insurance copy: retried
        #: when a worker joins or resumes (entries may be stale: re-checked then)
        self._uninsured: dict[TaskRecord, None] = {}

    def _tick(self, now: float) -> None:
        """An event brought the time ``now``."""
        if now > self.clock:
            self.clock = now

    # ------------------------------------------------------------------ #
    # Queries (read-only)
    # ------------------------------------------------------------------ #
    def workers_to_retire(self, n: int) -> list[Address]:
        """The ``n`` workers (not already retiring) cheapest to retire: least
        data held first."""
        candidates = [ws for ws in self.workers.values() if not ws.retiring]
        candidates.sort(key=lambda ws: (ws.nbytes, len(ws.has_what), len(ws.processing)))
        return [ws.address for ws in candidates[: max(0, n)]]

    def copies_pending(self, keys: list[Key]) -> list[Key]:
        """Those of ``keys`` that some worker is still fetching a copy of."""
        tasks = self.tasks
        return [k for k in keys if (ts := tasks.get(k)) is not None and ts.acquiring_on]

    # ------------------------------------------------------------------ #
    # Copies
    # ------------------------------------------------------------------ #
    def _request_copy(self, ts: TaskRecord, ws: WorkerRecord) -> None:
        """Ask ``ws`` to fetch a copy of ``ts`` (sent when the step ends)."""
        ts.acquiring_on[ws] = None
        ws.acquiring[ts] = None
        self._log(ts.key, MEMORY, MEMORY, f"copy requested on {ws.address}")
        batch = self._acquire_batch.get(ws)
        if batch is None:
            self._acquire_batch[ws] = [ts]
        else:
            batch.append(ts)

    def _insure(self, ts: TaskRecord) -> None:
        """Request a second copy of ``ts`` if it is a small, still needed result
        held in one place while workers have been dying (module docstring)."""
        if (
            self.clock >= self.insured_until
            or len(ts.who_has) != 1
            or ts.acquiring_on
            or not 0 <= ts.nbytes <= INSURED_BYTES
            or not (ts.waiters or ts.who_wants)
            or ts.state != MEMORY
        ):
            return
        candidates = (ws for ws in self.workers.values() if ws.open and ws not in ts.who_has)
        target = min(islice(candidates, MAX_COPY_TARGET_SCAN), key=_keys_held, default=None)
        if target is not None:
            self._request_copy(ts, target)
        else:
            self._uninsured[ts] = None

    def _insure_pending(self) -> None:
        """A worker can take copies again: retry the results that found none."""
        pending = self._uninsured
        self._uninsured = {}
        for ts in pending:
            self._insure(ts)

    def _flush_copies(self) -> None:
        """Emit one ``AcquireReplicas`` per worker for the copies requested
        in this step (after that worker's pending frees)."""
        batches = self._acquire_batch
        self._acquire_batch = {}
        for ws, tasks in batches.items():
            live = [ts for ts in tasks if ws in ts.acquiring_on]
            if not live or not ws.alive:
                continue
            self._flush_frees(ws)
            self._cmds.append(
                AcquireReplicas(
                    self._stimulus_id,
                    ws.address,
                    {ts.key: tuple([h.address for h in ts.who_has]) for ts in live},
                    {ts.key: ts.nbytes for ts in live},
                )
            )

    def _on_replicate_requested(self, ev: ReplicateRequested) -> None:
        if ev.workers is None:
            candidates = list(self.workers.values())
        else:
            candidates = [self.workers[a] for a in dict.fromkeys(ev.workers) if a in self.workers]
        pool = _by_load([ws for ws in candidates if ws.open])
        if not pool:
            self._log("", "", "", "ignored: replicate with no open worker to copy to")
            return
        in_pool = dict.fromkeys(pool)
        n = len(pool) if ev.n is None else min(ev.n, len(pool))
        for i, key in enumerate(dict.fromkeys(ev.keys)):
            ts = self.tasks.get(key)
            if ts is None or ts.state != MEMORY:
                self._ignore(key, "replicate of a key not in memory")
                continue
            have = sum(1 for ws in ts.who_has if ws in in_pool)
            have += sum(1 for ws in ts.acquiring_on if ws in in_pool)
            for j in range(len(pool)):
                if have >= n:
                    break
                ws = pool[(i + j) % len(pool)]
                if ws not in ts.who_has and ws not in ts.acquiring_on:
                    self._request_copy(ts, ws)
                    have += 1

    # ------------------------------------------------------------------ #
    # Retirement
    # ------------------------------------------------------------------ #
    def _on_retire_requested(self, ev: RetireRequested) -> None:
        for address in ev.workers:
            ws = self.workers.get(address)
            if ws is None:
                self._log("", "", "", f"ignored: retire unknown worker {address}")
                continue
            if not ws.retiring:
                ws.retiring = True
                self.retiring[ws] = None
                self.idle.pop(ws, None)
                self._log("", "", "", f"retiring worker {address}")
        self._retire_dirty = bool(self.retiring)

    def _on_retire_cancelled(self, ev: RetireCancelled) -> None:
        for address in ev.workers:
            ws = self.workers.get(address)
            if ws is not None and ws.retiring:
                self._stop_retiring(ws, ev.reason)

    def _stop_retiring(self, ws: WorkerRecord, reason: str) -> None:
        """``ws`` is no longer retiring; back at work if it is alive."""
        ws.retiring = False
        del self.retiring[ws]
        self._log("", "", "", f"retirement of {ws.address} aborted: {reason}")
        self._cmds.append(RetirementAborted(self._stimulus_id, ws.address, reason))
        if ws.alive and ws.open and ws.used < ws.capacity:
            self.idle[ws] = None
            self._freed[ws] = None

    def _progress_retirement(self) -> None:
        """Request copies of the keys held only on retiring workers; remove
        the retiring workers that hold none."""
        self._retire_dirty = False
        targets = _by_load([ws for ws in self.workers.values() if ws.open])
        turn = 0
        for rws in list(self.retiring):
            waiting = 0
            for ts in rws.has_what:
                if any(not h.retiring for h in ts.who_has):
                    continue
                waiting += 1
                if any(not a.retiring for a in ts.acquiring_on):
                    continue
                if not targets:
                    break
                self._request_copy(ts, targets[turn % len(targets)])
                turn += 1
            if waiting and not targets:
                self._stop_retiring(
                    rws,
                    f"no other running (unpaused) worker can take the {waiting} keys "
                    "held only there",
                )
            elif not waiting:
                self._retire(rws)

    def _retire(self, ws: WorkerRecord) -> None:
        address = ws.address
        ws.retiring = False
        del self.retiring[ws]
        self._remove_worker(address, "it was retired", expected=True)
        self._cmds.append(WorkerRetired(self._stimulus_id, address))

    # ------------------------------------------------------------------ #
    # Removal
    # ------------------------------------------------------------------ #
    def _remove_worker(self, address: Address, reason: str, expected: bool = False) -> None:
        """``address`` is gone: reschedule its tasks, recompute (or report
        lost) what only it held.  ``expected``: it was retired, so its tasks
        do not count as suspicious."""
        ws = self.workers.pop(address)
        ws.alive = False
        self.idle.pop(ws, None)
        self._freed.pop(ws, None)
        self._pending_free.pop(ws, None)
        if ws.retiring:
            self._stop_retiring(ws, f"it left before its data was moved: {reason}")
        if not expected:  # workers die: insure small results for a while
            self.insured_until = self.clock + INSURANCE_WINDOW
        for ts in list(ws.acquiring):
            self._drop_acquisition(ts, ws)
            self._insure(ts)
        # Only the tasks it was most likely running count as suspects: the
        # ``nthreads`` it was given first (it runs them in that order, and a
        # finished one leaves ``processing``).  The rest were only queued there.
        for rank, ts in enumerate(list(ws.processing)):
            if expected or rank >= ws.nthreads:
                self._transition(ts, WAITING)
                continue
            ts.suspicious += 1
            ts.deaths += ((address, reason),)
            if ts.suspicious >= self.allowed_failures:
                deaths = ", ".join(f"{a} ({r})" for a, r in ts.deaths)
                text = (
                    f"task {ts.key!r} was processing on {ts.suspicious} workers that "
                    f"died while running it: {deaths}"
                )
                self._transition(ts, ERRED, ErrorInfo(None, None, text, "", KILLED_WORKER))
            else:
                self._transition(ts, WAITING)
        for ts in list(ws.has_what):
            self._remove_replica(ts, ws)
            if not ts.who_has:
                self._lost(ts, f"key {ts.key!r} was held only on worker {address} which left: {reason}")
            else:
                self._insure(ts)
        for ts in list(self.restricted_waiting.get(address, ())):
            assert ts.restrictions is not None
            if ts.state == QUEUED and not any(a in self.workers for a in ts.restrictions):
                self._transition(ts, NO_WORKER)
        for ts in self.resource_index.remove_worker(ws, self.workers):
            self._transition(ts, NO_WORKER)  # no live worker declares enough any more
        ws.restricted_queue.clear()

    def _lost(self, ts: TaskRecord, reason: str) -> None:
        """The last copy of ``ts`` (in memory) is gone."""
        if ts.run_spec is None:
            self._transition(ts, ERRED, ErrorInfo(None, None, reason, "", LOST_DATA))
        else:
            self._log(ts.key, MEMORY, MEMORY, "lost: " + reason)
            self._transition(ts, RELEASED)  # recomputed by the CHECK if still needed

    # ------------------------------------------------------------------ #
    # Pause
    # ------------------------------------------------------------------ #
    def _on_worker_paused(self, ev: Paused) -> None:
        ws = self.workers.get(ev.worker)
        if ws is None:
            self._log("", "", "", f"ignored: Paused from unknown worker {ev.worker}")
            return
        if ws.paused == ev.paused:
            return
        ws.paused = ev.paused
        self._log("", "", "", f"worker {ev.worker} {'paused' if ev.paused else 'resumed'}")
        if ev.paused:
            self.idle.pop(ws, None)
        else:
            if ws.open and ws.used < ws.capacity:
                self.idle[ws] = None
                self._freed[ws] = None
            if self.retiring:
                self._retire_dirty = True
            self._insure_pending()
