"""Scheduler state machine: errors, retries, reference counting, cancel, scatter, restart."""

from __future__ import annotations

from scheduler_helpers import Sched, erred, finished, join, of, sid, submit, task

from taskmill.core.scheduler.events import ClientDisconnected, RestartRequested
from taskmill.protocol.vocabulary import (
    CancelKeys,
    ComputeTask,
    FreeKeys,
    KeyCancelled,
    KeyErred,
    KeyInMemory,
    KeyLost,
    ReleaseKeys,
    ScatterDone,
    WantKeys,
)


# --------------------------------------------------------------------------- #
# errors and retries
# --------------------------------------------------------------------------- #
def test_error_propagates_to_dependents():
    s = Sched("tcp://a")
    g = [task("x-1"), task("y-1", "x-1"), task("z-1", "y-1"), task("w-1")]
    s(submit(g, wanted=["x-1", "z-1", "w-1"]))
    cmds = s(erred("tcp://a", "x-1", "ValueError('bad')"))
    errs = {r.key: r for r in of(cmds, KeyErred)}
    assert set(errs) == {"x-1", "z-1"}  # y-1 is not wanted by anyone
    for r in errs.values():
        assert r.exception == "<exc x-1>" and r.worker == "tcp://a"
        assert r.exception_text == "ValueError('bad')" and r.error_type == ""
    assert s.state.task_state("z-1") == "erred"
    assert s.state.task_state("y-1") == "erred"  # kept: z-1 (wanted) depends on it
    assert s.state.task_state("w-1") in ("processing", "memory")
    # the erring worker is told to drop its record of the failure
    assert "x-1" in s.freed(cmds).get("tcp://a", set())
    # releasing the erred keys forgets the whole erred subgraph
    s(ReleaseKeys(sid(), client="c1", keys=("x-1", "z-1")))
    assert {k for k in ("x-1", "y-1", "z-1") if s.state.task_state(k)} == set()


def test_error_for_key_wanted_later_reports_at_once():
    s = Sched("tcp://a")
    s(submit([task("x-1")], wanted=["x-1"]))
    s(erred("tcp://a", "x-1"))
    cmds = s(WantKeys(sid(), client="c2", keys=("x-1",)))
    assert [(r.client, r.key) for r in of(cmds, KeyErred)] == [("c2", "x-1")]
    # a dependent submitted on an erred key errs at once, with the same error
    cmds = s(submit([task("y-1", "x-1")], wanted=["y-1"], client="c3"))
    (r,) = of(cmds, KeyErred)
    assert r.key == "y-1" and r.exception == "<exc x-1>"


def test_retries_reschedule_then_err():
    s = Sched("tcp://a", "tcp://b")
    s(submit([task("x-1", retries=2)], wanted=["x-1"]))
    for _ in range(2):
        (addr,) = s.processing().values()
        cmds = s(erred(addr, "x-1"))
        assert not of(cmds, KeyErred)
        assert len(of(cmds, ComputeTask)) == 1
    (addr,) = s.processing().values()
    cmds = s(erred(addr, "x-1"))
    assert [r.key for r in of(cmds, KeyErred)] == ["x-1"]


def test_erred_key_resubmitted_runs_again():
    s = Sched("tcp://a")
    s(submit([task("x-1"), task("y-1", "x-1")], wanted=["y-1"]))
    s(erred("tcp://a", "x-1"))
    assert s.state.task_state("y-1") == "erred"
    cmds = s(submit([task("x-1"), task("y-1", "x-1")], wanted=["y-1"]))
    assert s.computes(cmds) == {"x-1": "tcp://a"}
    s(finished("tcp://a", "x-1"))
    cmds = s(finished("tcp://a", "y-1"))
    assert [r.key for r in of(cmds, KeyInMemory)] == ["y-1"]


