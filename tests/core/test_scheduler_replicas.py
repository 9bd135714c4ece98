"""Scheduler state machine: replicate, graceful retirement, paused workers."""

from __future__ import annotations

from scheduler_helpers import Sched, finished, join, leave, of, sid, submit, task

from taskmill.core.scheduler.events import (
    ReplicateRequested,
    RetireCancelled,
    RetireRequested,
    RetirementAborted,
    WorkerRetired,
)
from taskmill.protocol.vocabulary import (
    AcquireReplicas,
    AddKeys,
    FreeKeys,
    KeyLost,
    Paused,
    ReleaseKeys,
    ReleasedKeys,
    ScatterDone,
)


def scatter(s: Sched, key: str, *where: str, client: str = "c1", nbytes: int = 100) -> None:
    s(ScatterDone(sid(), client, {key: tuple(where)}, {key: nbytes}))


def has(addr: str, *keys: str) -> AddKeys:
    return AddKeys(sid(), addr, {k: 100 for k in keys})


def replicate(*keys: str, n: int | None = None, workers: tuple[str, ...] | None = None) -> ReplicateRequested:
    return ReplicateRequested(sid(), tuple(keys), n, workers)


def acquires(cmds: list) -> dict[str, dict[str, tuple[str, ...]]]:
    """worker -> {key: holders} of the AcquireReplicas commands in ``cmds``."""
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for c in of(cmds, AcquireReplicas):
        out.setdefault(c.worker, {}).update(c.who_has)
    return out


def pause(addr: str, paused: bool = True) -> Paused:
    return Paused(sid(), addr, paused)


# --------------------------------------------------------------------------- #
# replicate
# --------------------------------------------------------------------------- #
def test_replicate_copies_to_every_worker_and_survives_a_death():
    s = Sched("tcp://a", "tcp://b", "tcp://c")
    scatter(s, "s", "tcp://a")
    cmds = s(replicate("s"))
    assert acquires(cmds) == {"tcp://b": {"s": ("tcp://a",)}, "tcp://c": {"s": ("tcp://a",)}}
    assert s.state.copies_pending(["s"]) == ["s"]
    s(has("tcp://b", "s"))
    assert s.state.copies_pending(["s"]) == ["s"]  # c has not reported yet
    s(has("tcp://c", "s"))
    assert s.state.copies_pending(["s"]) == []
    assert sorted(s.state.who_has(["s"])["s"]) == ["tcp://a", "tcp://b", "tcp://c"]
    cmds = s(leave("tcp://a", "worker process exited with signal SIGKILL"))
    assert not of(cmds, KeyLost)
    assert s.state.task_state("s") == "memory"


def test_replicate_n_counts_existing_copies_and_pending_ones():
    s = Sched("tcp://a", "tcp://b", "tcp://c", "tcp://d")
    scatter(s, "s", "tcp://a", "tcp://b")
    assert acquires(s(replicate("s", n=2))) == {}  # already on two workers
    cmds = s(replicate("s", n=3))
    assert len(of(cmds, AcquireReplicas)) == 1
    assert acquires(s(replicate("s", n=3))) == {}  # the copy in progress counts
    assert acquires(s(replicate("s", n=10))) != {}  # capped at the pool: the last worker


def test_replicate_within_given_workers_and_skips_keys_not_in_memory():
    s = Sched("tcp://a", "tcp://b", "tcp://c")
    scatter(s, "s", "tcp://a")
    s(submit([task("x-1", workers=("tcp://a",))], wanted=["x-1"]))  # processing, not in memory
    cmds = s(replicate("s", "x-1", "unknown", workers=("tcp://c", "tcp://gone")))
    assert acquires(cmds) == {"tcp://c": {"s": ("tcp://a",)}}


def test_replicate_spreads_keys_over_the_pool():
    s = Sched("tcp://a", "tcp://b", "tcp://c")
    for i in range(4):
        scatter(s, f"s{i}", "tcp://a")
    cmds = s(replicate(*[f"s{i}" for i in range(4)], n=2, workers=("tcp://b", "tcp://c")))
    got = acquires(cmds)
    assert sorted(len(v) for v in got.values()) == [4, 4]
    cmds = s(replicate(*[f"s{i}" for i in range(4)], n=1, workers=("tcp://a", "tcp://b", "tcp://c")))
    assert acquires(cmds) == {}  # a holds them all


def test_copy_of_a_key_released_meanwhile_is_freed_on_the_fetching_worker():
    s = Sched("tcp://a", "tcp://b")
    scatter(s, "s", "tcp://a")
    s(replicate("s"))
    cmds = s(ReleaseKeys(sid(), "c1", ("s",)))
    assert s.freed(cmds) == {"tcp://a": {"s"}, "tcp://b": {"s"}}
    assert s.state.copies_pending(["s"]) == []
    cmds = s(has("tcp://b", "s"))  # a late report: freed again, not recorded
    assert s.freed(cmds) == {"tcp://b": {"s"}}


