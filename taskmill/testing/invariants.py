"""Cluster-wide invariants of a simulated cluster at quiescence.

Theory of operation
-------------------
Each machine checks its own invariants (``validate()``, after every event
when built with ``validate=True``).  What no single machine can check is
whether they agree with each other and with the world once nothing is left
in flight: :func:`quiescent_problems` lists every disagreement it finds, in
words.  It is meant for a quiescent cluster (no message queued, no pending
work), where every cause has had its effect:

* **stores**: every key the scheduler says is in memory on a worker is in
  that worker's data store, with the value the task book expects; each
  worker's store holds exactly the keys its machine says are in memory;
* **reports**: every key a connected client wants was reported exactly as
  the scheduler's outcome for it (``key-in-memory`` for memory,
  ``key-erred`` / ``key-lost`` for erred, none twice in a row since the
  client started wanting it); a key the scheduler no longer counts as wanted
  by the client was reported cancelled or lost; small results that came with
  a report have the right value; errors have a cause (a task that was set to
  fail, in the key's lineage; a worker that died for ``KilledWorker``);
  a client believes a key's call runs (``keys-running``) exactly when the
  scheduler marks it running;
* **liveness**: no task is left waiting, queued, no-worker or processing
  unless it genuinely cannot run: no open (running, unpaused, not retiring)
  worker satisfies its restrictions and resources, or it waits on such a
  task, or it sits on a paused worker; no worker is left with a fetch, a
  run, a missing key or an error record;
* **membership**: the scheduler's workers are exactly the live, registered,
  not retired simulated workers;
* **leaks** (``leaks=True``): no worker holds a key the scheduler does not
  list it as holding (except keys it once failed to serve,
  :meth:`~taskmill.testing.SimWorker.drop`: the scheduler struck that copy
  off on ``missing-data`` while the worker kept it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from taskmill.core.scheduler.records import LOST_DATA, TaskRecord, WorkerRecord
from taskmill.testing.behaviour import SimulatedFailure, TaskBook
from taskmill.testing.client import SimClient
from taskmill.testing.scheduler import SimScheduler
from taskmill.testing.worker import SimWorker

_ACTIVE = frozenset({"waiting", "queued", "no-worker", "processing"})
_WORKER_OK = frozenset({"memory"})
_WORKER_PAUSED_OK = frozenset({"memory", "fetch", "ready", "waiting", "missing"})


def can_run_on(ts: TaskRecord, ws: WorkerRecord) -> bool:
    """Whether ``ws`` satisfies ``ts``'s strict restrictions and resources."""
    if ts.restrictions is not None and not ts.allow_other_workers and ws.address not in ts.restrictions:
        return False
    if ts.resources:
        for name, amount in ts.resources:
            if ws.resources.get(name, 0.0) < amount:
                return False
    return True


def genuinely_stalled(scheduler: SimScheduler) -> dict[str, bool]:
    """For each active task of the scheduler: whether it may rightly wait
    forever in a quiescent cluster (see the module docstring)."""
    state = scheduler.state
    open_workers = [ws for ws in state.workers.values() if ws.open]
    memo: dict[str, bool] = {}

    def stalled(ts: TaskRecord) -> bool:
        known = memo.get(ts.key)
        if known is not None:
            return known
        memo[ts.key] = False  # a cycle cannot justify itself
        st = ts.state
        if st == "processing":
            ok = ts.processing_on is not None and ts.processing_on.paused
        elif st in ("queued", "no-worker"):
            ok = not any(can_run_on(ts, ws) for ws in open_workers)
        elif st == "waiting":
            pending = [d for d in ts.dependencies if d.state != "memory"]
            ok = bool(pending) and all(d.state in _ACTIVE and stalled(d) for d in pending)
        else:
            ok = False
        memo[ts.key] = ok
        return ok

    return {key: stalled(ts) for key, ts in state.tasks.items() if ts.state in _ACTIVE}


def _expected_report(ts: TaskRecord) -> str | None:
    if ts.state == "memory":
        return "KeyInMemory"
    if ts.state == "erred":
        assert ts.error is not None
        return "KeyLost" if ts.error.error_type == LOST_DATA else "KeyErred"
    return None


