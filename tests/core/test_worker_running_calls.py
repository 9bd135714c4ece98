"""The worker machine's running calls: which starts it reports (one tick at a
time, only calls that still run a tick interval after they started) and how
it abandons a call (a forced cancel)."""

from __future__ import annotations

from taskmill.core.worker.events import (
    AbandonExecution,
    DeleteData,
    Execute,
    ScheduleStartReport,
    StartReportDue,
)
from taskmill.protocol.vocabulary import AbandonTasks, FreeKeys, TasksStarted
from tests.core.test_worker_state import ME, compute, err, ok, ws


def tick() -> StartReportDue:
    return StartReportDue("tick")


def of(cmds: list, kind: type) -> list:
    return [c for c in cmds if isinstance(c, kind)]


def test_the_first_start_asks_for_one_tick_and_calls_still_running_a_tick_later_are_reported() -> None:
    w = ws(nthreads=4)
    cmds = w.handle(compute("a"), compute("b"), compute("c"))
    assert len(of(cmds, Execute)) == 3
    assert len(of(cmds, ScheduleStartReport)) == 1  # one timer for three
    # the first tick: they ran for less than a tick interval; another tick comes
    assert w.handle(tick()) == [ScheduleStartReport("tick")]
    w.handle(ok("b"))  # ended before its report: task-finished says it ran
    assert of(w.handle(compute("d")), ScheduleStartReport) == []  # the tick is pending
    # the second tick reports those started before the first, the young one waits
    assert w.handle(tick()) == [TasksStarted("tick", ME, ("a", "c"), w.epoch), ScheduleStartReport("tick")]
    w.handle(ok("d"))
    assert w.handle(tick()) == []  # nothing left: no message, no timer
    assert of(w.handle(compute("e")), ScheduleStartReport) == [ScheduleStartReport("compute-e")]


def test_calls_that_all_end_before_the_tick_cost_no_message() -> None:
    w = ws(nthreads=2)
    w.handle(compute("a"), compute("b"))
    assert w.handle(tick()) == [ScheduleStartReport("tick")]
    w.handle(ok("a"), err("b"))
    assert w.handle(tick()) == []
    assert not w.start_reports.unreported and not w.start_reports.armed


def test_a_call_cancelled_before_the_tick_is_not_reported() -> None:
    w = ws(nthreads=2)
    w.handle(compute("a"), compute("b"))
    w.handle(tick())
    w.handle(FreeKeys("free", ME, ("a",), epoch=1))
    assert w.task_state("a") == "cancelled"
    assert of(w.handle(tick()), TasksStarted) == [TasksStarted("tick", ME, ("b",), 1)]


def test_a_run_adopted_for_a_new_assignment_is_reported_again() -> None:
    w = ws()
    w.handle(compute("a"))
    w.handle(tick())
    assert w.handle(tick()) == [TasksStarted("tick", ME, ("a",), 0)]
    w.handle(FreeKeys("free", ME, ("a",), epoch=1))  # the scheduler let it go ...
    cmds = w.handle(compute("a"))  # ... and wants it again while the call still runs
    assert w.task_state("a") == "executing"
    assert cmds == [ScheduleStartReport("compute-a")]
    w.handle(tick())
    assert of(w.handle(tick()), TasksStarted) == [TasksStarted("tick", ME, ("a",), w.epoch)]


def test_an_abandoned_call_frees_its_thread_at_once_and_the_next_task_starts() -> None:
    w = ws(nthreads=1)
    w.handle(compute("a"), compute("b", priority=(1,)))
    assert w.executing == {"a"} and w.task_state("b") == "ready"
    w.handle(FreeKeys("free", ME, ("a",), epoch=1))
    assert w.executing == {"a"}  # cancelled, but its thread is still busy
    cmds = w.handle(AbandonTasks("abandon", ME, ("a",)))
    assert cmds[0] == AbandonExecution("abandon", "a")
    assert [c.key for c in of(cmds, Execute)] == ["b"]
    assert w.executing == {"b"} and w.task_state("a") is None
    w.handle(tick())
    assert of(w.handle(tick()), TasksStarted) == [TasksStarted("tick", ME, ("b",), 1)]  # a is not


def test_abandon_of_a_call_that_is_not_cancelled_here_changes_nothing() -> None:
    w = ws(nthreads=1)
    w.handle(compute("a"))
    assert w.handle(AbandonTasks("abandon", ME, ("a", "unknown"))) == []
    assert w.executing == {"a"}
    assert [e[1:3] for e in w.story("a")][-1] == ("ignored", "abandon while executing")
    # a call that ended before the abandon arrived: its result was dropped already
    w.handle(FreeKeys("free", ME, ("a",), epoch=1))
    assert of(w.handle(ok("a")), DeleteData) == [DeleteData("done-a", ("a",))]
    assert w.handle(AbandonTasks("abandon", ME, ("a",))) == []
