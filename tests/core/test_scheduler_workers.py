"""Scheduler state machine: worker loss, lineage, KilledWorker, restrictions, stale messages."""

from __future__ import annotations

from scheduler_helpers import Sched, erred, finished, join, leave, of, sid, submit, task

from taskmill.protocol.vocabulary import (
    AddKeys,
    ComputeTask,
    FreeKeys,
    KeyErred,
    KeyInMemory,
    KeyLost,
    MissingData,
    ReleaseKeys,
    ReleasedKeys,
    ScatterDone,
)


# --------------------------------------------------------------------------- #
# worker loss
# --------------------------------------------------------------------------- #
def test_worker_loss_mid_task_reschedules():
    s = Sched("tcp://a")
    s(submit([task("x-1")], wanted=["x-1"]))
    cmds = s(join("tcp://b"), leave("tcp://a", "worker process exited with signal SIGKILL"))
    assert s.computes(cmds) == {"x-1": "tcp://b"}
    assert not of(cmds, FreeKeys)  # nothing is sent to a dead worker
    assert s.state.tasks["x-1"].suspicious == 1
    cmds = s(finished("tcp://b", "x-1"))
    assert [r.key for r in of(cmds, KeyInMemory)] == ["x-1"]


def test_worker_loss_with_no_worker_left_queues():
    s = Sched("tcp://a")
    s(submit([task("x-1")], wanted=["x-1"]))
    s(leave("tcp://a"))
    assert s.state.task_state("x-1") == "queued"
    cmds = s(join("tcp://c"))
    assert s.computes(cmds) == {"x-1": "tcp://c"}


def test_killed_worker_after_allowed_failures():
    s = Sched(allowed_failures=3)
    s(submit([task("bad-1"), task("dep-1", "bad-1")], wanted=["bad-1", "dep-1"]))
    cmds = []
    for i in range(3):
        s(join(f"tcp://w{i}"))
        assert s.processing() == {"bad-1": f"tcp://w{i}"}
        cmds = s(leave(f"tcp://w{i}", f"worker process exited with signal SIGKILL #{i}"))
    errs = {r.key: r for r in of(cmds, KeyErred)}
    assert set(errs) == {"bad-1", "dep-1"}
    r = errs["bad-1"]
    assert r.error_type == "KilledWorker" and r.exception is None
    assert "'bad-1'" in r.exception_text
    for i in range(3):
        assert f"tcp://w{i}" in r.exception_text and f"SIGKILL #{i}" in r.exception_text
    assert errs["dep-1"].error_type == "KilledWorker"


def test_lost_only_copy_is_recomputed_from_lineage():
    s = Sched("tcp://a", "tcp://b")
    g = [task("x-1", workers=("tcp://a",), allow_other_workers=True),
         task("y-1", "x-1"), task("z-1", "y-1")]
    s(submit(g, wanted=["z-1"]))
    s(finished("tcp://a", "x-1"))
    (ywhere,) = s.processing().values()
    s(finished(ywhere, "y-1"))  # x-1 released (lineage), y-1 in memory
    assert s.state.task_state("x-1") == "released"
    zwhere = s.processing()["z-1"]
    other = "tcp://b" if ywhere == "tcp://a" else "tcp://a"
    # y-1's holder dies while z-1 runs there (or elsewhere)
    s(join("tcp://c"))
    cmds = s(leave(ywhere, "oom"))
    # y-1 must be recomputed, which needs x-1 recomputed first
    assert s.state.task_state("y-1") == "waiting"
    assert s.state.task_state("z-1") == "waiting"
    assert "x-1" in s.computes(cmds)
    if zwhere != ywhere:  # z-1's worker is told to drop it: its input is gone
        assert "z-1" in s.freed(cmds).get(zwhere, set())
    s.run_all()
    assert s.state.task_state("z-1") == "memory"
    reports = [(r.key, type(r).__name__) for r in s.reports()]
    assert reports == [("z-1", "KeyInMemory")]
    assert other


def test_lost_wanted_key_recomputed_silently():
    s = Sched("tcp://a", "tcp://b")
    s(submit([task("x-1", workers=("tcp://a",), allow_other_workers=True)], wanted=["x-1"]))
    s(finished("tcp://a", "x-1"))
    cmds = s(leave("tcp://a"))
    assert s.computes(cmds) == {"x-1": "tcp://b"}
    cmds = s(finished("tcp://b", "x-1"))
    assert not of(cmds, KeyInMemory)  # the client was told once already
    assert s.state.who_has(["x-1"]) == {"x-1": ["tcp://b"]}


