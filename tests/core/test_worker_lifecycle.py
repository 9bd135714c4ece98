"""The pure worker machine over a task's life: executing tasks freed and
wanted again, tasks run only for local dependents, data put by a client over
every state, the ready heap's order, and the story.  Events in, commands out."""

from __future__ import annotations

from taskmill.core.worker.events import AskWhoHas, DataPut, DeleteData, Fetch, FetchSucceeded, WhoHasAnswered
from taskmill.core.worker import WorkerState
from taskmill.protocol.vocabulary import AddKeys, FreeKeys, KeysScattered, TaskErred, TaskFinished
from tests.core.test_worker_state import ME, A, compute, err, executed, of, ok, ws


def free(*keys: str) -> FreeKeys:
    return FreeKeys("free", ME, keys)


def put_into(w: WorkerState, **nbytes: int) -> list[object]:
    """A client scatters ``nbytes`` to ``w``: the commands besides the report
    of the keys it stored for that client (``keys-scattered``)."""
    cmds = w.handle(DataPut("put", dict(nbytes), client="c1"))
    reports = [c for c in cmds if isinstance(c, KeysScattered)]
    assert all(r.client == "c1" and r.nbytes.items() <= nbytes.items() for r in reports)
    return [c for c in cmds if not isinstance(c, KeysScattered)]


def scattered_finish(key: str, nbytes: int) -> TaskFinished:
    """What the worker tells the scheduler of an assigned key a client put here."""
    return TaskFinished("put", ME, key, nbytes, "", 0.0, 0.0)


# --------------------------------------------------------------------------- #
# Executing tasks freed, wanted again
# --------------------------------------------------------------------------- #
def test_a_task_freed_while_running_then_wanted_again_reports_its_failure() -> None:
    w = ws()
    w.handle(compute("x"))
    w.handle(free("x"))
    assert w.handle(compute("x")) == [] and w.task_state("x") == "executing"
    assert of(w.handle(err("x")), TaskErred)[0].key == "x"
    assert w.task_state("x") == "error"


def test_a_task_freed_again_after_being_wanted_again_drops_its_result() -> None:
    w = ws()
    w.handle(compute("x"))
    w.handle(free("x"), compute("x"), free("x"))
    assert w.task_state("x") == "cancelled"
    assert w.handle(ok("x")) == [DeleteData("done-x", ("x",))]
    assert w.tasks == {} and w.executing_count == 0


def test_a_cancelled_run_needed_by_a_new_local_task_is_kept_for_it_and_not_reported() -> None:
    w = ws(nthreads=2)
    w.handle(compute("x"))
    w.handle(free("x"))
    assert w.handle(compute("y", {"x": ()})) == []  # x is coming: y waits for the run
    assert w.task_state("x") == "executing" and w.task_state("y") == "waiting"
    cmds = w.handle(ok("x"))
    assert not of(cmds, TaskFinished) and executed(cmds) == ["y"]
    assert of(w.handle(ok("y")), DeleteData) == [DeleteData("done-y", ("x",))]  # only y needed it
    assert set(w.tasks) == {"y"}


def test_a_task_run_only_for_a_local_dependent_that_fails_is_asked_for_not_reported() -> None:
    w = ws()
    w.handle(compute("x"), compute("y", {"x": ()}))
    w.handle(free("x"))  # the scheduler now has x elsewhere; y here still needs it
    cmds = w.handle(err("x"))
    assert not of(cmds, TaskErred)
    assert of(cmds, AskWhoHas) == [AskWhoHas("err-x", ("x",))] and w.task_state("x") == "missing"
    assert w.handle(WhoHasAnswered("who", {"x": (A,)})) == [Fetch("who", A, ("x",))]
    assert executed(w.handle(FetchSucceeded("got", A, ("x",), {"x": 3}))) == ["y"]


def test_a_task_run_only_for_a_local_dependent_that_succeeds_feeds_it_silently() -> None:
    w = ws()
    w.handle(compute("x"), compute("y", {"x": ()}))
    w.handle(free("x"))
    cmds = w.handle(ok("x"))
    assert not of(cmds, TaskFinished) and executed(cmds) == ["y"]


def test_a_ready_task_freed_and_requested_again_runs_once() -> None:
    w = ws()
    w.handle(compute("a"), compute("b"))
    w.handle(free("b"), compute("b"))
    assert w.ready_count == 1
    assert executed(w.handle(ok("a"))) == ["b"]
    assert executed(w.handle(ok("b"))) == [] and w.ready_count == 0


# --------------------------------------------------------------------------- #
# Data put by a client (scatter) over every state
# --------------------------------------------------------------------------- #
def test_data_put_for_a_waiting_task_stands_for_its_result_and_drops_its_inputs() -> None:
    w = ws()
    w.handle(compute("t", {"d": (A,)}))
    assert put_into(w, t=5) == [scattered_finish("t", 5)]
    assert w.task_state("t") == "memory" and w.task_state("d") == "cancelled"
    assert w.handle(FetchSucceeded("got", A, ("d",), {"d": 1})) == [DeleteData("got", ("d",))]


