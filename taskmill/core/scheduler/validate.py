"""Every invariant of the scheduler state, checked from scratch.

Theory of operation
-------------------
``validate_state(machine)`` walks all tasks, workers and clients reachable
from a :class:`~taskmill.core.scheduler.transitions.TaskMachine` (its
records and the topic objects it holds) and checks the invariants listed in
``taskmill.core.scheduler.records`` and in each topic module, plus the
neededness and queueing rules of ``taskmill.core.scheduler.transitions``.
``validate_step(step)`` checks that an event left no work behind on its
:class:`~taskmill.core.scheduler.step.Step` (the step is dropped after it).
This module imports the machine, not ``SchedulerState`` (which imports it).

Both are O(size of the state): tests run them after every event
(``SchedulerState(validate=True)``); production does not.  A broken
invariant raises ``AssertionError`` carrying the key's story.
"""

from __future__ import annotations

from taskmill.core.scheduler.policy import queue_live
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
    Frozen,
    TaskRecord,
    WorkerRecord,
)
from taskmill.core.scheduler.resource_index import ResourceGroup
from taskmill.core.scheduler.step import Step
from taskmill.core.scheduler.transitions import TaskMachine


def _fail(m: TaskMachine, ts: TaskRecord | None, msg: str) -> None:
    if ts is None:
        raise AssertionError(msg)
    raise AssertionError(
        f"invariant broken for task {ts.key!r} ({ts.state}): {msg}\nstory:\n"
        + m.story_text(ts.key)
    )