def test_worker_declining_or_leaving_settles_the_copy():
    s = Sched("tcp://a", "tcp://b", "tcp://c")
    scatter(s, "s", "tcp://a", nbytes=10**7)  # too big for an insurance copy after the death
    s(replicate("s"))
    s(ReleasedKeys(sid(), "tcp://b", ("s",)))
    assert s.state.who_has(["s"])["s"] == ["tcp://a"]
    assert s.state.copies_pending(["s"]) == ["s"]
    s(leave("tcp://c"))
    assert s.state.copies_pending(["s"]) == []
    assert s.state.task_state("s") == "memory"


def test_frees_precede_a_copy_request_to_the_same_worker():
    s = Sched("tcp://a", "tcp://b")
    scatter(s, "s", "tcp://a")
    s(submit([task("x-1", workers=("tcp://b",))], wanted=["x-1"]))
    s(finished("tcp://b", "x-1"))
    cmds = s(ReleaseKeys(sid(), "c1", ("x-1",)), replicate("s"))
    kinds = [(type(c).__name__, c.worker) for c in cmds if isinstance(c, (FreeKeys, AcquireReplicas))]
    assert kinds == [("FreeKeys", "tcp://b"), ("AcquireReplicas", "tcp://b")]


# --------------------------------------------------------------------------- #
# paused workers
# --------------------------------------------------------------------------- #
def test_paused_worker_gets_no_new_task_while_another_has_room():
    s = Sched("tcp://a", "tcp://b")
    s(pause("tcp://a"))
    cmds = s(submit([task(f"x-{i}") for i in range(3)], wanted=[f"x-{i}" for i in range(3)]))
    assert set(s.computes(cmds).values()) == {"tcp://b"}
    assert s.state.task_state("x-2") == "queued"  # b is full: waits on the scheduler


def test_all_paused_tasks_wait_and_go_out_on_resume():
    s = Sched("tcp://a", "tcp://b")
    s(pause("tcp://a"), pause("tcp://b"))
    cmds = s(submit([task("x-1")], wanted=["x-1"]))
    assert not s.computes(cmds) and s.state.task_state("x-1") == "queued"
    cmds = s(pause("tcp://b", False))
    assert s.computes(cmds) == {"x-1": "tcp://b"}


def test_tasks_already_on_a_paused_worker_stay_and_its_slots_wait():
    s = Sched("tcp://a")
    s(submit([task("x-1"), task("x-2"), task("x-3")], wanted=["x-1", "x-2", "x-3"]))
    s(pause("tcp://a"))
    running = set(s.processing())
    cmds = s(finished("tcp://a", sorted(running)[0]))
    assert not s.computes(cmds)  # a slot freed, but a is paused
    assert s.state.task_state("x-3") == "queued"
    cmds = s(pause("tcp://a", False))
    assert s.computes(cmds) == {"x-3": "tcp://a"}


def test_pause_of_unknown_worker_and_repeats_are_harmless():
    s = Sched("tcp://a")
    s(pause("tcp://nobody"), pause("tcp://a"), pause("tcp://a"))
    assert s.state.workers_info()["tcp://a"]["paused"] is True


# --------------------------------------------------------------------------- #
# retirement
# --------------------------------------------------------------------------- #
def test_retire_moves_data_only_held_there_then_retires():
    s = Sched("tcp://a", "tcp://b")
    scatter(s, "s", "tcp://a")
    scatter(s, "both", "tcp://a", "tcp://b")
    cmds = s(RetireRequested(sid(), ("tcp://a",)))
    assert acquires(cmds) == {"tcp://b": {"s": ("tcp://a",)}}
    assert not of(cmds, WorkerRetired)
    cmds = s(submit([task("y-1")], wanted=["y-1"]))
    assert s.computes(cmds) == {"y-1": "tcp://b"}  # nothing new goes to a
    cmds = s(has("tcp://b", "s"))
    assert of(cmds, WorkerRetired) == [WorkerRetired(cmds[-1].stimulus_id, "tcp://a")]
    assert "tcp://a" not in s.state.workers
    assert s.state.who_has(["s", "both"]) == {"s": ["tcp://b"], "both": ["tcp://b"]}
    assert not [r for r in s.reports() if isinstance(r, KeyLost)]


def test_retire_worker_without_data_is_immediate_and_its_tasks_are_not_suspects():
    s = Sched("tcp://a", "tcp://b")
    s(submit([task("x-1", workers=("tcp://a",), allow_other_workers=True)], wanted=["x-1"]))
    assert s.processing() == {"x-1": "tcp://a"}
    cmds = s(RetireRequested(sid(), ("tcp://a",)))
    assert [c.worker for c in of(cmds, WorkerRetired)] == ["tcp://a"]
    assert s.computes(cmds) == {"x-1": "tcp://b"}
    assert s.state.tasks["x-1"].suspicious == 0


