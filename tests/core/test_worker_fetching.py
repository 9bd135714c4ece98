"""The pure worker machine fetching inputs: requests per peer and their
limits, peers that fail, asking the scheduler who has a key, cancelled
fetches wanted again.  Events in, commands out."""

from __future__ import annotations

from taskmill.core.worker.events import (
    AskWhoHas,
    DeleteData,
    Execute,
    Fetch,
    FetchFailed,
    FetchSucceeded,
    WhoHasAnswered,
)
from taskmill.protocol.vocabulary import AcquireReplicas, AddKeys, FreeKeys, MissingData
from tests.core.test_worker_state import ME, A, B, C, compute, executed, of, ok, ws


def got(peer: str, *keys: str, stim: str = "got") -> FetchSucceeded:
    """``peer`` answered with every key of ``keys`` (10 bytes each)."""
    return FetchSucceeded(stim, peer, keys, {k: 10 for k in keys})


def fetches(cmds: list) -> list[tuple[str, tuple[str, ...]]]:
    return [(f.peer, f.keys) for f in of(cmds, Fetch)]


def test_keys_past_the_per_request_limit_go_in_the_next_request_to_that_peer_by_priority() -> None:
    w = ws(max_fetch_keys_per_request=2)
    cmds = w.handle(*[compute(f"t{i}", {f"d{i}": (A,)}, priority=(i,)) for i in (4, 2, 0, 3, 1)])
    assert fetches(cmds) == [(A, ("d0", "d1"))]
    assert fetches(w.handle(got(A, "d0", "d1"))) == [(A, ("d2", "d3"))]
    assert fetches(w.handle(got(A, "d2", "d3"))) == [(A, ("d4",))]


def test_no_more_peers_than_the_concurrency_limit_are_asked_at_once() -> None:
    w = ws(nthreads=3, max_concurrent_fetches=2)
    cmds = w.handle(compute("ta", {"x": (A,)}, priority=(0,)), compute("tb", {"y": (B,)}, priority=(1,)),
                    compute("tc", {"z": (C,)}, priority=(2,)))
    assert fetches(cmds) == [(A, ("x",)), (B, ("y",))]
    assert w.task_state("z") == "fetch"
    cmds = w.handle(got(B, "y"))
    assert fetches(cmds) == [(C, ("z",))] and executed(cmds) == ["tb"]


def test_a_busy_peer_gets_one_request_at_a_time() -> None:
    w = ws()
    assert fetches(w.handle(compute("t1", {"x": (A,)}))) == [(A, ("x",))]
    assert fetches(w.handle(compute("t2", {"y": (A,)}))) == []
    assert w.task_state("y") == "fetch"
    assert fetches(w.handle(got(A, "x"))) == [(A, ("y",))]


def test_the_keys_of_one_request_are_ordered_by_the_priority_of_their_tasks() -> None:
    w = ws()
    cmds = w.handle(compute("late", {"x": (A,)}, priority=(5,)), compute("soon", {"y": (A,)}, priority=(1,)))
    assert fetches(cmds) == [(A, ("y", "x"))]


def test_every_key_of_an_unreachable_peer_goes_to_its_other_holder_in_one_request() -> None:
    w = ws()
    assert fetches(w.handle(compute("t", {"x": (A, B), "y": (A, B)}))) == [(A, ("x", "y"))]
    cmds = w.handle(FetchFailed("down", A, ("x", "y"), "connection refused"))
    assert of(cmds, MissingData) == [MissingData("down", ME, A, ("x", "y"))]
    assert fetches(cmds) == [(B, ("x", "y"))] and not of(cmds, AskWhoHas)


def test_keys_whose_every_holder_failed_are_asked_for_in_one_who_has() -> None:
    w = ws()
    assert len(fetches(w.handle(compute("t", {"x": (A,), "y": (B,)})))) == 2
    cmds = w.handle(FetchFailed("a-down", A, ("x",), "reset"), FetchFailed("b-down", B, ("y",), "reset"))
    assert of(cmds, AskWhoHas) == [AskWhoHas("b-down", ("x", "y"))]
    assert {w.task_state("x"), w.task_state("y")} == {"missing"}


def test_an_unreachable_peer_with_only_queued_keys_sends_them_missing_without_blame() -> None:
    w = ws(max_concurrent_fetches=1)
    w.handle(compute("t1", {"x": (B,)}, priority=(0,)), compute("t2", {"y": (A,)}, priority=(1,)))
    assert w.task_state("y") == "fetch"
    cmds = w.handle(FetchFailed("a-down", A, (), "refused"))
    assert not of(cmds, MissingData)  # nothing was asked of A
    assert of(cmds, AskWhoHas) == [AskWhoHas("a-down", ("y",))] and w.task_state("y") == "missing"