def _check_task(m: TaskMachine, ts: TaskRecord, queued_live: set[TaskRecord],
                resource_queued: dict[TaskRecord, ResourceGroup]) -> None:
    s = ts.state
    if s not in ALL_STATES or s == FORGOTTEN:
        _fail(m, ts, f"bad state {s!r}")
    for dts in ts.dependencies:
        if m.tasks.get(dts.key) is not dts:
            _fail(m, ts, f"dependency {dts.key!r} is not a live record")
        if ts not in dts.dependents:
            _fail(m, ts, f"not in dependents of {dts.key!r}")
        if (s in ACTIVE_STATES) != (ts in dts.waiters):
            _fail(m, ts, f"waiters of {dts.key!r} disagree with state")
    for dts in ts.dependents:
        if m.tasks.get(dts.key) is not dts or ts not in dts.dependencies:
            _fail(m, ts, f"dependent {dts.key!r} not linked back")
    if ts.alone is not None and (type(ts.alone) is not Frozen or list(ts.alone) != [ts]):
        _fail(m, ts, "its shared one-entry dependents map (alone) holds something else")
    for dts in ts.waiters:
        if dts.state not in ACTIVE_STATES or dts not in ts.dependents:
            _fail(m, ts, f"waiter {dts.key!r} ({dts.state}) is not an active dependent")
    if s in ACTIVE_STATES:
        expected = {d for d in ts.dependencies if d.state != MEMORY}
        if set(ts.waiting_on) != expected:
            _fail(m, ts, "waiting_on is not the set of dependencies not in memory")
    elif ts.waiting_on:
        _fail(m, ts, "waiting_on set outside an active state")
    # data
    if (s == MEMORY) != bool(ts.who_has):
        _fail(m, ts, "in memory iff some worker holds it")
    for ws in ts.who_has:
        if m.membership.workers.get(ws.address) is not ws or not ws.alive:
            _fail(m, ts, f"held by dead worker {ws.address}")
        if ts not in ws.has_what:
            _fail(m, ts, f"not in has_what of {ws.address}")
    for ws in ts.acquiring_on:
        if s != MEMORY:
            _fail(m, ts, f"{ws.address} acquires a copy of a task not in memory")
        if m.membership.workers.get(ws.address) is not ws or ts not in ws.acquiring:
            _fail(m, ts, f"acquiring on {ws.address}, which does not know it")
        if ws in ts.who_has:
            _fail(m, ts, f"acquiring on {ws.address}, which already holds it")
    # processing
    if s == PROCESSING:
        pws = ts.processing_on
        if pws is None or m.membership.workers.get(pws.address) is not pws or ts not in pws.processing:
            _fail(m, ts, "processing on no live worker")
        for dts in ts.waiting_on:  # a look-ahead task: its inputs are computed there
            if dts.processing_on is not pws:
                _fail(m, ts, f"processing with input {dts.key!r} neither in memory nor processing there")
        if ts.waiting_on and (ts.running or ts.resources is not None):
            _fail(m, ts, "a look-ahead task (inputs still processing) is running or holds resources")
    elif ts.processing_on is not None:
        _fail(m, ts, "processing_on set outside processing")
    if ts.running and s != PROCESSING:
        _fail(m, ts, "marked running outside processing")
    if s == WAITING and not ts.waiting_on:
        _fail(m, ts, "waiting on nothing (should have been scheduled)")
    if ts.resources is not None:  # queued/no-worker by its resource group, not restrictions
        problem = m.placement.resources.task_problem(ts, m.membership.workers, m.membership.idle, resource_queued)
        if problem:
            _fail(m, ts, problem)
    strict = ts.restrictions is not None and not ts.allow_other_workers and ts.resources is None
    if strict and s in (QUEUED, NO_WORKER):
        assert ts.restrictions is not None
        for addr in ts.restrictions:
            if ts not in m.placement.restricted_waiting.get(addr, {}):
                _fail(m, ts, f"not indexed as restricted-waiting under {addr}")
    if strict and s == QUEUED:
        assert ts.restrictions is not None
        for addr in ts.restrictions:
            rws = m.membership.workers.get(addr)
            if rws is not None and not any(
                e[2] is ts and e[1] == ts.queue_epoch for e in rws.restricted_queue
            ):
                _fail(m, ts, f"queued but not in the queue of allowed worker {addr}")
    if s == QUEUED:
        if ts.waiting_on:
            _fail(m, ts, "queued with inputs not in memory")
        if ts not in queued_live:
            _fail(m, ts, "queued but in no queue")
        if strict:
            assert ts.restrictions is not None
            for addr in ts.restrictions:
                rws = m.membership.workers.get(addr)
                if rws is not None and rws in m.membership.idle:
                    _fail(m, ts, f"queued while allowed worker {addr} has a free slot")
        elif m.membership.idle and ts.resources is None:
            _fail(m, ts, "queued while a worker has a free slot")
    if s == NO_WORKER and ts.resources is None:
        if not strict:
            _fail(m, ts, "no-worker without strict restrictions")
        assert ts.restrictions is not None
        for addr in ts.restrictions:
            if addr in m.membership.workers:
                _fail(m, ts, f"no-worker while allowed worker {addr} is alive")
    # neededness
    if s == MEMORY or s in ACTIVE_STATES:
        if not ts.who_wants and not ts.waiters:
            _fail(m, ts, "not needed but not released")
    if s == RELEASED:
        if ts.who_wants or ts.waiters:
            _fail(m, ts, "needed but released")
        if not ts.dependents:
            _fail(m, ts, "released without dependents (should be forgotten)")
    if s == ERRED:
        if ts.error is None:
            _fail(m, ts, "erred without error")
        if ts.waiters:
            _fail(m, ts, "erred with active dependents")
        if not ts.who_wants and not ts.dependents:
            _fail(m, ts, "erred, unwanted, without dependents (should be forgotten)")
    elif ts.error is not None:
        _fail(m, ts, "error set outside erred")
    for client in ts.who_wants:
        cs = m.wants.clients.get(client)
        if cs is None or ts not in cs.wants:
            _fail(m, ts, f"wanted by {client} which does not want it")