# --------------------------------------------------------------------------- #
# reference counting
# --------------------------------------------------------------------------- #
def test_two_clients_share_a_key():
    s = Sched("tcp://a")
    s(submit([task("x-1")], wanted=["x-1"], client="c1"))
    s(submit([task("x-1")], wanted=["x-1"], client="c2"))
    s(finished("tcp://a", "x-1"))
    cmds = s(ReleaseKeys(sid(), client="c1", keys=("x-1",)))
    assert cmds == [] and s.state.task_state("x-1") == "memory"
    cmds = s(ReleaseKeys(sid(), client="c2", keys=("x-1",)))
    assert of(cmds, FreeKeys)[0].keys == ("x-1",)
    assert s.state.task_state("x-1") is None


def test_release_while_processing_frees_on_worker():
    s = Sched("tcp://a")
    s(submit([task("x-1")], wanted=["x-1"]))
    cmds = s(ReleaseKeys(sid(), client="c1", keys=("x-1",)))
    assert s.freed(cmds) == {"tcp://a": {"x-1"}}
    assert s.state.task_state("x-1") is None
    # the result arrives late: stale, the worker is told to drop it
    cmds = s(finished("tcp://a", "x-1"))
    assert s.freed(cmds) == {"tcp://a": {"x-1"}}
    assert s.state.who_has() == {}


def test_dependency_kept_while_a_dependent_needs_it():
    s = Sched("tcp://a")
    s(submit([task("x-1"), task("y-1", "x-1")], wanted=["x-1", "y-1"]))
    s(finished("tcp://a", "x-1"))
    cmds = s(ReleaseKeys(sid(), client="c1", keys=("x-1",)))
    assert cmds == [] and s.state.task_state("x-1") == "memory"  # y-1 needs it
    cmds = s(finished("tcp://a", "y-1"))
    assert s.freed(cmds) == {"tcp://a": {"x-1"}}


def test_releasing_a_waiting_graph_releases_its_inputs():
    s = Sched("tcp://a")
    s(submit([task("x-1"), task("y-1", "x-1")], wanted=["y-1"]))
    cmds = s(ReleaseKeys(sid(), client="c1", keys=("y-1",)))
    assert s.freed(cmds) == {"tcp://a": {"x-1"}}  # x-1 was processing
    assert s.state.tasks == {}


def test_client_disconnect_releases_everything():
    s = Sched("tcp://a")
    s(submit([task("x-1"), task("y-1")], wanted=["x-1", "y-1"], client="c1"))
    s(submit([task("y-1")], wanted=["y-1"], client="c2"))
    s(finished("tcp://a", "x-1"), finished("tcp://a", "y-1"))
    cmds = s(ClientDisconnected(sid(), client="c1"))
    assert s.freed(cmds) == {"tcp://a": {"x-1"}}
    assert set(s.state.tasks) == {"y-1"}
    assert "c1" not in s.state.clients


def test_released_lineage_recomputed_when_wanted_again():
    s = Sched("tcp://a")
    s(submit([task("x-1"), task("y-1", "x-1")], wanted=["y-1"]))
    s(finished("tcp://a", "x-1"), finished("tcp://a", "y-1"))
    assert s.state.task_state("x-1") == "released"
    cmds = s(WantKeys(sid(), client="c2", keys=("x-1",)))
    assert s.computes(cmds) == {"x-1": "tcp://a"}
    cmds = s(finished("tcp://a", "x-1"))
    assert [(r.client, r.key) for r in of(cmds, KeyInMemory)] == [("c2", "x-1")]


# --------------------------------------------------------------------------- #
# cancel
# --------------------------------------------------------------------------- #
def test_cancel_stops_key_and_dependents():
    s = Sched("tcp://a")
    s(submit([task("x-1"), task("y-1", "x-1"), task("u-1")], wanted=["x-1", "y-1", "u-1"]))
    s(submit([task("y-1", "x-1")], wanted=["y-1"], client="c2"))
    cmds = s(CancelKeys(sid(), client="c1", keys=("x-1",)))
    cancelled = sorted((r.client, r.key) for r in of(cmds, KeyCancelled))
    assert cancelled == [("c1", "x-1"), ("c1", "y-1"), ("c2", "y-1")]
    assert s.freed(cmds) == {"tcp://a": {"x-1"}}
    assert s.state.task_state("x-1") is None and s.state.task_state("y-1") is None
    assert s.state.task_state("u-1") == "processing"
    # submitted again later, it runs again
    cmds = s(submit([task("x-1")], wanted=["x-1"]))
    assert "x-1" in s.computes(cmds) or s.state.task_state("x-1") == "queued"
    s.run_all()
    assert s.state.task_state("x-1") == "memory"