def test_lost_scattered_data_reports_lost_and_errs_dependents():
    s = Sched("tcp://a", "tcp://b")
    s(ScatterDone(sid(), client="c1", who_has={"d-1": ("tcp://a",)}, nbytes={"d-1": 5}))
    s(submit([task("f-1", "d-1", workers=("tcp://b",)), task("g-1", "f-1")], wanted=["g-1"],
             client="c2"))
    assert s.processing() == {"f-1": "tcp://b"}
    cmds = s(leave("tcp://a", "connection reset"))
    (lost,) = of(cmds, KeyLost)
    assert lost.client == "c1" and lost.key == "d-1"
    assert lost.reason == (
        "key 'd-1' was held only on worker tcp://a which left: connection reset"
    )
    (err,) = of(cmds, KeyErred)
    assert err.client == "c2" and err.key == "g-1"
    assert err.error_type == "MissingDependencyError" and "d-1" in err.exception_text
    assert s.freed(cmds) == {"tcp://b": {"f-1"}}


def test_unneeded_copies_on_dead_worker_do_not_matter():
    s = Sched("tcp://a", "tcp://b")
    s(submit([task("x-1")], wanted=["x-1"]))
    (where,) = s.processing().values()
    s(finished(where, "x-1"))
    s(AddKeys(sid(), worker="tcp://b" if where == "tcp://a" else "tcp://a",
                    nbytes={"x-1": 8}))
    assert len(s.state.who_has()["x-1"]) == 2
    cmds = s(leave(where))
    assert cmds == [] and s.state.task_state("x-1") == "memory"


# --------------------------------------------------------------------------- #
# replicas and missing data
# --------------------------------------------------------------------------- #
def test_worker_released_last_copy_recomputes():
    s = Sched("tcp://a")
    s(submit([task("x-1")], wanted=["x-1"]))
    s(finished("tcp://a", "x-1"))
    cmds = s(ReleasedKeys(sid(), worker="tcp://a", keys=("x-1", "unknown")))
    assert s.computes(cmds) == {"x-1": "tcp://a"}


def test_has_keys_for_unneeded_key_frees_it():
    s = Sched("tcp://a")
    cmds = s(AddKeys(sid(), worker="tcp://a", nbytes={"zzz": 3}))
    assert s.freed(cmds) == {"tcp://a": {"zzz"}}
    assert s(AddKeys(sid(), worker="tcp://nope", nbytes={"zzz": 3})) == []


def test_missing_data_with_other_copies_does_nothing_else():
    s = Sched("tcp://a", "tcp://b", "tcp://c")
    s(submit([task("x-1", workers=("tcp://a",))], wanted=["x-1"]))
    s(finished("tcp://a", "x-1"))
    s(AddKeys(sid(), worker="tcp://b", nbytes={"x-1": 8}))
    s(submit([task("y-1", "x-1", workers=("tcp://c",))], wanted=["y-1"]))
    cmds = s(MissingData(sid(), worker="tcp://c", errant_worker="tcp://a", keys=("x-1",)))
    assert cmds == []
    assert s.state.who_has(["x-1"]) == {"x-1": ["tcp://b"]}
    assert s.processing() == {"y-1": "tcp://c"}


def test_missing_data_last_copy_recomputes_and_resends_dependent():
    s = Sched("tcp://a", "tcp://c")
    s(submit([task("x-1", workers=("tcp://a",))], wanted=["x-1"]))
    s(finished("tcp://a", "x-1"))
    s(submit([task("y-1", "x-1", workers=("tcp://c",))], wanted=["y-1"]))
    cmds = s(MissingData(sid(), worker="tcp://c", errant_worker="tcp://a", keys=("x-1",)))
    # y-1 goes back to waiting (its worker drops it), x-1 is recomputed
    assert s.freed(cmds) == {"tcp://c": {"y-1"}}
    assert s.computes(cmds) == {"x-1": "tcp://a"}
    assert s.state.task_state("y-1") == "waiting"
    cmds = s(finished("tcp://a", "x-1"))
    (ct,) = of(cmds, ComputeTask)
    assert ct.key == "y-1" and ct.worker == "tcp://c" and ct.who_has == {"x-1": ("tcp://a",)}
    # duplicate / unknown-worker reports are harmless
    assert s(MissingData(sid(), worker="tcp://c", errant_worker="tcp://zz", keys=("x-1",))) == []