def quiescent_problems(scheduler: SimScheduler, workers: Mapping[str, SimWorker],
                       clients: Iterable[SimClient], book: TaskBook, *, deaths: int = 0,
                       leaks: bool = True) -> list[str]:
    """Every cluster-wide invariant broken now, described (empty: all hold).

    ``workers``: the incarnation at each address (dead ones included or not);
    ``deaths``: how many workers died unexpectedly so far (a ``KilledWorker``
    needs one)."""
    problems: list[str] = []
    add = problems.append
    state = scheduler.state
    state.validate()
    live = {a: w for a, w in workers.items() if w.alive and w.registered and w.retired is None}
    for w in live.values():
        w.state.validate()

    # membership
    for address in state.workers:
        if address not in live:
            add(f"the scheduler counts worker {address}, which is not a live registered worker")
    for address in live:
        if address not in state.workers:
            add(f"live worker {live[address].name} is not known to the scheduler")

    # stores
    for key, ts in state.tasks.items():
        if ts.state != "memory":
            continue
        want = book.expected(key)
        for holder in ts.who_has:
            sim = live.get(holder.address)
            if sim is None:
                add(f"{key!r} is in memory on {holder.address} for the scheduler, which is no live worker")
            elif key not in sim.store:
                add(f"{key!r} is in memory on {sim.name} for the scheduler but not in its store")
            elif sim.store[key] != want:
                add(f"{key!r} on {sim.name} is {sim.store[key]!r}, expected {want!r}")
    for w in live.values():
        machine = w.state
        if set(w.store) != machine.in_memory:
            add(f"{w.name}: store holds {sorted(w.store)} but its machine says {sorted(machine.in_memory)}")
        fine = _WORKER_PAUSED_OK if machine.paused else _WORKER_OK
        for key, rec in machine.tasks.items():
            if rec.state not in fine:
                add(f"{w.name}: {key!r} is left {rec.state} (story: {machine.story(key)[-8:]})")
        if leaks:
            record = state.workers.get(w.address)
            for key in machine.in_memory:
                task = state.tasks.get(key)
                if key not in w.dropped and (task is None or record not in task.who_has):
                    add(f"{w.name} holds {key!r} but the scheduler does not know it "
                        f"({'forgotten' if task is None else task.state})")

    # liveness
    stalled = genuinely_stalled(scheduler)
    for key, ok in stalled.items():
        if not ok:
            ts = state.tasks[key]
            where = f" on {ts.processing_on.address}" if ts.processing_on is not None else ""
            add(f"task {key!r} is stuck {ts.state}{where} (story: {state.story(key)[-8:]})")
    for key, ts in state.tasks.items():
        if ts.state == "released" and (ts.who_wants or ts.waiters):
            add(f"task {key!r} is released though it is still needed")

    # reports
    for client in clients:
        if not client.connected:
            continue
        sent = scheduler.reports.get(client.id, {})
        for key in client.wanted:
            wanted_task = state.tasks.get(key)
            marked = (wanted_task is not None and wanted_task.running
                      and wanted_task.who_wants.get(client.id) == "")
            if client.running.get(key, False) != marked:
                add(f"{client.id} believes the call of {key!r} runs: "
                    f"{client.running.get(key, False)}, but the scheduler says {marked} "
                    f"(story: {state.story(key)[-8:]})")
            kinds = sent.get(key, [])
            for a, b in zip(kinds, kinds[1:]):
                if a == b:
                    add(f"{client.id} was told {a} twice in a row for {key!r}: {kinds}")
                    break
            wanted = state.tasks.get(key)
            if wanted is not None and client.id in wanted.who_wants:
                expect = _expected_report(wanted)
                if expect is None:
                    continue  # still computing: a liveness problem if anything
                if not kinds or kinds[-1] != expect:
                    add(f"{client.id} wants {key!r} ({wanted.state}) and was last told "
                        f"{kinds[-1] if kinds else 'nothing'}, not {expect}")
            else:
                outcome = client.outcome(key)
                if outcome not in ("cancelled", "lost"):
                    add(f"{client.id} wants {key!r}, which the scheduler no longer counts as "
                        f"wanted by it, and was last told {outcome}")
        for msg in client.reports:
            problem = _report_problem(msg, book, deaths)
            if problem:
                add(f"{client.id}: {problem}")
    return problems


def _report_problem(msg: Any, book: TaskBook, deaths: int) -> str | None:
    kind = type(msg).__name__
    key = msg.key
    if kind == "KeyInMemory":
        if msg.value is not None:
            value = msg.value.deserialize()
            if value != book.expected(key):
                return f"the small result of {key!r} is {value!r}, expected {book.expected(key)!r}"
    elif kind == "KeyErred":
        if msg.exception is not None:
            exc = msg.exception.deserialize()
            if not isinstance(exc, SimulatedFailure):
                return f"{key!r} erred with {exc!r}, which no simulated task raises"
            task = book.tasks.get(exc.key)
            if task is None or task.fail < 1 or exc.key not in book.closure([key]):
                return f"{key!r} erred because {exc.key!r} failed, which is not a failing task it needs"
        elif msg.error_type == "KilledWorker" and not deaths:
            return f"{key!r} erred KilledWorker though no worker died"
    return None
