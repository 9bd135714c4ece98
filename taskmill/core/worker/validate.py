"""Invariants of the worker state machine, checked from the outside.

Theory of operation
-------------------
:func:`validate_worker_state` walks every record and index that
:class:`~taskmill.core.worker.bookkeeping.WorkerBookkeeping` keeps (the base
of :class:`~taskmill.core.worker.state.WorkerState`) and checks that the
incrementally maintained indexes (executing set, ready heap and count, fetch
heaps, in-flight requests, holder index, missing keys, memory set and bytes)
agree with the records, that dependency links are symmetric, that every record
is still needed, and that no work is left idle (a free thread with a ready
task, a free fetch slot with an idle holder).  It is O(n) and meant for tests
(``WorkerState(validate=True)`` runs it after every ``handle``); it reads
private attributes on purpose and never changes anything.  It depends on the
books only, never on the handlers, so the machine imports it and not the
other way round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskmill.core.worker.records import (
    CANCELLED,
    ERROR,
    EXECUTING,
    FETCH,
    FLIGHT,
    MEMORY,
    MISSING,
    READY,
    WAITING,
    InvalidWorkerState,
    TaskRecord,
)

if TYPE_CHECKING:
    from taskmill.core.worker.bookkeeping import WorkerBookkeeping

_STATES = {WAITING, READY, EXECUTING, MEMORY, ERROR, FETCH, FLIGHT, MISSING, CANCELLED}


def validate_worker_state(ws: WorkerBookkeeping, run_ahead: int = 0) -> None:
    """Raise :class:`InvalidWorkerState` (with the key's story) on the first
    broken invariant; ``run_ahead``: calls that may be started beyond ``nthreads``."""

    def fail(ts: TaskRecord | None, msg: str) -> None:
        story = ws.story(ts.key) if ts is not None else []
        who = f"{ts.key!r} ({ts.state}): " if ts is not None else ""
        raise InvalidWorkerState(f"{who}{msg}; story: {story}")

    tasks = ws.tasks
    # order-insensitive comparisons with the machine's indexes: plain sets
    executing: set[str] = set()
    memory: set[str] = set()
    missing: set[str] = set()
    nbytes = 0
    ready = 0
    ready_entries = {(e[1], e[2]) for e in ws._ready}
    fetch_entries: dict[str, set[tuple[int, str]]] = {
        peer: {(e[1], e[2]) for e in heap} for peer, heap in ws._fq.heaps.items()
    }
    has_what: dict[str, set[str]] = {}  # the holder index, rebuilt from the records
    slots_free = len(ws._fq.in_flight) < ws.max_concurrent_fetches and not ws.paused

    for key, ts in tasks.items():
        st = ts.state
        if ts.key != key:
            fail(ts, f"indexed under {key!r}")
        if st not in _STATES:
            fail(ts, "unknown state")
        running = st == EXECUTING or (st == CANCELLED and ts.previous == EXECUTING)
        flying = st == FLIGHT or (st == CANCELLED and ts.previous == FLIGHT)
        if st == CANCELLED:
            if ts.previous not in (EXECUTING, FLIGHT):
                fail(ts, f"cancelled from {ts.previous}")
            if ts.assigned or ts.held or ts.dependents:
                fail(ts, "cancelled but still needed")
        elif not (ts.assigned or ts.held or ts.dependents):
            fail(ts, "record kept although nobody needs it")
        if running:
            executing.add(key)
        if st == MEMORY:
            memory.add(key)
            nbytes += ts.nbytes
            if ts.who_has:
                fail(ts, "in memory with holders tracked")
        elif key in ws.in_memory:
            fail(ts, "in in_memory but not in memory state")
        if st == MISSING:
            missing.add(key)
            if ts.who_has:
                fail(ts, f"missing but holders {list(ts.who_has)}")
        if ts.who_has:
            if ws.address in ts.who_has:
                fail(ts, "this worker listed as a holder")
            for addr in ts.who_has:
                has_what.setdefault(addr, set()).add(key)
        if st in (WAITING, READY):
            if not ts.assigned or ts.req is None:
                fail(ts, "queued but not assigned")
        if st == ERROR and not ts.assigned:
            fail(ts, "error kept but not assigned")
        if st == FLIGHT and ts.assigned and ts.req is None:
            fail(ts, "resumed compute without its request")
        if st == READY:
            ready += 1
            if ts.waiting:
                fail(ts, f"ready but waiting for {list(ts.waiting)}")
            if (ts.seq, key) not in ready_entries:
                fail(ts, "ready but not in the ready heap")
        if st in (WAITING, READY) or running:
            for dkey in ts.deps:
                dts = tasks.get(dkey)
                if dts is None or not dts.dependents or key not in dts.dependents:
                    fail(ts, f"input {dkey!r} does not list it as dependent")
                assert dts is not None
                if st == READY and dts.state != MEMORY:
                    fail(ts, f"ready but input {dkey!r} is {dts.state}")
            if st == WAITING:
                expected = [d for d in ts.deps if tasks[d].state != MEMORY]
                if not expected or ts.waiting is None or ts.waiting.keys() != set(expected):
                    fail(ts, f"waiting for {list(ts.waiting or ())}, expected {expected}")
        elif ts.deps or ts.waiting:
            fail(ts, f"{st} but still holds inputs {ts.deps}")
        if ts.dependents:
            for dep in ts.dependents:
                dts = tasks.get(dep)
                if dts is None:
                    fail(ts, f"dependent {dep!r} unknown")
                assert dts is not None
                if not (
                    dts.state in (WAITING, READY, EXECUTING)
                    or (dts.state == CANCELLED and dts.previous == EXECUTING)
                ):
                    fail(ts, f"dependent {dep!r} is {dts.state}")
                if key not in dts.deps:
                    fail(ts, f"dependent {dep!r} does not list it")
        if flying:
            peer = ts.coming_from
            if peer is None or key not in ws._fq.in_flight.get(peer, {}):
                fail(ts, f"in flight from {peer} but not in that request")
        elif ts.coming_from is not None:
            fail(ts, f"coming_from={ts.coming_from} while not in flight")
        if st == FETCH:
            if ts.assigned:
                fail(ts, "assigned task queued for fetching")
            if not ts.who_has:
                fail(ts, "fetch without holders")
            assert ts.who_has is not None
            if not any((ts.seq, key) in fetch_entries.get(p, ()) for p in ts.who_has):
                fail(ts, "fetch but in no holder's queue")
            if slots_free and any(p not in ws._fq.in_flight for p in ts.who_has):
                fail(ts, "idle holder and a free fetch slot, but not fetched")

    if executing != ws.executing:
        fail(None, f"executing index {sorted(ws.executing)} != {sorted(executing)}")
    if not executing.issuperset(ws.seceded):
        fail(None, f"seceded {list(ws.seceded)} not all executing")
    if not set(ws.seceded).issuperset(ws.rejoining):
        fail(None, f"rejoining {list(ws.rejoining)} not all seceded")
    busy = len(executing) - len(ws.seceded)
    if busy > ws.nthreads + run_ahead:
        fail(None, f"{busy} executing (not seceded) > {ws.nthreads} threads + {run_ahead} run ahead")
    if busy > ws.nthreads and ws.seceded:
        fail(None, f"{busy} executing (not seceded) > {ws.nthreads} threads while "
                   f"{list(ws.seceded)} seceded")
    if ws.rejoining and busy < ws.nthreads:
        fail(None, f"a thread is free while {list(ws.rejoining)} wait to rejoin")
    if ready != ws._ready_count:
        fail(None, f"ready count {ws._ready_count} != {ready}")
    if ready and busy < ws.nthreads and not ws.paused:
        fail(None, "a thread is idle while tasks are ready")
    if memory != ws.in_memory:
        fail(None, f"in_memory index {sorted(ws.in_memory)} != {sorted(memory)}")
    if nbytes != ws.nbytes_in_memory:
        fail(None, f"nbytes_in_memory {ws.nbytes_in_memory} != {nbytes}")
    if missing != ws._missing.keys():
        fail(None, f"missing index {list(ws._missing)} != {sorted(missing)}")
    index = {peer: set(keys) for peer, keys in ws._fq.has_what.items()}
    if has_what != index:
        fail(None, f"holder index {sorted((p, sorted(k)) for p, k in index.items())} != "
                   f"{sorted((p, sorted(k)) for p, k in has_what.items())}")
    if len(ws._fq.in_flight) > ws.max_concurrent_fetches:
        fail(None, f"{len(ws._fq.in_flight)} peers in flight")
    for peer, keys in ws._fq.in_flight.items():
        if len(keys) > ws.max_fetch_keys_per_request:
            fail(None, f"{len(keys)} keys in flight from {peer}")
        for key in keys:
            fts = tasks.get(key)
            if fts is None or fts.coming_from != peer:
                fail(fts, f"listed in flight from {peer}")
