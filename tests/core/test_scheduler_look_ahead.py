"""Look-ahead placement in the pure scheduler machine: a waiting task goes to
the worker still computing its inputs, and every way that can go wrong."""

from __future__ import annotations

from scheduler_helpers import Sched, erred, finished, join, leave, of, sid, submit, task
from taskmill.core.scheduler.events import StealTick
from taskmill.core.scheduler.look_ahead import MAX_AHEAD_SCAN
from taskmill.core.scheduler.records import PROCESSING, TaskRecord
from taskmill.protocol.vocabulary import (
    CancelKeys,
    ComputeTask,
    KeyErred,
    KeyInMemory,
    ReleaseKeys,
    StealRequest,
    StealResponse,
)


def ahead(**kw: object) -> Sched:
    return Sched("a", "b", look_ahead=True, **kw)  # type: ignore[arg-type]


def state(s: Sched, key: str) -> str:
    return s.state.tasks[key].state


def test_a_chain_goes_ahead_to_the_worker_of_its_first_link_within_its_slots() -> None:
    s = ahead()
    cmds = s(submit([task("x-1"), task("y-1", "x-1"), task("z-1", "y-1")], wanted=["z-1"]))
    computes = of(cmds, ComputeTask)
    # x-1 and y-1 (two slots of a task of unknown duration) go to a at once;
    # y-1's input has no holder yet: it is computed there
    assert [(c.key, c.worker) for c in computes] == [("x-1", "a"), ("y-1", "a")]
    assert computes[1].who_has == {"x-1": ()}
    assert state(s, "z-1") == "waiting"  # a has no free slot left
    story = [e for e in s.state.machine.story("y-1") if e[4].startswith("look-ahead")]
    assert story and "look-ahead on a: inputs 'x-1' processing there" == story[0][4]
    # x-1 finishes: y-1 is an ordinary processing task; the freed slot takes z-1
    cmds = s(finished("a", "x-1", duration=0.001))
    assert s.computes(cmds) == {"z-1": "a"}
    assert not s.state.tasks["y-1"].waiting_on
    cmds = s(finished("a", "y-1", duration=0.001))
    assert s.freed(cmds) == {"a": {"x-1"}}  # no longer needed
    cmds = s(finished("a", "z-1", duration=0.001))
    assert [r.key for r in of(cmds, KeyInMemory)] == ["z-1"]
    assert s.freed(cmds) == {"a": {"y-1"}}


def test_look_ahead_off_sends_one_link_per_round_trip() -> None:
    s = Sched("a", "b", look_ahead=False)
    cmds = s(submit([task("x-1"), task("y-1", "x-1")], wanted=["y-1"]))
    assert s.computes(cmds) == {"x-1": "a"}
    assert s.computes(s(finished("a", "x-1"))) == {"y-1": "a"}


def test_a_link_submitted_later_goes_ahead_when_it_arrives() -> None:
    s = ahead()
    s(submit([task("x-1")], wanted=["x-1"]))
    cmds = s(submit([task("y-1", "x-1")], wanted=["y-1"]))
    assert s.computes(cmds) == {"y-1": "a"}


def test_an_input_that_errs_errs_its_dependent_sent_ahead_and_frees_it_there() -> None:
    s = ahead()
    s(submit([task("x-1"), task("y-1", "x-1")], wanted=["y-1"]))
    cmds = s(erred("a", "x-1"))
    assert state(s, "y-1") == "erred" and "y-1" in s.freed(cmds).get("a", set())
    assert [r.key for r in of(cmds, KeyErred)] == ["y-1"]
    assert s.processing() == {}


def test_an_input_retried_withdraws_its_dependent_and_sends_it_ahead_again() -> None:
    s = ahead()
    s(submit([task("x-1", retries=1), task("y-1", "x-1")], wanted=["y-1"]))
    cmds = s(erred("a", "x-1"))
    assert "y-1" in s.freed(cmds)["a"]
    assert s.processing()["x-1"] == s.processing()["y-1"]  # both placed again, together
    assert [c.key for c in of(cmds, ComputeTask)] == ["x-1", "y-1"]


def test_a_dead_worker_reschedules_input_and_dependent_and_only_the_input_is_suspect() -> None:
    s = ahead()
    s(submit([task("x-1"), task("y-1", "x-1")], wanted=["y-1"]))
    cmds = s(leave("a"))
    assert s.processing() == {"x-1": "b", "y-1": "b"}
    assert s.state.tasks["x-1"].suspicious == 1 and s.state.tasks["y-1"].suspicious == 0
    assert [c.key for c in of(cmds, ComputeTask)] == ["x-1", "y-1"]
    s(finished("b", "x-1"))
    cmds = s(finished("b", "y-1"))
    assert [r.key for r in of(s.log, KeyInMemory)] == ["y-1"]  # once


def test_releasing_the_dependent_sent_ahead_frees_it_there_and_keeps_the_input_running() -> None:
    s = ahead()
    s(submit([task("x-1"), task("y-1", "x-1")], wanted=["x-1", "y-1"]))
    cmds = s(ReleaseKeys(sid(), "c1", ("y-1",)))
    assert s.freed(cmds) == {"a": {"y-1"}}
    assert s.processing() == {"x-1": "a"}


def test_cancelling_the_input_cancels_the_dependent_sent_ahead() -> None:
    s = ahead()
    s(submit([task("x-1"), task("y-1", "x-1")], wanted=["y-1"]))
    cmds = s(CancelKeys(sid(), client="c1", keys=("x-1",)))
    assert s.freed(cmds) == {"a": {"x-1", "y-1"}}
    assert s.state.tasks == {}