def test_a_who_has_answer_naming_only_this_worker_leaves_the_key_missing() -> None:
    w = ws()
    w.handle(compute("t", {"x": (A,)}))
    w.handle(FetchFailed("down", A, ("x",), "refused"))
    assert w.handle(WhoHasAnswered("who", {"x": (ME,)})) == []
    assert w.task_state("x") == "missing" and not w.tasks["x"].who_has


def test_a_who_has_answer_adds_holders_to_a_key_still_queued_and_strikes_none_off() -> None:
    """An answer may be older than what the worker learnt since: it only adds."""
    w = ws(max_concurrent_fetches=1)
    w.handle(compute("t1", {"x": (C,)}, priority=(0,)), compute("t2", {"y": (A,)}, priority=(1,)))
    assert w.handle(WhoHasAnswered("who", {"y": (B,)})) == []  # the only slot is busy
    assert list(w.tasks["y"].who_has) == [A, B]
    assert fetches(w.handle(got(C, "x"))) == [(A, ("y",))]


def test_a_who_has_answer_for_a_key_no_longer_fetched_is_ignored() -> None:
    w = ws()
    w.handle(compute("t", {"x": (A,)}))
    w.handle(got(A, "x"))
    assert w.handle(WhoHasAnswered("late", {"x": (B,), "gone": (B,)})) == []
    assert ("x", "ignored", "who-has answer while memory", "late") in w.story("x")


def test_a_cancelled_fetch_whose_peer_fails_is_forgotten_then_fetched_afresh_when_wanted() -> None:
    w = ws()
    w.handle(compute("t", {"d": (A,)}))
    w.handle(FreeKeys("free", ME, ("t",)))
    assert w.task_state("d") == "cancelled"
    w.handle(FetchFailed("down", A, ("d",), "reset"))
    assert w.task_state("d") is None and not w.tasks
    assert fetches(w.handle(compute("u", {"d": (B,)}))) == [(B, ("d",))]


def test_a_cancelled_fetch_wanted_again_as_a_copy_is_kept_and_announced() -> None:
    w = ws()
    w.handle(compute("t", {"d": (A,)}))
    w.handle(FreeKeys("free", ME, ("t",)))
    assert w.handle(AcquireReplicas("copy", ME, {"d": (A,)}, {"d": 10})) == []  # already on its way
    assert w.task_state("d") == "flight"
    assert w.handle(got(A, "d")) == [AddKeys("got", ME, {"d": 10})]
    assert w.in_memory == {"d"}


def test_an_input_of_two_tasks_is_fetched_once_announced_once_and_kept_after_both_ran() -> None:
    w = ws(nthreads=2)
    cmds = w.handle(compute("t1", {"d": (A,)}), compute("t2", {"d": (A,)}))
    assert fetches(cmds) == [(A, ("d",))]
    cmds = w.handle(got(A, "d"))
    assert of(cmds, AddKeys) == [AddKeys("got", ME, {"d": 10})] and executed(cmds) == ["t1", "t2"]
    cmds = w.handle(ok("t1"), ok("t2"))
    assert not of(cmds, DeleteData) and "d" in w.in_memory  # the scheduler frees it


def test_an_input_arriving_from_another_peer_first_makes_the_late_answer_a_duplicate() -> None:
    w = ws()
    assert fetches(w.handle(compute("t", {"x": (A, B)}))) == [(A, ("x",))]
    cmds = w.handle(FetchSucceeded("b-answer", B, (), {"x": 10}))  # B answered an older request
    assert executed(cmds) == ["t"] and of(cmds, AddKeys) == [AddKeys("b-answer", ME, {"x": 10})]
    assert w.handle(got(A, "x", stim="a-answer")) == []
    assert ("x", "ignored", f"duplicate data from {A}", "a-answer") in w.story("x")


def test_the_execute_after_a_fetch_lists_local_and_fetched_inputs() -> None:
    w = ws()
    w.handle(compute("here"))
    w.handle(ok("here"))
    cmds = w.handle(compute("t", {"here": (ME,), "there": (A,)}))
    assert fetches(cmds) == [(A, ("there",))]
    (run,) = of(w.handle(got(A, "there")), Execute)
    assert set(run.dependencies) == {"here", "there"}