def test_data_put_for_a_ready_task_stands_for_its_result_and_it_never_runs() -> None:
    w = ws()
    w.handle(compute("busy"), compute("t"))
    assert put_into(w, t=5) == [scattered_finish("t", 5)]
    assert w.ready_count == 0
    assert executed(w.handle(ok("busy"))) == []


def test_data_put_for_a_running_task_is_ignored_and_the_run_reports() -> None:
    w = ws()
    w.handle(compute("t"))
    assert put_into(w, t=5) == []
    assert w.task_state("t") == "executing"
    assert of(w.handle(ok("t", 7)), TaskFinished)[0].nbytes == 7
    assert w.nbytes_in_memory == 7


def test_data_put_for_a_missing_input_lets_its_task_run() -> None:
    w = ws()
    w.handle(compute("t", {"d": ()}))
    assert w.task_state("d") == "missing"
    assert executed(put_into(w, d=4)) == ["t"]
    assert w.task_state("d") == "memory" and w.handle(WhoHasAnswered("late", {"d": (A,)})) == []


def test_data_put_for_an_input_in_flight_makes_the_late_answer_a_duplicate() -> None:
    w = ws()
    w.handle(compute("t", {"d": (A,)}))
    assert executed(put_into(w, d=4)) == ["t"]
    assert w.handle(FetchSucceeded("got", A, ("d",), {"d": 4})) == []


def test_data_put_for_a_cancelled_fetch_is_kept_and_the_late_answer_is_dropped() -> None:
    w = ws()
    w.handle(compute("t", {"d": (A,)}))
    w.handle(free("t"))
    assert put_into(w, d=4) == [] and w.task_state("d") == "memory"
    assert w.handle(FetchSucceeded("got", A, ("d",), {"d": 4})) == []
    assert w.in_memory == {"d"}


def test_data_put_for_a_key_already_here_updates_its_size() -> None:
    w = ws()
    w.handle(compute("t"))
    w.handle(ok("t", 10))
    assert put_into(w, t=30) == []
    assert w.nbytes_in_memory == 30 and w.tasks["t"].nbytes == 30


def test_data_put_for_a_key_that_failed_here_replaces_the_error() -> None:
    w = ws()
    w.handle(compute("t"))
    w.handle(err("t"))
    assert put_into(w, t=6) == []  # the scheduler learns of it from the client
    assert w.task_state("t") == "memory" and w.nbytes_in_memory == 6


def test_data_put_for_an_unknown_key_is_kept_until_freed() -> None:
    w = ws()
    assert put_into(w, s=9) == []
    assert w.in_memory == {"s"}
    assert w.handle(free("s")) == [DeleteData("free", ("s",))]


# --------------------------------------------------------------------------- #
# The ready heap
# --------------------------------------------------------------------------- #
def test_a_task_made_ready_by_an_arriving_input_overtakes_worse_ready_tasks() -> None:
    w = ws()
    w.handle(compute("running"), compute("meh-1", priority=(5,)), compute("meh-2", priority=(5,)))
    w.handle(compute("urgent", {"d": (A,)}, priority=(1,)))
    w.handle(FetchSucceeded("got", A, ("d",), {"d": 1}))
    assert executed(w.handle(ok("running"))) == ["urgent"]
    assert executed(w.handle(ok("urgent"))) == ["meh-1"]


def test_a_retried_task_queues_by_its_priority_among_ready_ones() -> None:
    w = ws()
    w.handle(compute("x", priority=(3,)))
    w.handle(compute("a", priority=(2,)), compute("b", priority=(4,)))
    assert executed(w.handle(err("x"))) == ["a"]
    assert w.handle(compute("x", priority=(3,))) == []  # the retry: ready again
    assert executed(w.handle(ok("a"))) == ["x"]
    assert executed(w.handle(ok("x"))) == ["b"]


# --------------------------------------------------------------------------- #
# The story
# --------------------------------------------------------------------------- #
def test_the_story_of_a_fetched_input_names_each_stimulus() -> None:
    w = ws()
    w.handle(compute("t", {"d": (A,)}))
    w.handle(FetchSucceeded("got", A, ("d",), {"d": 1}))
    assert w.story("d") == [("d", "released", "fetch", "compute-t"), ("d", "fetch", "flight", "compute-t"),
                            ("d", "flight", "memory", "got")]


def test_the_story_records_events_that_changed_nothing_and_why() -> None:
    w = ws()
    w.handle(compute("t"))
    w.handle(ok("t"), ok("t"))
    w.handle(compute("t"))
    assert w.story("t")[-2:] == [("t", "ignored", "execution result while memory", "done-t"),
                                 ("t", "note", "compute requested: already in memory", "compute-t")]


def test_a_freed_key_kept_as_an_input_says_so_in_its_story() -> None:
    w = ws()
    w.handle(compute("x"), compute("y", {"x": ()}))
    w.handle(free("x"))
    assert w.story("x")[-1] == ("x", "note", "freed but kept: input of a task here", "free")
    assert of(w.handle(ok("x")), AddKeys) == []
