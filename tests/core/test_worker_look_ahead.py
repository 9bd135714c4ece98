"""The worker machine holding a task sent ahead (look-ahead): its input is
computed here, so it waits for it without fetching and starts the moment it
is in memory, in the same step as the input's ``TaskFinished``."""

from __future__ import annotations

from taskmill.core.worker.events import AskWhoHas, Execute, Fetch
from taskmill.protocol.vocabulary import FreeKeys, TaskErred, TaskFinished

from test_worker_state import compute, err, executed, of, ok, ws


def test_a_task_sent_ahead_waits_for_its_local_input_and_starts_with_its_finish() -> None:
    w = ws()
    assert executed(w.handle(compute("x"))) == ["x"]
    cmds = w.handle(compute("y", {"x": ()}))
    assert cmds == [] and w.tasks["y"].state == "waiting"  # no fetch, no question
    cmds = w.handle(ok("x"))
    assert [type(c) for c in cmds if isinstance(c, (TaskFinished, Execute))] == [TaskFinished, Execute]
    assert of(cmds, TaskFinished)[0].key == "x" and executed(cmds) == ["y"]
    assert [c.key for c in of(w.handle(ok("y")), TaskFinished)] == ["y"]


def test_a_chain_sent_ahead_runs_link_after_link_with_one_thread() -> None:
    w = ws()
    w.handle(compute("a"), compute("b", {"a": ()}), compute("c", {"b": ()}))
    assert w.tasks["c"].state == "waiting"
    assert executed(w.handle(ok("a"))) == ["b"]
    assert executed(w.handle(ok("b"))) == ["c"]


def test_an_input_failing_here_leaves_its_dependent_waiting_until_freed() -> None:
    w = ws()
    w.handle(compute("x"))
    cmds = w.handle(compute("y", {"x": ()}), err("x"))
    assert [c.key for c in of(cmds, TaskErred)] == ["x"] and not executed(cmds)
    assert w.tasks["y"].state == "waiting"
    cmds = w.handle(FreeKeys("free-y", "tcp://me:1", ("y",), 5))
    assert "y" not in w.tasks and not of(cmds, AskWhoHas) and not of(cmds, Fetch)


def test_a_dependent_sent_after_its_local_input_failed_waits_without_asking() -> None:
    w = ws()
    w.handle(compute("x"))
    w.handle(err("x"))
    cmds = w.handle(compute("y", {"x": ()}))
    assert not of(cmds, AskWhoHas) and not of(cmds, Fetch)
    assert w.tasks["x"].state == "error" and w.tasks["y"].state == "waiting"
