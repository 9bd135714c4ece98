"""The worker machine's answer to a steal request: a task that has not
started is given up (and never run here), anything else is kept."""

from __future__ import annotations

from taskmill.core.worker.events import Execute, Fetch
from taskmill.protocol.vocabulary import ComputeTask, StealRequest, StealResponse

from test_worker_state import A, ME, compute, executed, of, ok, ws


def steal(key: str, epoch: int = 7) -> StealRequest:
    return StealRequest(f"steal-{key}", ME, key, epoch)


def answer(cmds: list[object]) -> StealResponse:
    (response,) = of(cmds, StealResponse)  # type: ignore[arg-type]
    return response


def test_a_ready_task_is_given_up_and_never_runs_here() -> None:
    w = ws(nthreads=1)
    w.handle(compute("x"), compute("y", token="tok"))  # x runs, y waits for the thread
    cmds = w.handle(steal("y", epoch=9))
    assert answer(cmds) == StealResponse("steal-y", ME, "y", True, seen=9)
    assert w.task_state("y") is None
    assert executed(w.handle(ok("x"))) == []  # the thread frees: nothing left to run


def test_a_task_waiting_for_its_inputs_is_given_up_with_its_fetch() -> None:
    w = ws()
    cmds = w.handle(compute("y", who_has={"in": (A,)}))
    assert of(cmds, Fetch)
    assert answer(w.handle(steal("y"))).stolen
    assert w.task_state("y") is None
    assert w.task_state("in") in (None, "cancelled")  # nobody here needs it any more


def test_a_running_task_is_kept() -> None:
    w = ws()
    assert executed(w.handle(compute("x"))) == ["x"]
    response = answer(w.handle(steal("x")))
    assert not response.stolen
    assert w.task_state("x") == "executing"
    assert any(type(c).__name__ == "TaskFinished" for c in w.handle(ok("x")))


def test_a_finished_or_unknown_task_is_kept_where_it_is() -> None:
    w = ws()
    w.handle(compute("x"))
    w.handle(ok("x"))
    assert not answer(w.handle(steal("x"))).stolen
    assert w.task_state("x") == "memory"
    assert not answer(w.handle(steal("nothing"))).stolen


def test_an_input_of_a_task_here_keeps_its_place_as_an_input() -> None:
    w = ws(nthreads=1)
    w.handle(compute("busy"))
    w.handle(compute("a"))  # ready, behind busy
    w.handle(ComputeTask("compute-b", ME, "b", "tok", None, ("args", "b"), {"a": (ME,)}, {"a": 8},
                         (0,)))
    assert answer(w.handle(steal("a"))).stolen
    # a is now fetched from wherever the scheduler computes it, for b here
    assert w.task_state("a") in ("fetch", "missing")
    assert w.task_state("b") == "waiting"


def test_a_stolen_task_assigned_here_again_runs_once() -> None:
    w = ws(nthreads=1)
    w.handle(compute("busy"), compute("y"))
    w.handle(steal("y"))
    w.handle(compute("y"))
    cmds = w.handle(ok("busy"))
    assert executed(cmds) == ["y"]
    assert [c.key for c in of(cmds, Execute)] == ["y"]