def test_no_look_ahead_for_resources_or_restrictions_the_worker_does_not_meet() -> None:
    s = Sched(look_ahead=True)
    s(join("a", resources={"GPU": 1}))
    s(join("b"))
    s(submit([task("x-1", workers=("a",)), task("y-1", "x-1", resources={"GPU": 1}),
              task("z-1", "x-1", workers=("b",)), task("w-1", "x-1", workers=("a", "b"))],
             wanted=["y-1", "z-1", "w-1"]))
    assert s.processing() == {"x-1": "a", "w-1": "a"}
    cmds = s(finished("a", "x-1"))
    assert s.computes(cmds) == {"y-1": "a", "z-1": "b"}


def test_inputs_on_different_workers_mean_no_look_ahead_and_on_one_worker_look_ahead() -> None:
    s = ahead()
    s(submit([task("p-1", workers=("a",)), task("q-1", workers=("b",)),
              task("r-1", workers=("a",)), task("split-1", "p-1", "q-1"),
              task("same-1", "p-1", "r-1")], wanted=["split-1", "same-1"]))
    assert s.processing() == {"p-1": "a", "q-1": "b", "r-1": "a"}
    # a is full (p-1, r-1): same-1 waits for a free slot there
    cmds = s(finished("a", "p-1"))
    assert s.computes(cmds) == {"same-1": "a"}  # r-1 still processing on a: ahead
    assert state(s, "split-1") == "waiting"  # p-1 on a, q-1 on b: placed when ready
    assert list(s.computes(s(finished("b", "q-1")))) == ["split-1"]


def long_tasks(a_threads: int = 1) -> Sched:
    """Workers a and b; tasks of the kinds x, y and p are known to take 5 s."""
    s = Sched(("a", a_threads), "b", look_ahead=True)
    s(submit([task("x-0"), task("y-0"), task("p-0")], wanted=["x-0", "y-0", "p-0"]))
    for key, worker in list(s.processing().items()):
        s(finished(worker, key, duration=5.0))
    return s


def test_stealing_takes_neither_a_task_sent_ahead_nor_its_input() -> None:
    s = long_tasks()
    s(submit([task("x-1", workers=("a",), allow_other_workers=True),
              task("y-1", "x-1")], wanted=["y-1"]))
    assert s.processing() == {"x-1": "a", "y-1": "a"}
    assert of(s(StealTick(sid(), 1.0)), StealRequest) == []
    # without y-1 sent ahead, x-1's line would be stolen from
    s2 = long_tasks()
    s2(submit([task("x-1", workers=("a",), allow_other_workers=True),
               task("p-1", workers=("a",), allow_other_workers=True)], wanted=["x-1", "p-1"]))
    assert [r.key for r in of(s2(StealTick(sid(), 1.0)), StealRequest)] == ["p-1"]


def test_an_input_stolen_meanwhile_takes_its_dependent_along() -> None:
    s = long_tasks(a_threads=2)  # a keeps a free slot with three tasks
    s(submit([task(f"p-{i}", workers=("a",), allow_other_workers=True) for i in (1, 2)]
             + [task("x-1", workers=("a",), allow_other_workers=True)], wanted=["x-1", "p-1", "p-2"]))
    reqs = of(s(StealTick(sid(), 1.0)), StealRequest)
    assert [r.key for r in reqs] == ["x-1"]
    # y-1 arrives while the request for x-1 is out: it goes ahead to a
    s(submit([task("y-1", "x-1")], wanted=["y-1"]))
    assert s.processing()["y-1"] == "a"
    cmds = s(StealResponse(sid(), "a", "x-1", True, seen=reqs[0].epoch))
    assert "y-1" in s.freed(cmds)["a"]
    assert s.processing()["x-1"] == "b" and s.processing()["y-1"] == "b"
    assert s.state.tasks["y-1"].state == PROCESSING


def test_a_freed_slot_retries_a_bounded_number_of_refused_candidates_oldest_first() -> None:
    s = ahead()
    look_ahead = s.state.placement.look_ahead
    ws = s.state.workers["a"]
    refused = [TaskRecord(f"r-{i}", None, (0,), i) for i in range(MAX_AHEAD_SCAN + 3)]
    look_ahead.blocked[ws] = dict.fromkeys(refused)
    assert look_ahead.unblock(ws) == refused[:MAX_AHEAD_SCAN]
    assert look_ahead.unblock(ws) == refused[MAX_AHEAD_SCAN:]
    assert ws not in look_ahead.blocked and look_ahead.unblock(ws) == []


def test_look_ahead_leaves_free_slots_to_queued_work() -> None:
    s = Sched("a", look_ahead=True)
    s(submit([task(f"r-{i}") for i in range(6)] + [task("y-1", "r-0")],
             wanted=[f"r-{i}" for i in range(6)] + ["y-1"]))
    assert sorted(s.processing()) == ["r-0", "r-1"]  # the others are queued
    assert state(s, "y-1") == "waiting" and not s.state.placement.look_ahead.blocked
    cmds = s(finished("a", "r-1"))
    assert s.computes(cmds) == {"r-2": "a"}  # the freed slot goes to the queue
    s(finished("a", "r-0"))
    assert state(s, "y-1") == "queued"  # behind the roots submitted before it
    assert not [e for e in s.state.machine.story("y-1") if e[4].startswith("look-ahead")]
