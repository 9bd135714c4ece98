"""Every invariant of the scheduler state, checked from scratch.

Theory of operation
-------------------
``validate_state(state)`` walks all tasks, workers and clients of a
``SchedulerCore`` and checks the invariants listed in
``taskmill.core.scheduler.records`` plus the neededness and queueing rules of
``taskmill.core.scheduler.transitions``.  It is O(size of the state): tests
run it after every event (``SchedulerState(validate=True)``); production does
not.  A broken invariant raises ``AssertionError`` carrying the key's story.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskmill.core.scheduler.placement import queue_live
from taskmill.core.scheduler.records import (
    ACTIVE_STATES,
    ALL_STATES,
    ERRED,
    FORGOTTEN,
    MEMORY,
    NO_WORKER,
    PROCESSING,
    QUEUED,
    RELEASED,
    WAITING,
    TaskRecord,
)
from taskmill.core.scheduler.resource_index import ResourceGroup

if TYPE_CHECKING:
    from taskmill.core.scheduler.transitions import SchedulerCore


def _fail(state: SchedulerCore, ts: TaskRecord | None, msg: str) -> None:
    if ts is None:
        raise AssertionError(msg)
    raise AssertionError(
        f"invariant broken for task {ts.key!r} ({ts.state}): {msg}\nstory:\n"
        + state._story_text(ts.key)
    )


def _check_task(state: SchedulerCore, ts: TaskRecord, queued_live: set[TaskRecord],
                resource_queued: dict[TaskRecord, ResourceGroup]) -> None:
    s = ts.state
    if s not in ALL_STATES or s == FORGOTTEN:
        _fail(state, ts, f"bad state {s!r}")
    for dts in ts.dependencies:
        if state.tasks.get(dts.key) is not dts:
            _fail(state, ts, f"dependency {dts.key!r} is not a live record")
        if ts not in dts.dependents:
            _fail(state, ts, f"not in dependents of {dts.key!r}")
        if (s in ACTIVE_STATES) != (ts in dts.waiters):
            _fail(state, ts, f"waiters of {dts.key!r} disagree with state")
    for dts in ts.dependents:
        if state.tasks.get(dts.key) is not dts or ts not in dts.dependencies:
            _fail(state, ts, f"dependent {dts.key!r} not linked back")
    for dts in ts.waiters:
        if dts.state not in ACTIVE_STATES or dts not in ts.dependents:
            _fail(state, ts, f"waiter {dts.key!r} ({dts.state}) is not an active dependent")
    if s in ACTIVE_STATES:
        expected = {d for d in ts.dependencies if d.state != MEMORY}
        if set(ts.waiting_on) != expected:
            _fail(state, ts, "waiting_on is not the set of dependencies not in memory")
    elif ts.waiting_on:
        _fail(state, ts, "waiting_on set outside an active state")
    # data
    if (s == MEMORY) != bool(ts.who_has):
        _fail(state, ts, "in memory iff some worker holds it")
    for ws in ts.who_has:
        if state.workers.get(ws.address) is not ws or not ws.alive:
            _fail(state, ts, f"held by dead worker {ws.address}")
        if ts not in ws.has_what:
            _fail(state, ts, f"not in has_what of {ws.address}")
    for ws in ts.acquiring_on:
        if s != MEMORY:
            _fail(state, ts, f"{ws.address} acquires a copy of a task not in memory")
        if state.workers.get(ws.address) is not ws or ts not in ws.acquiring:
            _fail(state, ts, f"acquiring on {ws.address}, which does not know it")
        if ws in ts.who_has:
            _fail(state, ts, f"acquiring on {ws.address}, which already holds it")
    # processing
    if s == PROCESSING:
        pws = ts.processing_on
        if pws is None or state.workers.get(pws.address) is not pws or ts not in pws.processing:
            _fail(state, ts, "processing on no live worker")
        if ts.waiting_on:
            _fail(state, ts, "processing with inputs not in memory")
    elif ts.processing_on is not None:
        _fail(state, ts, "processing_on set outside processing")
    if s == WAITING and not ts.waiting_on:
        _fail(state, ts, "waiting on nothing (should have been scheduled)")
    if ts.resources is not None:  # queued/no-worker by its resource group, not restrictions
        problem = state.resource_index.task_problem(ts, state.workers, state.idle, resource_queued)
        if problem:
            _fail(state, ts, problem)
    strict = ts.restrictions is not None and not ts.allow_other_workers and ts.resources is None
    if strict and s in (QUEUED, NO_WORKER):
        assert ts.restrictions is not None
        for addr in ts.restrictions:
            if ts not in state.restricted_waiting.get(addr, {}):
                _fail(state, ts, f"not indexed as restricted-waiting under {addr}")
    if strict and s == QUEUED:
        assert ts.restrictions is not None
        for addr in ts.restrictions:
            rws = state.workers.get(addr)
            if rws is not None and not any(
                e[2] is ts and e[1] == ts.queue_epoch for e in rws.restricted_queue
            ):
                _fail(state, ts, f"queued but not in the queue of allowed worker {addr}")
    if s == QUEUED:
        if ts.waiting_on:
            _fail(state, ts, "queued with inputs not in memory")
        if ts not in queued_live:
            _fail(state, ts, "queued but in no queue")
        if strict:
            assert ts.restrictions is not None
            for addr in ts.restrictions:
                rws = state.workers.get(addr)
                if rws is not None and rws in state.idle:
                    _fail(state, ts, f"queued while allowed worker {addr} has a free slot")
        elif state.idle and ts.resources is None:
            _fail(state, ts, "queued while a worker has a free slot")
    if s == NO_WORKER and ts.resources is None:
        if not strict:
            _fail(state, ts, "no-worker without strict restrictions")
        assert ts.restrictions is not None
        for addr in ts.restrictions:
            if addr in state.workers:
                _fail(state, ts, f"no-worker while allowed worker {addr} is alive")
    # neededness
    if s == MEMORY or s in ACTIVE_STATES:
        if not ts.who_wants and not ts.waiters:
            _fail(state, ts, "not needed but not released")
    if s == RELEASED:
        if ts.who_wants or ts.waiters:
            _fail(state, ts, "needed but released")
        if not ts.dependents:
            _fail(state, ts, "released without dependents (should be forgotten)")
    if s == ERRED:
        if ts.error is None:
            _fail(state, ts, "erred without error")
        if ts.waiters:
            _fail(state, ts, "erred with active dependents")
        if not ts.who_wants and not ts.dependents:
            _fail(state, ts, "erred, unwanted, without dependents (should be forgotten)")
    elif ts.error is not None:
        _fail(state, ts, "error set outside erred")
    for client in ts.who_wants:
        cs = state.clients.get(client)
        if cs is None or ts not in cs.wants:
            _fail(state, ts, f"wanted by {client} which does not want it")


def validate_state(state: SchedulerCore) -> None:
    """Raise AssertionError if any invariant of ``state`` is broken."""
    queued_live: set[TaskRecord] = set(queue_live(state.queue))
    for ws in state.workers.values():
        queued_live.update(queue_live(ws.restricted_queue))
    resource_queued = state.resource_index.live_queued()
    queued_live.update(resource_queued)
    for key, ts in state.tasks.items():
        if ts.key != key:
            _fail(state, ts, f"stored under {key!r}")
        _check_task(state, ts, queued_live, resource_queued)
    for addr, ws in state.workers.items():
        if ws.address != addr or not ws.alive:
            _fail(state, None, f"worker record {addr} is wrong or dead")
        used = 0
        for ts in ws.processing:
            used += ts.slot_cost
            if ts.state != PROCESSING or ts.processing_on is not ws:
                _fail(state, ts, f"in processing of {addr} but not processing there")
        if used != ws.used:
            _fail(state, None, f"worker {addr}: used={ws.used} but tasks cost {used}")
        problem = state.resource_index.worker_problem(ws)
        if problem:
            _fail(state, None, f"worker {addr}: {problem}")
        if (ws.used < ws.capacity and ws.open) != (ws in state.idle):
            _fail(state, None, f"worker {addr}: idle index wrong (used={ws.used}, "
                  f"paused={ws.paused}, retiring={ws.retiring})")
        if ws.retiring != (ws in state.retiring):
            _fail(state, None, f"worker {addr}: retiring={ws.retiring} disagrees with the index")
        for ts in ws.acquiring:
            if ws not in ts.acquiring_on:
                _fail(state, ts, f"in acquiring of {addr} but not acquiring there")
        nbytes = 0
        for ts in ws.has_what:
            nbytes += max(ts.nbytes, 0)
            if ws not in ts.who_has:
                _fail(state, ts, f"in has_what of {addr} but not in who_has")
        if nbytes != ws.nbytes:
            _fail(state, None, f"worker {addr}: nbytes={ws.nbytes} but holds {nbytes}")
    for ws in state.idle:
        if state.workers.get(ws.address) is not ws:
            _fail(state, None, f"dead worker {ws.address} in idle index")
    for addr, tasks in state.restricted_waiting.items():
        for ts in tasks:
            if (ts.state not in (QUEUED, NO_WORKER) or ts.restrictions is None or ts.allow_other_workers
                    or ts.resources is not None):
                _fail(state, ts, f"indexed as restricted-waiting under {addr}")
    problem = state.resource_index.index_problem(state.workers)
    if problem:
        _fail(state, None, problem)
    for client, cs in state.clients.items():
        for ts in cs.wants:
            if state.tasks.get(ts.key) is not ts or client not in ts.who_wants:
                _fail(state, ts, f"client {client} wants it but it does not know")
    for ws in state.retiring:
        if state.workers.get(ws.address) is not ws:
            _fail(state, None, f"retiring worker {ws.address} is not a live worker")
    if (state._recs or state._ready or state._freed or state._pending_free
            or state._retire_dirty or state._acquire_batch):
        _fail(state, None, "per-event scratch space not drained")
