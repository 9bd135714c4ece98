"""The worker machine's thread count under ``secede()``/``rejoin()`` (taskmill/core/worker/secession.py)."""

from __future__ import annotations

from test_worker_state import compute, err, executed, ok, of, ws

from taskmill.core.worker.events import PauseChanged, RejoinGranted, RejoinRequested, TaskSeceded
from taskmill.protocol.vocabulary import FreeKeys, Seceded, TaskFinished

ME = "tcp://me:1"


def secede(key: str) -> TaskSeceded:
    return TaskSeceded(f"secede-{key}", key)


def rejoin(key: str) -> RejoinRequested:
    return RejoinRequested(f"rejoin-{key}", key)


def granted(cmds: list) -> list[str]:
    return [c.key for c in of(cmds, RejoinGranted)]


def told(cmds: list) -> list[tuple[str, bool]]:
    return [(c.key, c.seceded) for c in of(cmds, Seceded)]


def test_secede_starts_the_next_ready_task_and_tells_the_scheduler() -> None:
    w = ws(nthreads=1)
    assert executed(w.handle(compute("parent"), compute("child"))) == ["parent"]
    cmds = w.handle(secede("parent"))
    assert told(cmds) == [("parent", True)]
    assert executed(cmds) == ["child"]
    assert w.executing == {"parent", "child"} and list(w.seceded) == ["parent"]
    assert w.busy_threads == 1


def test_rejoin_waits_for_a_free_thread_and_goes_before_ready_tasks() -> None:
    w = ws(nthreads=1)
    w.handle(compute("parent"), compute("child"), compute("other"))
    w.handle(secede("parent"))  # child runs
    cmds = w.handle(rejoin("parent"))
    assert granted(cmds) == [] and list(w.rejoining) == ["parent"]
    cmds = w.handle(ok("child"))
    assert granted(cmds) == ["parent"] and executed(cmds) == []  # the rejoiner took the thread
    assert told(cmds) == [("parent", False)]
    assert not w.seceded and not w.rejoining and w.ready_count == 1
    cmds = w.handle(ok("parent"))
    assert executed(cmds) == ["other"]


def test_rejoin_with_a_free_thread_is_granted_at_once() -> None:
    w = ws(nthreads=1)
    w.handle(compute("parent"))
    w.handle(secede("parent"))
    cmds = w.handle(rejoin("parent"))
    assert granted(cmds) == ["parent"] and told(cmds) == [("parent", False)]
    assert w.busy_threads == 1


def test_rejoiners_are_served_first_come_first_served() -> None:
    w = ws(nthreads=1)
    w.handle(compute("a"), compute("b"), compute("c"))
    w.handle(secede("a"))  # b runs
    w.handle(secede("b"))  # c runs
    w.handle(rejoin("b"), rejoin("a"))
    assert granted(w.handle(ok("c"))) == ["b"]
    assert granted(w.handle(ok("b"))) == ["a"]


def test_a_task_that_ends_seceded_leaves_no_trace() -> None:
    w = ws(nthreads=1)
    w.handle(compute("a"), compute("b"))
    w.handle(secede("a"))
    cmds = w.handle(err("a"))
    assert not w.seceded and w.executing == {"b"}
    assert ("a", True) not in told(cmds)
    assert [c.key for c in of(w.handle(ok("b")), TaskFinished)] == ["b"]


def test_rejoin_is_granted_while_paused_but_new_tasks_wait() -> None:
    w = ws(nthreads=1)
    w.handle(compute("a"), compute("b"))
    w.handle(secede("a"))
    w.handle(PauseChanged("pause", True), compute("c"))
    cmds = w.handle(rejoin("a"), ok("b"))
    assert granted(cmds) == ["a"] and executed(cmds) == []


def test_secede_of_a_cancelled_run_keeps_counting_until_it_ends() -> None:
    w = ws(nthreads=1)
    w.handle(compute("a"), compute("b"))
    w.handle(secede("a"))
    w.handle(FreeKeys("free", ME, ("a",)))
    assert w.task_state("a") == "cancelled" and "a" in w.seceded
    w.handle(ok("a"))
    assert not w.seceded and w.task_state("a") is None


def test_stale_secede_and_rejoin_of_unknown_runs() -> None:
    w = ws(nthreads=1)
    assert w.handle(secede("ghost")) == []
    assert granted(w.handle(rejoin("ghost"))) == ["ghost"]  # its thread must not block for ever
    assert [e[1] for e in w.story("ghost")] == ["ignored", "ignored"]


def test_story_shows_secede_and_rejoin() -> None:
    w = ws(nthreads=1)
    w.handle(compute("a"))
    w.handle(secede("a"))
    w.handle(rejoin("a"))
    notes = [e[2] for e in w.story("a") if e[1] == "note"]
    assert notes == ["seceded: its thread no longer counts", "asks to rejoin: waits for a thread",
                     "rejoined: its thread counts again"]


def test_a_seceded_run_adopted_again_is_announced_again() -> None:
    w = ws(nthreads=1)
    w.handle(compute("a"))
    w.handle(secede("a"))
    w.handle(FreeKeys("free", ME, ("a",)))  # cancelled; the scheduler forgets its secession
    cmds = w.handle(compute("a"))  # back here: the run goes on, still seceded
    assert w.task_state("a") == "executing" and told(cmds) == [("a", True)]
    assert told(w.handle(compute("a"))) == []  # a duplicate request says nothing new
