"""The worker state machine while paused (memory short): no new task, no new
fetch; everything resumes on unpause."""

from __future__ import annotations

from taskmill.core.worker.events import (
    DataPut,
    Execute,
    Fetch,
    FetchSucceeded,
    PauseChanged,
    ScheduleStartReport,
)
from taskmill.protocol.vocabulary import KeysScattered, Paused, TaskFinished
from tests.core.test_worker_state import ME, A, compute, ok, ws


def pause(paused: bool = True) -> PauseChanged:
    return PauseChanged("memory", paused)


def kinds(cmds: list) -> list[str]:
    return [type(c).__name__ for c in cmds]


def test_paused_worker_starts_nothing_then_resumes_in_priority_order() -> None:
    w = ws(nthreads=2)
    assert w.handle(pause()) == [Paused("memory", ME, True)]  # the scheduler is told
    assert w.paused
    assert w.handle(compute("x", priority=(2,)), compute("y", priority=(1,)), compute("z", priority=(0,))) == []
    assert w.ready_count == 3 and w.executing_count == 0
    cmds = w.handle(pause(False))
    assert cmds[0] == Paused("memory", ME, False)
    # one tick, asked for with the first start, for both
    assert [(type(c), getattr(c, "key", "")) for c in cmds[1:]] == [
        (Execute, "z"), (ScheduleStartReport, ""), (Execute, "y")]
    assert not w.paused and w.ready_count == 1


def test_running_tasks_finish_while_paused_and_nothing_new_starts() -> None:
    w = ws(nthreads=1)
    assert kinds(w.handle(compute("x"), compute("y", priority=(1,)))) == ["Execute", "ScheduleStartReport"]
    assert kinds(w.handle(pause())) == ["Paused"]
    cmds = w.handle(ok("x"))
    assert kinds(cmds) == ["TaskFinished"]  # reported, but y does not start
    assert w.task_state("y") == "ready" and w.executing_count == 0
    cmds = w.handle(pause(False))
    assert [type(c) for c in cmds] == [Paused, Execute] and cmds[1].key == "y"  # type: ignore[attr-defined]
    # (the tick asked for with x's start is still pending: no second one)


def test_no_fetch_while_paused_in_flight_completes() -> None:
    w = ws(nthreads=1)
    cmds = w.handle(compute("a", {"d1": (A,)}))
    assert cmds == [Fetch("compute-a", A, ("d1",))]
    w.handle(pause())
    # a second task's input is queued, not fetched
    assert w.handle(compute("b", {"d2": (A,)}, priority=(1,))) == []
    assert w.task_state("d2") == "fetch"
    # the fetch in flight lands; its task is ready but does not run
    assert kinds(w.handle(FetchSucceeded("got", A, ("d1",), {"d1": 10}))) == ["AddKeys"]
    assert w.task_state("a") == "ready"
    cmds = w.handle(pause(False))
    assert kinds(cmds) == ["Paused", "Fetch", "Execute", "ScheduleStartReport"]
    assert cmds[1] == Fetch("memory", A, ("d2",))
    assert cmds[2].key == "a"  # type: ignore[attr-defined]


def test_pause_is_idempotent_and_recorded() -> None:
    w = ws()
    assert kinds(w.handle(pause(), pause())) == ["Paused"]  # told once
    assert w.paused
    assert w.handle(pause(False), pause(False)) == [Paused("memory", ME, False)]
    notes = [e for e in w.story("") if e[1] == "note"]
    assert [e[2] for e in notes] == ["paused", "unpaused"]


def test_scattered_data_and_reports_flow_while_paused() -> None:
    w = ws()
    w.handle(pause())
    assert w.handle(DataPut("put", {"s": 5}, "c1")) == [KeysScattered("put", ME, "c1", {"s": 5})]
    assert "s" in w.in_memory
    cmds = w.handle(compute("s"))  # already here: reported even while paused
    assert cmds == [TaskFinished("compute-s", ME, "s", 5, "", 0.0, 0.0)]