def test_result_finishing_on_a_retiring_worker_is_copied_away():
    s = Sched("tcp://a", "tcp://b")
    s(submit([task("x-1", workers=("tcp://a",), allow_other_workers=True)], wanted=["x-1"]))
    scatter(s, "s", "tcp://a")
    s(RetireRequested(sid(), ("tcp://a",)))
    cmds = s(finished("tcp://a", "x-1"))
    assert acquires(cmds) == {"tcp://b": {"x-1": ("tcp://a",)}}
    s(has("tcp://b", "s"))
    assert "tcp://a" in s.state.workers  # x-1 still only there
    cmds = s(has("tcp://b", "x-1"))
    assert [c.worker for c in of(cmds, WorkerRetired)] == ["tcp://a"]


def test_retire_target_dying_or_declining_gets_the_copy_elsewhere():
    s = Sched("tcp://a", "tcp://b", "tcp://c")
    scatter(s, "s", "tcp://a")
    cmds = s(RetireRequested(sid(), ("tcp://a",)))
    (first,) = acquires(cmds)
    second = "tcp://c" if first == "tcp://b" else "tcp://b"
    cmds = s(ReleasedKeys(sid(), first, ("s",)))
    assert acquires(cmds) == {second: {"s": ("tcp://a",)}} or acquires(cmds) == {first: {"s": ("tcp://a",)}}
    target = next(iter(acquires(cmds)))
    cmds = s(leave(target))
    (again,) = acquires(cmds)
    cmds = s(has(again, "s"))
    assert [c.worker for c in of(cmds, WorkerRetired)] == ["tcp://a"]


def test_retire_with_nowhere_to_go_is_aborted_and_the_worker_works_again():
    s = Sched("tcp://a", "tcp://b")
    scatter(s, "s", "tcp://a")
    s(pause("tcp://b"))
    cmds = s(RetireRequested(sid(), ("tcp://a",)))
    (aborted,) = of(cmds, RetirementAborted)
    assert aborted.worker == "tcp://a" and "1 keys held only there" in aborted.reason
    cmds = s(submit([task("y-1")], wanted=["y-1"]))
    assert s.computes(cmds) == {"y-1": "tcp://a"}


def test_retiring_every_worker_moves_nothing_and_aborts_those_with_data():
    s = Sched("tcp://a", "tcp://b", "tcp://c")
    scatter(s, "s", "tcp://a")
    cmds = s(RetireRequested(sid(), ("tcp://a", "tcp://b", "tcp://c")))
    assert [c.worker for c in of(cmds, RetirementAborted)] == ["tcp://a"]
    assert sorted(c.worker for c in of(cmds, WorkerRetired)) == ["tcp://b", "tcp://c"]
    assert s.state.task_state("s") == "memory"


def test_retirement_cancelled_or_worker_dying_ends_it():
    s = Sched("tcp://a", "tcp://b", "tcp://c")
    scatter(s, "s", "tcp://a")
    scatter(s, "t", "tcp://b")
    s(RetireRequested(sid(), ("tcp://a", "tcp://b")))
    cmds = s(RetireCancelled(sid(), ("tcp://a",), "took longer than 1s"))
    assert [(c.worker, c.reason) for c in of(cmds, RetirementAborted)] == [
        ("tcp://a", "took longer than 1s")]
    cmds = s(leave("tcp://b", "killed"))
    (aborted,) = of(cmds, RetirementAborted)
    assert aborted.worker == "tcp://b" and "killed" in aborted.reason
    assert not s.state.replicas.retiring


def test_worker_joining_unblocks_nothing_but_new_copies_may_go_there():
    s = Sched("tcp://a")
    scatter(s, "s", "tcp://a")
    s(submit([task("x-1")], wanted=["x-1"]))
    cmds = s(RetireRequested(sid(), ("tcp://a",)))
    assert of(cmds, RetirementAborted)  # nowhere to go
    s(RetireRequested(sid(), ("tcp://a",)))  # asked again
    assert not s.state.replicas.retiring
    s(join("tcp://b"))
    cmds = s(replicate("s"))
    assert acquires(cmds) == {"tcp://b": {"s": ("tcp://a",)}}


def test_workers_to_retire_prefers_least_data():
    s = Sched("tcp://a", "tcp://b", "tcp://c")
    scatter(s, "s", "tcp://a")
    scatter(s, "t", "tcp://b", "tcp://a")
    assert s.state.workers_to_retire(2) == ["tcp://c", "tcp://b"]
    s(RetireRequested(sid(), ("tcp://a",)))
    assert "tcp://a" not in s.state.workers_to_retire(3)