# --------------------------------------------------------------------------- #
# restrictions
# --------------------------------------------------------------------------- #
def test_strict_restrictions_wait_for_their_worker():
    s = Sched("tcp://a")
    cmds = s(submit([task("x-1", workers=("tcp://b",))], wanted=["x-1"]))
    assert [type(c).__name__ for c in cmds] == ["TaskStalled"]  # the shell warns once, saying why
    assert "tcp://b" in cmds[0].reason and s.state.task_state("x-1") == "no-worker"  # type: ignore[attr-defined]
    cmds = s(join("tcp://c"))
    assert cmds == []
    cmds = s(join("tcp://b"))
    assert s.computes(cmds) == {"x-1": "tcp://b"}


def test_loose_restrictions_run_elsewhere():
    s = Sched("tcp://a")
    cmds = s(submit([task("x-1", workers=("tcp://b",), allow_other_workers=True)], wanted=["x-1"]))
    assert s.computes(cmds) == {"x-1": "tcp://a"}


def test_restricted_queue_per_worker():
    s = Sched("tcp://a", "tcp://b")
    keys = [f"r-{i}" for i in range(5)]
    s(submit([task(k, workers=("tcp://b",)) for k in keys], wanted=keys))
    assert set(s.processing().values()) == {"tcp://b"}
    assert sum(t.state == "queued" for t in s.state.tasks.values()) == 3
    # an unrestricted task still runs on a
    cmds = s(submit([task("u-1")], wanted=["u-1"]))
    assert s.computes(cmds) == {"u-1": "tcp://a"}
    # b frees a slot: the next restricted task goes there
    first = sorted(s.processing())[0]
    cmds = s(finished("tcp://b", first))
    assert list(s.computes(cmds).values()) == ["tcp://b"]
    # b dies: its restricted tasks have nowhere to go
    s(leave("tcp://b"))
    assert {s.state.task_state(k) for k in keys} == {"no-worker"}
    cmds = s(join("tcp://b"))
    assert len(of(cmds, ComputeTask)) == 2


# --------------------------------------------------------------------------- #
# stale and duplicate messages
# --------------------------------------------------------------------------- #
def test_duplicate_task_finished_is_ignored():
    s = Sched("tcp://a")
    s(submit([task("x-1")], wanted=["x-1"]))
    s(finished("tcp://a", "x-1"))
    assert s(finished("tcp://a", "x-1")) == []
    assert [e[4] for e in s.state.story("x-1")][-1].startswith("ignored")


def test_stale_finished_from_other_worker_is_freed_not_recorded():
    s = Sched("tcp://a", "tcp://b")
    s(submit([task("x-1")], wanted=["x-1"]))
    (where,) = s.processing().values()
    other = "tcp://b" if where == "tcp://a" else "tcp://a"
    cmds = s(finished(other, "x-1"))
    assert s.freed(cmds) == {other: {"x-1"}}
    assert s.state.task_state("x-1") == "processing"
    s(finished(where, "x-1"))
    cmds = s(finished(other, "x-1"))
    assert s.freed(cmds) == {other: {"x-1"}}
    assert s.state.who_has() == {"x-1": [where]}


def test_events_for_unknown_things_are_ignored():
    s = Sched("tcp://a")
    assert s(finished("tcp://nope", "x-1")) == []
    assert s(erred("tcp://nope", "x-1")) == []
    assert s.freed(s(finished("tcp://a", "never"))) == {"tcp://a": {"never"}}
    assert s.freed(s(erred("tcp://a", "never"))) == {"tcp://a": {"never"}}
    assert s(leave("tcp://nope")) == []
    assert s(ReleaseKeys(sid(), client="ghost", keys=("x-1",))) == []
    assert s(ReleasedKeys(sid(), worker="tcp://nope", keys=("x",))) == []
    assert s(MissingData(sid(), worker="tcp://a", errant_worker="tcp://b", keys=("x",))) == []


