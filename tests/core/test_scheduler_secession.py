"""The scheduler's slot accounting under ``secede()``/``rejoin()`` (``Seceded`` from a worker)."""

from __future__ import annotations

from scheduler_helpers import Sched, finished, leave, join, sid, submit, task

from taskmill.core.scheduler.policy import NORMAL_COST
from taskmill.protocol.vocabulary import Seceded

A = "tcp://a"


def seceded(key: str, yes: bool = True, worker: str = A) -> Seceded:
    return Seceded(sid(), worker, key, yes)


def test_a_seceded_task_frees_its_slot_and_more_work_comes() -> None:
    s = Sched((A, 1))  # two normal tasks fill one thread's slots
    cmds = s(submit([task(f"t-{i}") for i in range(4)], wanted=[f"t-{i}" for i in range(4)]))
    assert sorted(s.computes(cmds)) == ["t-0", "t-1"]
    ws = s.state.workers[A]
    assert ws.used == ws.capacity
    cmds = s(seceded("t-0"))
    assert list(s.computes(cmds)) == ["t-2"]
    assert s.state.tasks["t-0"].state == "processing"
    assert s.state.tasks["t-0"].processing_on is ws
    assert any("seceded on tcp://a" in e[4] for e in s.state.story("t-0"))


def test_rejoin_takes_the_slot_again() -> None:
    s = Sched((A, 1))
    s(submit([task(f"t-{i}") for i in range(4)], wanted=[f"t-{i}" for i in range(4)]))
    s(seceded("t-0"))
    ws = s.state.workers[A]
    s(seceded("t-0", False))
    assert s.state.tasks["t-0"].slot_cost == NORMAL_COST
    assert ws.used == 3 * NORMAL_COST and ws not in s.state.membership.idle
    cmds = s(finished(A, "t-1"), finished(A, "t-2"))
    assert list(s.computes(cmds)) == ["t-3"]
    assert any("rejoined on tcp://a" in e[4] for e in s.state.story("t-0"))


def test_a_seceded_task_is_rescheduled_when_its_worker_dies() -> None:
    s = Sched((A, 1))
    s(submit([task("t-0")], wanted=["t-0"]))
    s(seceded("t-0"))
    cmds = s(join("tcp://b"), leave(A))
    assert s.computes(cmds) == {"t-0": "tcp://b"}
    assert s.state.tasks["t-0"].slot_cost == NORMAL_COST  # a fresh run counts


def test_a_seceded_task_finishing_frees_nothing_twice() -> None:
    s = Sched((A, 1))
    s(submit([task("t-0"), task("t-1")], wanted=["t-0", "t-1"]))
    s(seceded("t-0"))
    s(finished(A, "t-0"))
    assert s.state.workers[A].used == NORMAL_COST


def test_seceded_messages_for_tasks_not_processing_there_are_ignored() -> None:
    s = Sched((A, 1), ("tcp://b", 1))
    s(submit([task("t-0")], wanted=["t-0"]))
    where = s.processing()["t-0"]
    other = "tcp://b" if where == A else A
    s(seceded("t-0", worker=other), seceded("ghost-1", worker=other))
    assert s.state.tasks["t-0"].slot_cost == NORMAL_COST
    assert any("ignored: secede on" in e[4] for e in s.state.story("t-0"))
    s(seceded("t-0", worker=where), seceded("t-0", worker=where))  # twice: once
    assert s.state.workers[where].used == 0