def validate_state(m: TaskMachine) -> None:
    """Raise AssertionError if any invariant of ``m`` and its topic objects is broken."""
    queued_live: set[TaskRecord] = set(m.placement.queue.live())
    if not m.placement.queue.in_order():
        _fail(m, None, "the shared queue's sorted run is out of order")
    for ws in m.membership.workers.values():
        queued_live.update(queue_live(ws.restricted_queue))
    resource_queued = m.placement.resources.live_queued()
    queued_live.update(resource_queued)
    for key, ts in m.tasks.items():
        if ts.key != key:
            _fail(m, ts, f"stored under {key!r}")
        _check_task(m, ts, queued_live, resource_queued)
    for addr, ws in m.membership.workers.items():
        if ws.address != addr or not ws.alive:
            _fail(m, None, f"worker record {addr} is wrong or dead")
        used = 0
        for ts in ws.processing:
            used += ts.slot_cost
            if ts.state != PROCESSING or ts.processing_on is not ws:
                _fail(m, ts, f"in processing of {addr} but not processing there")
        if used != ws.used:
            _fail(m, None, f"worker {addr}: used={ws.used} but tasks cost {used}")
        problem = m.placement.resources.worker_problem(ws)
        if problem:
            _fail(m, None, f"worker {addr}: {problem}")
        if (ws.used < ws.capacity and ws.open) != (ws in m.membership.idle):
            _fail(m, None, f"worker {addr}: idle index wrong (used={ws.used}, "
                  f"paused={ws.paused}, retiring={ws.retiring})")
        if ws.retiring != (ws in m.replicas.retiring):
            _fail(m, None, f"worker {addr}: retiring={ws.retiring} disagrees with the index")
        for ts in ws.acquiring:
            if ws not in ts.acquiring_on:
                _fail(m, ts, f"in acquiring of {addr} but not acquiring there")
        nbytes = 0
        for ts in ws.has_what:
            nbytes += max(ts.nbytes, 0)
            if ws not in ts.who_has:
                _fail(m, ts, f"in has_what of {addr} but not in who_has")
        if nbytes != ws.nbytes:
            _fail(m, None, f"worker {addr}: nbytes={ws.nbytes} but holds {nbytes}")
        _check_ledger(m, ws)
    for ws in m.membership.idle:
        if m.membership.workers.get(ws.address) is not ws:
            _fail(m, None, f"dead worker {ws.address} in idle index")
    for addr, tasks in m.placement.restricted_waiting.items():
        for ts in tasks:
            if (ts.state not in (QUEUED, NO_WORKER) or ts.restrictions is None or ts.allow_other_workers
                    or ts.resources is not None):
                _fail(m, ts, f"indexed as restricted-waiting under {addr}")
    problem = m.placement.resources.index_problem(m.membership.workers)
    if problem:
        _fail(m, None, problem)
    for client, cs in m.wants.clients.items():
        for ts in cs.wants:
            if m.tasks.get(ts.key) is not ts or client not in ts.who_wants:
                _fail(m, ts, f"client {client} wants it but it does not know")
    for ws in m.replicas.retiring:
        if m.membership.workers.get(ws.address) is not ws:
            _fail(m, None, f"retiring worker {ws.address} is not a live worker")


def _check_ledger(m: TaskMachine, ws: WorkerRecord) -> None:
    """The frees ``ws`` may not have handled: the log in ``epoch`` order, the
    index its latest ``epoch`` per key."""
    latest: dict[str, int] = {}
    last = -1
    for epoch, keys in ws.free_log:
        if epoch <= last:
            _fail(m, None, f"worker {ws.address}: free log out of order")
        last = epoch
        for key in keys:
            latest[key] = epoch
    if latest != ws.unacked_frees:
        _fail(m, None, f"worker {ws.address}: unacked frees disagree with the free log")


def validate_step(step: Step) -> None:
    """Raise AssertionError if ``step`` (its event settled) left work undone:
    dropping it would lose that work."""
    if (step.recs or step.ready or step.freed or step.pending_free or step.acquire_batch
            or step.retire_dirty or step.ahead):
        raise AssertionError(f"event {step.stimulus_id!r} left work undone: recs={len(step.recs)} "
                             f"ready={len(step.ready)} freed={len(step.freed)} "
                             f"frees={len(step.pending_free)} copies={len(step.acquire_batch or ())} "
                             f"retire_dirty={step.retire_dirty}")
