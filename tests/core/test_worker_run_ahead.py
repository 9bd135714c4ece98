"""Short calls started beyond ``nthreads`` (taskmill/core/worker/run_ahead.py)."""

from __future__ import annotations

import pytest
from test_worker_secession import granted, rejoin, secede
from test_worker_state import compute, err, executed, of, ws

from taskmill.core.stimulus_log import replay
from taskmill.core.worker.events import (
    AbandonExecution,
    ExecuteSucceeded,
    ScheduleStartReport,
    StartReportDue,
)
from taskmill.core.worker.run_ahead import RunAhead
from taskmill.core.worker.state import WorkerState
from taskmill.protocol.vocabulary import (
    AbandonTasks,
    FreeKeys,
    StealRequest,
    StealResponse,
    TasksStarted,
)

ME = "tcp://me:1"


def took(key: str, seconds: float) -> ExecuteSucceeded:
    return ExecuteSucceeded(f"done-{key}", key, 8, "int", 10.0, 10.0 + seconds)


def warmed(nthreads: int = 1, seconds: float = 0.0001, token: str = "tok") -> WorkerState:
    """A machine with run-ahead on that ran one call of ``token`` in ``seconds``."""
    w = ws(nthreads, run_ahead=1)
    assert executed(w.handle(compute("first", token=token))) == ["first"]
    w.handle(took("first", seconds))
    return w


def test_a_function_never_run_here_does_not_run_ahead() -> None:
    w = ws(1, run_ahead=1)
    assert executed(w.handle(compute("a"), compute("b"))) == ["a"]
    assert w.ready_count == 1


def test_a_short_call_runs_ahead_and_only_depth_of_them() -> None:
    w = warmed()
    assert executed(w.handle(compute("a"), compute("b"), compute("c"))) == ["a", "b"]
    assert w.executing == {"a", "b"} and w.ready_count == 1
    assert w.run_ahead.started_ahead == 1
    assert executed(w.handle(took("a", 0.0001))) == ["c"]  # b takes the thread, c waits ahead
    assert w.executing == {"b", "c"}


def test_off_by_default_and_with_depth_zero() -> None:
    for w in (ws(1), ws(1, run_ahead=0)):
        w.handle(compute("first"))
        w.handle(took("first", 0.0001))
        assert executed(w.handle(compute("a"), compute("b"))) == ["a"]


def test_a_long_function_does_not_run_ahead_and_the_duration_falls_by_half() -> None:
    w = warmed(seconds=0.010)
    assert executed(w.handle(compute("a"), compute("b"))) == ["a"]
    # 10 ms, then 1 us: (10 + 0.001) / 2 ms, still long
    assert executed(w.handle(took("a", 0.000001))) == ["b"]
    assert w.ready_count == 0
    ahead = RunAhead(1, 0.002)
    ahead.started("k", "f", False)
    ahead.finished("k", 0.010)
    for _ in range(3):  # 5, 2.5, 1.25 ms
        ahead.started("k", "f", False)
        ahead.finished("k", 0.0)
    assert ahead.is_short("f")
    ahead.started("k", "f", False)
    ahead.finished("k", 0.004)  # rises at once
    assert not ahead.is_short("f")


def test_the_most_urgent_ready_task_decides() -> None:
    """Running ahead never passes over a more urgent task: if the most urgent
    one is long (or unknown), nothing runs ahead."""
    w = warmed()
    assert executed(w.handle(compute("busy"))) == ["busy"]
    cmds = w.handle(compute("unknown", token="other", priority=(-1,)), compute("short", priority=(5,)))
    assert executed(cmds) == []
    assert w.ready_count == 2


def test_no_run_ahead_while_a_task_seceded_and_rejoiners_come_first() -> None:
    w = warmed()
    w.handle(compute("parent"), compute("a"), compute("b"), compute("c"))
    assert w.executing == {"parent", "a"}
    w.handle(secede("parent"))
    assert w.executing == {"parent", "a"}  # a (ahead) takes the thread parent left
    cmds = w.handle(rejoin("parent"))
    assert granted(cmds) == []
    cmds = w.handle(took("a", 0.0001))
    # the rejoiner first; then nobody has seceded: b waits ahead of the thread parent holds
    assert granted(cmds) == ["parent"] and executed(cmds) == ["b"]
    cmds = w.handle(took("parent", 0.0001))
    assert executed(cmds) == ["c"]


def test_a_call_run_ahead_is_not_stolen_and_a_forced_cancel_abandons_it() -> None:
    w = warmed()
    w.handle(compute("a"), compute("b"))
    cmds = w.handle(StealRequest("steal", ME, "b"))
    assert [c.stolen for c in of(cmds, StealResponse)] == [False]
    cmds = w.handle(FreeKeys("free", ME, ("b",)), AbandonTasks("abandon", ME, ("b",)))
    assert [c.key for c in of(cmds, AbandonExecution)] == ["b"]
    assert w.executing == {"a"}


def test_a_failed_call_teaches_nothing() -> None:
    w = ws(1, run_ahead=1)
    w.handle(compute("first"))
    w.handle(err("first"))
    assert executed(w.handle(compute("a"), compute("b"))) == ["a"]


def test_bad_settings_are_refused_with_what_to_give() -> None:
    with pytest.raises(ValueError, match="depth must be >= 0"):
        RunAhead(-1, 0.002)
    with pytest.raises(ValueError, match="shorter_than must be >= 0"):
        RunAhead(1, -1.0)


def test_the_stimulus_log_replays_with_run_ahead(tmp_path) -> None:  # type: ignore[no-untyped-def]
    w = warmed()
    w.handle(compute("a"), compute("b"))
    replayed = replay(w.stimulus_log.dump(str(tmp_path)))
    assert replayed.executing == w.executing == {"a", "b"}


def test_a_call_waiting_for_a_thread_is_reported_started_only_once_a_thread_took_it() -> None:
    w = warmed()
    w.handle(StartReportDue("tick-0"))  # the tick the first call asked for
    cmds = w.handle(compute("a"), compute("b"))
    assert executed(cmds) == ["a", "b"] and of(cmds, ScheduleStartReport)
    assert of(w.handle(StartReportDue("tick-1", queued=("b",))), TasksStarted) == []  # too young
    cmds = w.handle(StartReportDue("tick-2", queued=("b",)))
    assert [c.keys for c in of(cmds, TasksStarted)] == [("a",)]
    assert of(cmds, ScheduleStartReport)  # b is still to report
    cmds = w.handle(StartReportDue("tick-3"))  # a thread took b meanwhile
    assert [c.keys for c in of(cmds, TasksStarted)] == [("b",)]
    assert not of(cmds, ScheduleStartReport)
