"""A restarted scheduler rebuilds its graph from what workers still hold
(``RegisterWorker.held``) and what clients submit again, in either order
(``taskmill.core.scheduler.held_keys``)."""

from __future__ import annotations

from taskmill.core.scheduler.events import ClientConnected
from taskmill.protocol.vocabulary import (
    ComputeTask,
    FreeKeys,
    Heartbeat,
    KeyInMemory,
    KeyLost,
    RegisterWorker,
    UpdateGraph,
)
from tests.core.scheduler_helpers import Sched, finished, leave, of, sid, submit, task

A = "tcp://a"
B = "tcp://b"


def rejoin(addr: str, held: dict[str, int], now: float = 0.0) -> RegisterWorker:
    return RegisterWorker(stimulus_id=sid(), worker=addr, nthreads=2, memory_limit=2**30,
                          held=held, now=now)


def beat(addr: str, now: float) -> Heartbeat:
    return Heartbeat(sid(), addr, now, memory=0)


def graph() -> UpdateGraph:
    """x-0, x-1 -> y: the client wants y only."""
    return submit([task("x-0"), task("x-1"), task("y", "x-0", "x-1")], wanted=["y"])


def freed(cmds: list, addr: str) -> set[str]:  # type: ignore[type-arg]
    return {k for c in of(cmds, FreeKeys) if c.worker == addr for k in c.keys}


def test_held_keys_first_then_the_resubmitted_graph_reuses_them() -> None:
    s = Sched()
    assert s(rejoin(A, {"x-0": 10, "x-1": 20})) == []  # unknown: kept for a client
    assert set(s.state.held.unclaimed) == {"x-0", "x-1"}
    s(ClientConnected(sid(), "c1"))
    cmds = s(graph())
    assert s.computes(cmds) == {"y": A}  # only what nobody holds runs
    assert s.state.task_state("x-0") == "memory" and s.state.who_has(["x-1"]) == {"x-1": [A]}
    assert not s.state.held.unclaimed and not s.state.held.by_worker
    cmds = s(finished(A, "y"))
    assert [m.key for m in of(cmds, KeyInMemory)] == ["y"]
    assert freed(cmds, A) == {"x-0", "x-1"}  # inputs no longer needed


def test_a_held_result_makes_its_unneeded_lineage_go_away() -> None:
    s = Sched()
    s(rejoin(A, {"y": 8}))
    cmds = s(ClientConnected(sid(), "c1"), graph())
    assert s.computes(cmds) == {}
    assert [(m.key, m.who_has) for m in of(cmds, KeyInMemory)] == [("y", (A,))]
    assert s.state.task_state("x-0") in ("released", None)


def test_graph_first_then_a_worker_with_the_data() -> None:
    s = Sched()
    s(ClientConnected(sid(), "c1"), graph())
    assert s.state.task_state("x-0") == "queued"  # no worker yet
    cmds = s(rejoin(A, {"x-0": 10}))
    assert set(s.computes(cmds)) == {"x-1"}  # x-0 is held: not run
    assert s.state.task_state("x-0") == "memory"


def test_a_task_processing_elsewhere_is_taken_from_the_newcomer() -> None:
    s = Sched()
    s(ClientConnected(sid(), "c1"), graph(), rejoin(B, {}))
    assert s.state.task_state("x-0") == "processing"
    cmds = s(rejoin(A, {"x-0": 10}))
    assert "x-0" in freed(cmds, B)  # the copy being computed is dropped
    assert s.state.who_has(["x-0"]) == {"x-0": [A]}


def test_copies_of_keys_in_memory_are_replicas_and_unneeded_ones_are_freed() -> None:
    s = Sched()
    s(rejoin(A, {"x-0": 10}), ClientConnected(sid(), "c1"), graph())
    s(rejoin(B, {"x-0": 10}))
    assert sorted(s.state.who_has(["x-0"])["x-0"]) == [A, B]
    s.run_all()
    cmds = s(leave(B), rejoin(B, {"x-1": 20}))  # x-1 is no longer needed
    assert "x-1" in freed(cmds, B)


def test_scattered_data_is_adopted_or_reported_lost() -> None:
    s = Sched()
    s(rejoin(A, {"d": 5}))
    cmds = s(ClientConnected(sid(), "c1"), submit([], wanted=["d", "gone"]))
    assert [(m.key, m.who_has) for m in of(cmds, KeyInMemory)] == [("d", (A,))]
    assert [m.key for m in of(cmds, KeyLost)] == ["gone"]


def test_unclaimed_keys_are_freed_after_the_grace_and_forgotten_with_their_worker() -> None:
    s = Sched()
    s(rejoin(A, {"old": 5}, now=100.0), rejoin(B, {"other": 5}, now=100.0))
    s(leave(B))
    assert set(s.state.held.unclaimed) == {"old"}
    assert freed(s(beat(A, 100.0 + s.state.held.grace - 1)), A) == set()
    assert freed(s(beat(A, 100.0 + s.state.held.grace)), A) == {"old"}
    assert not s.state.held.unclaimed and not s.state.held.arrived


def test_a_computing_task_is_not_sent_twice() -> None:
    s = Sched()
    s(rejoin(A, {}), ClientConnected(sid(), "c1"), graph())
    before = len(of(s.log, ComputeTask))
    s(ClientConnected(sid(), "c1"), graph())  # a client resubmitting what is known: reused
    assert len(of(s.log, ComputeTask)) == before


def test_a_task_on_held_scattered_data_adopts_it() -> None:
    s = Sched()
    s(rejoin(A, {"d": 5}))
    cmds = s(ClientConnected(sid(), "c1"), submit([task("f", "d")], wanted=["f", "d"]))
    assert s.computes(cmds) == {"f": A}
    assert s.state.who_has(["d"]) == {"d": [A]}
