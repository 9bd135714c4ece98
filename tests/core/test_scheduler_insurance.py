"""Scheduler state machine: insurance copies of small results while workers die."""

from __future__ import annotations

from scheduler_helpers import Sched, finished, join, of, sid, submit, task

from taskmill.core.scheduler.events import WorkerLeft
from taskmill.protocol.vocabulary import AcquireReplicas, AddKeys, Heartbeat
from taskmill.core.scheduler.replicas import INSURANCE_WINDOW, INSURED_BYTES


def died(addr: str, now: float = 100.0) -> WorkerLeft:
    return WorkerLeft(sid(), addr, "worker process exited with signal SIGKILL", now)


def copies(cmds: list) -> dict[str, str]:
    """key -> worker asked to fetch a copy, from the AcquireReplicas in ``cmds``."""
    return {k: c.worker for c in of(cmds, AcquireReplicas) for k in c.who_has}


def run_chain(s: Sched, *keys: str) -> dict[str, str]:
    """Submit x -> y -> ... (the last one wanted) and finish the first; key -> its worker."""
    tasks = [task(keys[0])] + [task(k, prev) for prev, k in zip(keys, keys[1:])]
    cmds = s(submit(tasks, wanted=[keys[-1]]))
    return s.computes(cmds)


def x_finished_after_a_death() -> tuple[Sched, dict[str, str], list]:
    """Three workers, one dies, then x-1 -> y-1 -> z-1 is submitted and x-1
    finishes: the scheduler, where each task went, and the commands of x-1's end."""
    s = Sched("tcp://a", "tcp://b", "tcp://c")
    s(died("tcp://c"))
    where = run_chain(s, "x-1", "y-1", "z-1")
    return s, where, s(finished(where["x-1"], "x-1"))


def test_a_healthy_cluster_makes_no_insurance_copies():
    s = Sched("tcp://a", "tcp://b")
    where = run_chain(s, "x-1", "y-1")
    assert copies(s(finished(where["x-1"], "x-1"))) == {}


def test_after_a_death_small_needed_results_get_a_copy_and_survive_the_next_death():
    s, where, cmds = x_finished_after_a_death()
    holder = where["x-1"]
    target = copies(cmds)["x-1"]
    assert target != holder and target in ("tcp://a", "tcp://b")
    y_on = s.computes(cmds)["y-1"]
    s(AddKeys(sid(), target, {"x-1": 8}))
    assert sorted(s.state.who_has(["x-1"])["x-1"]) == ["tcp://a", "tcp://b"]
    # y-1 finishes, then the worker holding both dies: x-1 is not recomputed
    cmds = s(finished(y_on, "y-1"))
    assert "y-1" in copies(cmds)
    s(AddKeys(sid(), copies(cmds)["y-1"], {"y-1": 8}))
    cmds = s(died(y_on, now=101.0))
    assert "x-1" not in s.computes(cmds) and "y-1" not in s.computes(cmds)
    assert s.state.task_state("y-1") == "memory"


def test_big_results_get_no_copy():
    s = Sched("tcp://a", "tcp://b", "tcp://c")
    s(died("tcp://c"))
    where = run_chain(s, "x-1", "y-1")
    cmds = s(finished(where["x-1"], "x-1", nbytes=INSURED_BYTES + 1))
    assert copies(cmds) == {}
    y_on = s.processing()["y-1"]
    cmds = s(finished(y_on, "y-1", nbytes=INSURED_BYTES))
    assert set(copies(cmds)) == {"y-1"} and copies(cmds)["y-1"] != y_on


def test_insurance_ends_when_the_window_passes():
    s = Sched("tcp://a", "tcp://b", "tcp://c")
    s(died("tcp://c", now=100.0))
    s(Heartbeat(sid(), "tcp://a", now=100.0 + INSURANCE_WINDOW + 1))
    where = run_chain(s, "x-1", "y-1")
    assert copies(s(finished(where["x-1"], "x-1"))) == {}


def test_a_death_re_insures_survivors_and_a_joining_worker_takes_what_found_no_place():
    s, where, cmds = x_finished_after_a_death()
    holder = where["x-1"]
    other = "tcp://b" if holder == "tcp://a" else "tcp://a"
    assert copies(cmds) == {"x-1": other}
    s(AddKeys(sid(), other, {"x-1": 8}))
    # the copy's holder dies: x-1 (still needed by y-1) has one holder and
    # nowhere to go until a worker joins, which is then asked for a copy
    cmds = s(died(other, now=101.0))
    assert copies(cmds) == {} and s.state.task_state("x-1") == "memory"
    cmds = s(join("tcp://d"))
    assert copies(cmds) == {"x-1": "tcp://d"}
    assert "x-1" not in s.computes(cmds)