def test_cancel_in_memory_frees_holders_and_unknown_is_ignored():
    s = Sched("tcp://a")
    s(submit([task("x-1")], wanted=["x-1"]))
    s(finished("tcp://a", "x-1"))
    cmds = s(CancelKeys(sid(), client="c1", keys=("x-1", "nope")))
    assert s.freed(cmds) == {"tcp://a": {"x-1"}}
    assert [r.key for r in of(cmds, KeyCancelled)] == ["x-1"]


# --------------------------------------------------------------------------- #
# scatter
# --------------------------------------------------------------------------- #
def scatter(who_has, client="c1"):
    return ScatterDone(
        sid(), client=client, who_has={k: tuple(v) for k, v in who_has.items()},
        nbytes={k: 100 for k in who_has}, type_names={k: "bytes" for k in who_has},
    )


def test_scatter_goes_to_memory_and_feeds_tasks():
    s = Sched("tcp://a", "tcp://b")
    cmds = s(scatter({"d-1": ["tcp://b"]}))
    (r,) = of(cmds, KeyInMemory)
    assert (r.key, r.who_has, r.type_name) == ("d-1", ("tcp://b",), "bytes")
    cmds = s(submit([task("f-1", "d-1")], wanted=["f-1"]))
    (ct,) = of(cmds, ComputeTask)
    assert ct.worker == "tcp://b" and ct.who_has == {"d-1": ("tcp://b",)}
    assert s.state.workers_info()["tcp://b"]["nbytes"] == 100
    s(ReleaseKeys(sid(), client="c1", keys=("d-1",)))
    assert s.state.task_state("d-1") == "memory"  # f-1 still needs it
    cmds = s(finished("tcp://b", "f-1"))
    assert s.freed(cmds) == {"tcp://b": {"d-1"}}


def test_scatter_to_unknown_worker_is_lost():
    s = Sched("tcp://a")
    cmds = s(scatter({"d-1": ["tcp://gone"]}))
    assert [r.key for r in of(cmds, KeyLost)] == ["d-1"]


def test_scatter_replica_of_known_key():
    s = Sched("tcp://a", "tcp://b")
    s(scatter({"d-1": ["tcp://a"]}))
    cmds = s(scatter({"d-1": ["tcp://b"]}, client="c2"))
    assert [(r.client, r.who_has) for r in of(cmds, KeyInMemory)] == [
        ("c2", ("tcp://a", "tcp://b"))
    ]


# --------------------------------------------------------------------------- #
# restart
# --------------------------------------------------------------------------- #
def test_restart_forgets_everything_and_reports_cancelled():
    s = Sched("tcp://a")
    s(submit([task("x-1"), task("y-1", "x-1")], wanted=["x-1", "y-1"], client="c1"))
    s(submit([task("x-1")], wanted=["x-1"], client="c2"))
    s(finished("tcp://a", "x-1"))
    cmds = s(RestartRequested(sid(), reason="restart requested by c1"))
    assert not of(cmds, FreeKeys)
    assert sorted((r.client, r.key) for r in of(cmds, KeyCancelled)) == [
        ("c1", "x-1"), ("c1", "y-1"), ("c2", "x-1")
    ]
    assert all(r.reason == "restart requested by c1" for r in of(cmds, KeyCancelled))
    assert s.state.tasks == {} and s.state.has_what() == {"tcp://a": []}
    # the cluster is usable afterwards
    cmds = s(submit([task("x-1")], wanted=["x-1"]))
    assert s.computes(cmds) == {"x-1": "tcp://a"}
    assert join  # (helper used elsewhere)
