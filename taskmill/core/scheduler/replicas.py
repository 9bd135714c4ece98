"""Copies of data for the pure scheduler: copy requests, insurance copies
while workers die, and graceful retirement.

Theory of operation
-------------------
:class:`Replicas` owns the workers being retired (``retiring``), the
scheduler's notion of time (``clock``, the latest ``now`` an event brought:
the state machine has no clock), the insurance window (``insured_until``)
and the results waiting for a worker to take their insurance copy
(``uninsured``).  It keeps the copy-request links on the records
(``TaskRecord.acquiring_on`` / ``WorkerRecord.acquiring``) and batches the
requests of one event per worker (``Step.acquire_batch``).  It never changes
a task's state: removing a retired worker is handed back to the caller.

**Copies.**  The scheduler never moves data itself: it tells a worker to
fetch keys from their holders (``AcquireReplicas``, one per worker and
event) through the worker's ordinary fetch path.  Until the worker
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
an acquisition or the set of open workers changes (``Step.retire_dirty``), which
also makes good what happens meanwhile: a result finishing on the retiring
worker, a target that dies or declines.  A retiring worker that holds no key
without a copy elsewhere is removed (``WorkerRetired``); its tasks still
processing go back to waiting without counting as suspicious (the worker did
not die running them).  If no open worker is left to take its data, or the
shell cancels (``RetireCancelled``), or it dies first, the retirement ends
with ``RetirementAborted`` and, if alive, the worker is back at work.

**Removal** of a worker (``WorkerLeft``, retirement) ends its retirement
and its pending copies here (``worker_gone``); the tasks are the task
machine's (see "Worker loss" in ``taskmill.core.scheduler.state``).

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

**Pause** (``Membership.pause``) takes a worker out of the ``idle`` index
while its memory is short; paused workers are not chosen for new copies
either, but still serve data.  A worker resuming (or joining) is a new
place for retiring workers' data and for insurance copies that found none.

Invariants (checked by ``taskmill.core.scheduler.validate``):
``ws in retiring``  <=>  ``ws.retiring``, and only live workers retire;
``ws in ts.acquiring_on``  <=>  ``ts in ws.acquiring``, only for tasks in
memory and never on a holder.

Cost: a replicate is O(keys x pool); a retirement re-check is O(keys held by
retiring workers + workers), done at most once per event and only
while a retirement is in progress and something relevant changed.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice

from taskmill.core.scheduler.events import (
    ReplicateRequested,
    RetirementAborted,
)
from taskmill.core.scheduler.membership import Membership, by_load
from taskmill.core.scheduler.records import EMPTY, MEMORY, TaskRecord, WorkerRecord
from taskmill.core.scheduler.step import Step
from taskmill.protocol.vocabulary import AcquireReplicas, Address, Key

#: Results up to this size (bytes) get an insurance copy while workers die.
INSURED_BYTES = 64 * 1024
#: How long (seconds) after an unexpected worker death results are insured.
INSURANCE_WINDOW = 60.0
#: At most this many open workers are compared when choosing where a copy goes.
MAX_COPY_TARGET_SCAN = 16


def _keys_held(ws: WorkerRecord) -> int:
    """Keys ``ws`` holds or is fetching a copy of."""
    return len(ws.has_what) + len(ws.acquiring)


class Replicas:
    """Copy requests, insurance copies and graceful retirement.

    Owns ``retiring``, ``clock``, ``insured_until`` and ``uninsured``, and the
    copy-request links on the records (``acquiring_on``/``acquiring``).
    Invariants: ``ws in retiring`` iff ``ws.retiring``, live workers only; a
    copy is requested only of a task in memory, never on a holder (see the
    module docstring)."""

    def __init__(self, membership: Membership) -> None:
        self.membership = membership
        #: workers being retired
        self.retiring: dict[WorkerRecord, None] = {}
        #: the latest ``now`` seen on an event (the state machine has no clock)
        self.clock = 0.0
        #: small results get insurance copies while ``clock`` is before this
        self.insured_until = float("-inf")
        #: results that found no worker to take their insurance copy: retried
        #: when a worker joins or resumes (entries may be stale: re-checked then)
        self.uninsured: dict[TaskRecord, None] = {}

    def tick(self, now: float) -> None:
        """An event brought the time ``now``."""
        if now > self.clock:
            self.clock = now

    @staticmethod
    def copies_pending(keys: list[Key], tasks: dict[Key, TaskRecord]) -> list[Key]:
        """Those of ``keys`` that some worker is still fetching a copy of."""
        return [k for k in keys if (ts := tasks.get(k)) is not None and ts.acquiring_on]

    # ------------------------------------------------------------------ #
    # Copy requests
    # ------------------------------------------------------------------ #
    def request(self, step: Step, ts: TaskRecord, ws: WorkerRecord) -> None:
        """Ask ``ws`` to fetch a copy of ``ts`` (sent when the event ends)."""
        if ts.acquiring_on is EMPTY:
            ts.acquiring_on = {}
        ts.acquiring_on[ws] = None
        ws.acquiring[ts] = None
        step.note(ts.key, MEMORY, MEMORY, f"copy requested on {ws.address}")
        batches = step.acquire_batch
        if batches is None:
            step.acquire_batch = {ws: [ts]}
        elif ws in batches:
            batches[ws].append(ts)
        else:
            batches[ws] = [ts]

    @staticmethod
    def arrived(ts: TaskRecord, ws: WorkerRecord) -> None:
        """``ws`` now holds ``ts``: a copy it was fetching is done."""
        if ts.acquiring_on.pop(ws, 0) is None:
            del ws.acquiring[ts]

    def drop(self, step: Step, ts: TaskRecord, ws: WorkerRecord) -> None:
        """``ws`` will not get a copy of ``ts`` after all."""
        if ts.acquiring_on.pop(ws, 0) is None:
            del ws.acquiring[ts]
            if self.retiring:
                step.retire_dirty = True

    def cancel(self, step: Step, ts: TaskRecord) -> None:
        """``ts`` leaves memory: workers fetching a copy drop it (``FreeKeys``)."""
        for ws in list(ts.acquiring_on):
            step.free(ws, ts.key)
            self.drop(step, ts, ws)

    def flush(self, step: Step) -> None:
        """Emit one ``AcquireReplicas`` per worker for the copies requested
        in this event (after that worker's pending frees)."""
        batches = step.acquire_batch
        if batches is None:
            return
        step.acquire_batch = None
        for ws, tasks in batches.items():
            live = [ts for ts in tasks if ws in ts.acquiring_on]
            if not live or not ws.alive:
                continue
            step.flush_frees(ws)
            step.cmds.append(
                AcquireReplicas(
                    step.stimulus_id,
                    ws.address,
                    {ts.key: tuple([h.address for h in ts.who_has]) for ts in live},
                    {ts.key: ts.nbytes for ts in live},
                    step.next_epoch(),
                )
            )

    def replicate(self, step: Step, ev: ReplicateRequested, tasks: dict[Key, TaskRecord]) -> None:
        """Request copies of ``ev.keys`` until ``ev.n`` workers of the pool
        hold or fetch each (module docstring)."""
        workers = self.membership.workers
        if ev.workers is None:
            candidates = list(workers.values())
        else:
            candidates = [workers[a] for a in dict.fromkeys(ev.workers) if a in workers]
        pool = by_load([ws for ws in candidates if ws.open])
        if not pool:
            step.note("", "", "", "ignored: replicate with no open worker to copy to")
            return
        in_pool = dict.fromkeys(pool)
        n = len(pool) if ev.n is None else min(ev.n, len(pool))
        for i, key in enumerate(dict.fromkeys(ev.keys)):
            ts = tasks.get(key)
            if ts is None or ts.state != MEMORY:
                step.ignore(key, ts, "replicate of a key not in memory")
                continue
            have = sum(1 for ws in ts.who_has if ws in in_pool)
            have += sum(1 for ws in ts.acquiring_on if ws in in_pool)
            for j in range(len(pool)):
                if have >= n:
                    break
                ws = pool[(i + j) % len(pool)]
                if ws not in ts.who_has and ws not in ts.acquiring_on:
                    self.request(step, ts, ws)
                    have += 1

    # ------------------------------------------------------------------ #
    # Insurance
    # ------------------------------------------------------------------ #
    def insure(self, step: Step, ts: TaskRecord) -> None:
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
        candidates = (ws for ws in self.membership.workers.values()
                      if ws.open and ws not in ts.who_has)
        target = min(islice(candidates, MAX_COPY_TARGET_SCAN), key=_keys_held, default=None)
        if target is not None:
            self.request(step, ts, target)
        else:
            self.uninsured[ts] = None

    def new_room(self, step: Step) -> None:
        """A worker joined or resumed: a new place for the data of retiring
        workers, and for the insurance copies that found none."""
        if self.retiring:
            step.retire_dirty = True
        pending = self.uninsured
        self.uninsured = {}
        for ts in pending:
            self.insure(step, ts)

    # ------------------------------------------------------------------ #
    # Retirement
    # ------------------------------------------------------------------ #
    def retire(self, step: Step, addresses: tuple[Address, ...]) -> None:
        """Start retiring the workers at ``addresses`` (``RetireRequested``)."""
        for address in addresses:
            ws = self.membership.workers.get(address)
            if ws is None:
                step.note("", "", "", f"ignored: retire unknown worker {address}")
                continue
            if not ws.retiring:
                ws.retiring = True
                self.retiring[ws] = None
                self.membership.close(ws)
                step.note("", "", "", f"retiring worker {address}")
        step.retire_dirty = bool(self.retiring)

    def stop_retiring(self, step: Step, ws: WorkerRecord, reason: str) -> None:
        """``ws`` is no longer retiring; back at work if it is alive."""
        ws.retiring = False
        del self.retiring[ws]
        step.note("", "", "", f"retirement of {ws.address} aborted: {reason}")
        step.cmds.append(RetirementAborted(step.stimulus_id, ws.address, reason))
        self.membership.reopen(step, ws)

    def progress(self, step: Step, retired: Callable[[Step, WorkerRecord], None]) -> None:
        """Request copies of the keys held only on retiring workers; a
        retiring worker that holds none is retired: ``retired(step, ws)``
        removes it before the next one is looked at."""
        step.retire_dirty = False
        targets = self.membership.open_by_load()
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
                self.request(step, ts, targets[turn % len(targets)])
                turn += 1
            if waiting and not targets:
                self.stop_retiring(
                    step,
                    rws,
                    f"no other running (unpaused) worker can take the {waiting} keys "
                    "held only there",
                )
            elif not waiting:
                rws.retiring = False
                del self.retiring[rws]
                retired(step, rws)

    # ------------------------------------------------------------------ #
    # Workers leaving, restart
    # ------------------------------------------------------------------ #
    def worker_gone(self, step: Step, ws: WorkerRecord, reason: str, expected: bool) -> None:
        """``ws`` left (``expected``: it was retired): its retirement and the
        copies it was fetching end; a death opens the insurance window."""
        if ws.retiring:
            self.stop_retiring(step, ws, f"it left before its data was moved: {reason}")
        if not expected:  # workers die: insure small results for a while
            self.insured_until = self.clock + INSURANCE_WINDOW
        for ts in list(ws.acquiring):
            self.drop(step, ts, ws)
            self.insure(step, ts)

    def clear_tasks(self, step: Step, reason: str) -> None:
        """Every task is gone (restart): retirements end, nothing is insured."""
        for ws in list(self.retiring):
            self.stop_retiring(step, ws, reason)
        self.uninsured.clear()