def test_stale_erred_after_reschedule_is_ignored():
    s = Sched("tcp://a", "tcp://b")
    s(submit([task("x-1")], wanted=["x-1"]))
    (where,) = s.processing().values()
    s(ReleaseKeys(sid(), client="c1", keys=("x-1",)))
    s(submit([task("x-1")], wanted=["x-1"]))
    assert not of(s(erred("tcp://zz", "x-1")), KeyErred)


def test_rejoin_at_same_address_is_a_new_worker():
    s = Sched("tcp://a")
    s(submit([task("x-1")], wanted=["x-1"]))
    s(finished("tcp://a", "x-1"))
    cmds = s(join("tcp://a"))  # re-registered without a WorkerLeft: data is gone
    assert s.computes(cmds) == {"x-1": "tcp://a"}


def test_restricted_task_reaches_allowed_worker_that_joins_later():
    s = Sched("tcp://a")
    keys = [f"r-{i}" for i in range(4)]
    s(submit([task(k, workers=("tcp://a", "tcp://b")) for k in keys], wanted=keys))
    assert sum(t.state == "queued" for t in s.state.tasks.values()) == 2
    cmds = s(join("tcp://b"))  # b may run them too: it takes the queued ones
    assert set(s.computes(cmds).values()) == {"tcp://b"} and len(of(cmds, ComputeTask)) == 2
    s(submit([task("r-9", workers=("tcp://a", "tcp://b"))], wanted=["r-9"]))
    assert s.state.task_state("r-9") == "queued"
    s(leave("tcp://a"))  # a's tasks and the queued one all end up on b
    assert s.state.task_state("r-9") == "queued"
    s.run_all()
    assert all(s.state.task_state(k) == "memory" for k in keys + ["r-9"])


def test_input_of_waiting_task_lost_is_recomputed():
    s = Sched("tcp://a", "tcp://b")
    g = [task("a-1", workers=("tcp://a",)), task("b-1", workers=("tcp://b",)),
         task("c-1", "a-1", "b-1")]
    s(submit(g, wanted=["c-1"]))
    s(finished("tcp://a", "a-1"))
    assert s.state.task_state("c-1") == "waiting"  # b-1 still running
    cmds = s(join("tcp://a2"), leave("tcp://a", "oom"))
    assert s.state.task_state("a-1") == "no-worker"  # strictly restricted to a
    cmds = s(join("tcp://a"))
    assert s.computes(cmds) == {"a-1": "tcp://a"}
    s(finished("tcp://a", "a-1"))
    cmds = s(finished("tcp://b", "b-1"))
    assert list(s.computes(cmds)) == ["c-1"]
    s.run_all()
    assert [(type(r).__name__, r.key) for r in s.reports()] == [("KeyInMemory", "c-1")]


def test_only_tasks_likely_running_are_suspects_when_a_worker_dies() -> None:
    """A worker holding several tasks dies three times: only the one it was
    given first (nthreads=1) counts the deaths; the others are rescheduled."""
    from tests.core.scheduler_helpers import Sched, join, leave, submit, task

    sim = Sched("tcp://a")
    keys = [f"t-{i}" for i in range(5)]
    sim(submit([task(k) for k in keys], wanted=keys))
    for _ in range(3):
        sim(leave("tcp://a", "killed"))
        sim(join("tcp://a"))
    states = [sim.state.task_state(k) for k in keys]
    assert states.count("erred") == 1
    assert all(s in ("processing", "queued") for s in states if s != "erred")


def test_an_actor_whose_worker_dies_errs_instead_of_being_made_again():
    import dataclasses

    s = Sched("tcp://a", "tcp://b")
    actor = dataclasses.replace(task("Counter-1"), actor=True)
    s(submit([actor, task("plain-1")], wanted=["Counter-1", "plain-1"]))
    where = s.processing()
    for key, worker in where.items():
        s(finished(worker, key))
    cmds = s(leave(where["Counter-1"], "worker process exited with signal SIGKILL"))
    [report] = [r for r in of(cmds, KeyErred) if r.key == "Counter-1"]
    assert report.error_type == "ActorLostError" and "Make a new actor" in report.exception_text
    assert "Counter-1" not in s.computes(cmds)  # no second object nobody could reach
    assert s.state.task_state("Counter-1") == "erred"
    if where["plain-1"] == where["Counter-1"]:  # a plain result held there is computed again
        assert "plain-1" in s.computes(cmds)
