"""Fast, synchronous tests of the pure worker state machine."""

from __future__ import annotations

from typing import Any, Mapping

import pytest

from taskmill.core.worker.events import (
    AskWhoHas,
    CancelExecution,
    DataPut,
    DeleteData,
    Execute,
    ExecuteFailed,
    ExecuteSucceeded,
    Fetch,
    FetchFailed,
    FetchSucceeded,
    ScheduleStartReport,
    WhoHasAnswered,
    WorkerCommand,
)
from taskmill.protocol.vocabulary import (
    AddKeys,
    ComputeTask,
    FreeKeys,
    KeysScattered,
    MissingData,
    TaskErred,
    TaskFinished,
)
from taskmill.core.worker.state import InvalidWorkerState, InvalidWorkerTransition, WorkerState

ME = "tcp://me:1"
A = "tcp://a:1"
B = "tcp://b:1"
C = "tcp://c:1"


def ws(nthreads: int = 1, **kw: Any) -> WorkerState:
    return WorkerState(ME, nthreads, validate=True, **kw)


def compute(
    key: str,
    who_has: Mapping[str, tuple[str, ...]] | None = None,
    priority: tuple[int, ...] = (0,),
    func: Any = "f",
    token: str = "tok",
) -> ComputeTask:
    deps = dict(who_has or {})
    return ComputeTask(
        f"compute-{key}", ME, key, token, func, ("args", key), deps, {k: 10 for k in deps}, priority
    )


def ok(key: str, nbytes: int = 8) -> ExecuteSucceeded:
    return ExecuteSucceeded(f"done-{key}", key, nbytes, "int", 1.0, 2.0)


def err(key: str) -> ExecuteFailed:
    return ExecuteFailed(f"err-{key}", key, "exc", "tb", "ZeroDivisionError", 1.0, 2.0)


def of(cmds: list[WorkerCommand], kind: type) -> list[Any]:
    return [c for c in cmds if isinstance(c, kind)]


def executed(cmds: list[WorkerCommand]) -> list[str]:
    return [c.key for c in of(cmds, Execute)]


# --------------------------------------------------------------------------- #
# Running tasks
# --------------------------------------------------------------------------- #
def test_single_task_ready_execute_finish() -> None:
    w = ws()
    cmds = w.handle(compute("x"))
    assert cmds == [Execute("compute-x", "x", "tok", "f", ("args", "x"), ()),
                    ScheduleStartReport("compute-x")]
    assert w.task_state("x") == "executing"
    assert w.executing_count == 1
    cmds = w.handle(ok("x", 100))
    assert cmds == [TaskFinished("done-x", ME, "x", 100, "int", 1.0, 2.0)]
    assert w.task_state("x") == "memory"
    assert w.in_memory == {"x"} and w.nbytes_in_memory == 100
    assert [(s, f) for _, s, f, _ in w.story("x")] == [
        ("released", "ready"),
        ("ready", "executing"),
        ("executing", "memory"),
    ]


def test_nthreads_limit_and_priority_order() -> None:
    w = ws(nthreads=2)
    cmds = w.handle(
        compute("low", priority=(5,)),
        compute("high", priority=(1,)),
        compute("mid1", priority=(3,)),
        compute("mid2", priority=(3,)),
        compute("first", priority=(0,)),
    )
    assert executed(cmds) == ["first", "high"]
    assert w.executing_count == 2 and w.ready_count == 3
    assert executed(w.handle(ok("high"))) == ["mid1"]  # ties: FIFO
    assert executed(w.handle(err("first"))) == ["mid2"]
    assert executed(w.handle(ok("mid1"))) == ["low"]
    assert executed(w.handle(ok("mid2"))) == []


def test_execution_failure_reports_error() -> None:
    w = ws()
    w.handle(compute("x"))
    cmds = w.handle(err("x"))
    assert cmds == [TaskErred("err-x", ME, "x", "exc", "tb", "ZeroDivisionError", 1.0, 2.0)]
    assert w.task_state("x") == "error"
    # a new request for an erred key is a retry
    assert executed(w.handle(compute("x"))) == ["x"]


def test_function_sent_once_per_token() -> None:
    w = ws(nthreads=1)
    # the second task carries no function and has the better priority
    cmds = w.handle(compute("a", priority=(2,), func="F"), compute("b", priority=(1,), func=None))
    assert of(cmds, Execute)[0].key == "b" and of(cmds, Execute)[0].func == "F"
    cmds = w.handle(ok("b"))
    assert of(cmds, Execute)[0].key == "a" and of(cmds, Execute)[0].func is None


def test_first_execute_of_a_token_carries_the_function_later_ones_none() -> None:
    w = ws(nthreads=2)
    cmds = w.handle(compute("a", func="F", token="t1"), compute("b", func=None, token="t1"),
                    compute("c", func="G", token="t2"))
    assert [(c.key, c.func_token, c.func) for c in of(cmds, Execute)] == [("a", "t1", "F"), ("b", "t1", None)]
    cmds = w.handle(ok("a"))
    assert [(c.key, c.func) for c in of(cmds, Execute)] == [("c", "G")]  # another token: its own function
    w.handle(ok("b"), ok("c"))
    # a resend of the function after delivery is not delivered again; nor is a retry's
    cmds = w.handle(compute("d", func="F", token="t1"))
    assert [(c.key, c.func) for c in of(cmds, Execute)] == [("d", None)]
    w.handle(err("d"))
    assert [(c.key, c.func) for c in of(w.handle(compute("d", func=None, token="t1")), Execute)] == [("d", None)]
    assert w._funcs == {}


def test_task_freed_before_running_keeps_the_function_for_its_token() -> None:
    w = ws(nthreads=1)
    w.handle(compute("busy", token="other"))
    # the task that brought the function is freed while it waits (ready, or for an input)
    w.handle(compute("a", func="F", token="t"), compute("w", {"d": (A,)}, func="F", token="t2"))
    w.handle(FreeKeys("free", ME, ("a", "w")))
    assert w.task_state("a") is None and w.task_state("w") is None
    w.handle(compute("b", func=None, token="t"), compute("x", func=None, token="t2"))
    cmds = w.handle(ok("busy"))
    assert [(c.key, c.func) for c in of(cmds, Execute)] == [("b", "F")]
    cmds = w.handle(ok("b"))
    assert [(c.key, c.func) for c in of(cmds, Execute)] == [("x", "F")]


def test_function_that_came_for_a_key_already_here_is_kept_for_its_token() -> None:
    w = ws(nthreads=1)
    w.handle(compute("a", func="F", token="t1"))
    w.handle(ok("a"))
    # "a" is asked for again (its last report crossed a free) with the first task of t2
    cmds = w.handle(compute("a", func="G", token="t2"))
    assert of(cmds, TaskFinished) and not of(cmds, Execute)
    cmds = w.handle(compute("b", func=None, token="t2"))
    assert [(c.key, c.func_token, c.func) for c in of(cmds, Execute)] == [("b", "t2", "G")]
    assert w._funcs == {}


def test_function_that_came_with_a_task_adopted_while_running_is_kept() -> None:
    w = ws(nthreads=1)
    w.handle(compute("a", token="t0"), compute("t", {"a": (A,)}, token="t0"))  # a runs, t needs it
    w.handle(FreeKeys("free", ME, ("a",)))  # kept running: t needs it
    assert w.task_state("a") == "executing"
    w.handle(compute("a", func="G", token="t2"))  # adopted, not run again
    cmds = w.handle(ok("a"))
    assert [(c.key, c.func) for c in of(cmds, Execute)] == [("t", None)]
    w.handle(compute("b", func=None, token="t2"))
    cmds = w.handle(ok("t"))
    assert [(c.key, c.func) for c in of(cmds, Execute)] == [("b", "G")]


def test_task_computed_after_its_fetch_fails_carries_the_function() -> None:
    w = ws()
    w.handle(compute("t", {"x": (A,)}))  # x in flight from A
    w.handle(compute("x", func="FX", token="tx"))  # the scheduler now wants x computed here
    assert w.task_state("x") == "flight"
    cmds = w.handle(FetchFailed("gone", A, ("x",), "closed"))
    assert [(c.key, c.func_token, c.func) for c in of(cmds, Execute)] == [("x", "tx", "FX")]


# --------------------------------------------------------------------------- #
# Dependencies
# --------------------------------------------------------------------------- #
def test_one_fetch_per_peer_for_many_keys() -> None:
    w = ws()
    events = [compute(f"t{i}", {f"d{i}": (A,), f"e{i}": (B,), f"s{i}": (A, B)}) for i in range(50)]
    cmds = w.handle(*events)
    fetches = of(cmds, Fetch)
    assert len(fetches) == 2, fetches
    assert {f.peer for f in fetches} == {A, B}
    got = sorted(k for f in fetches for k in f.keys)
    assert got == sorted(f"{p}{i}" for i in range(50) for p in "des")  # each key once
    assert not of(cmds, Execute)
    assert all(w.task_state(f"t{i}") == "waiting" for i in range(50))
    for f in fetches:
        cmds = w.handle(FetchSucceeded("got-" + f.peer, f.peer, f.keys, {k: 5 for k in f.keys}))
        assert of(cmds, AddKeys) == [AddKeys("got-" + f.peer, ME, {k: 5 for k in f.keys})]
    assert w.ready_count == 49 and w.executing_count == 1


def test_key_on_many_peers_fetched_with_others() -> None:
    w = ws()
    cmds = w.handle(compute("t", {"x": (A,), "y": (A, B), "z": (A, C)}))
    assert of(cmds, Fetch) == [Fetch("compute-t", A, ("x", "y", "z"))]


def test_fetch_limits() -> None:
    w = ws(max_fetch_keys_per_request=3, max_concurrent_fetches=2)
    cmds = w.handle(compute("t", {f"d{i}": (A,) for i in range(5)} | {"b": (B,), "c": (C,)}))
    fetches = of(cmds, Fetch)
    assert len(fetches) == 2
    assert [len(f.keys) for f in fetches if f.peer == A] in ([3], [])
    cmds = w.handle(FetchSucceeded("s", fetches[0].peer, fetches[0].keys, {k: 1 for k in fetches[0].keys}))
    assert len(of(cmds, Fetch)) == 1


def test_fetch_prefers_urgent_keys() -> None:
    w = ws(max_concurrent_fetches=1)
    cmds = w.handle(compute("late", {"x": (A,)}, priority=(9,)), compute("soon", {"y": (B,)}, priority=(1,)))
    # both came in one batch: the peer serving the more urgent task goes first
    assert [f.peer for f in of(cmds, Fetch)] == [B]


def test_local_dependencies_not_fetched() -> None:
    w = ws()
    w.handle(compute("x"))
    w.handle(ok("x"))
    cmds = w.handle(compute("y", {"x": (ME,)}))
    assert not of(cmds, Fetch)
    assert of(cmds, Execute)[0].dependencies == ("x",)


def test_dependency_computed_here_is_awaited_not_fetched() -> None:
    w = ws()
    w.handle(compute("blocker"))
    cmds = w.handle(compute("x"), compute("y", {"x": ()}))
    assert not of(cmds, Fetch) and not of(cmds, AskWhoHas)
    assert w.task_state("y") == "waiting"
    w.handle(ok("blocker"))
    assert executed(w.handle(ok("x"))) == ["y"]


def test_fetch_failure_tries_other_holder_then_asks() -> None:
    w = ws()
    cmds = w.handle(compute("t", {"d": (A, B)}))
    (f1,) = of(cmds, Fetch)
    cmds = w.handle(FetchFailed("fail1", f1.peer, f1.keys, "connection refused"))
    assert of(cmds, MissingData) == [MissingData("fail1", ME, f1.peer, ("d",))]
    (f2,) = of(cmds, Fetch)
    assert f2.peer != f1.peer and f2.keys == ("d",)
    cmds = w.handle(FetchFailed("fail2", f2.peer, f2.keys, "timeout"))
    assert of(cmds, MissingData) == [MissingData("fail2", ME, f2.peer, ("d",))]
    assert of(cmds, AskWhoHas) == [AskWhoHas("fail2", ("d",))]
    assert w.task_state("d") == "missing"
    cmds = w.handle(WhoHasAnswered("wh", {"d": ()}))
    assert cmds == [] and w.task_state("d") == "missing"
    cmds = w.handle(WhoHasAnswered("wh2", {"d": (C,)}))
    assert of(cmds, Fetch) == [Fetch("wh2", C, ("d",))]
    cmds = w.handle(FetchSucceeded("s", C, ("d",), {"d": 3}))
    assert executed(cmds) == ["t"]


def test_fetch_failure_removes_peer_for_all_keys() -> None:
    w = ws(max_fetch_keys_per_request=1)
    cmds = w.handle(compute("t", {"d1": (A,), "d2": (A, B)}, priority=(0,)))
    fetches = of(cmds, Fetch)
    assert len(fetches) == 2  # d1 from A (one key per request), d2 from B
    w.handle(FetchFailed("down", B, ("d2",), "gone"))
    cmds = w.handle(FetchFailed("down2", A, ("d1",), "gone"))
    assert set(of(cmds, AskWhoHas)[0].keys) == {"d1", "d2"}


def test_resent_compute_request_brings_new_holders() -> None:
    w = ws()
    w.handle(compute("t", {"d": (A,)}))
    cmds = w.handle(FetchFailed("f", A, ("d",), "down"))
    assert of(cmds, AskWhoHas)
    assert w.handle(WhoHasAnswered("wh", {"d": ()})) == []
    # the scheduler recomputed d on B and resends t
    cmds = w.handle(compute("t", {"d": (B,)}))
    assert of(cmds, Fetch) == [Fetch("compute-t", B, ("d",))]


def test_a_stale_who_has_answer_only_adds_holders() -> None:
    # the answer to a question asked while d was missing arrives after t was
    # freed and sent again with d's new holder B: B stays, A is added
    w = ws()
    w.handle(compute("t", {"d": (A,)}))
    cmds = w.handle(FetchFailed("f", A, ("d",), "down"))
    assert of(cmds, AskWhoHas) == [AskWhoHas("f", ("d",))]
    w.handle(FreeKeys("free", ME, ("t",)))
    assert w.task_state("d") is None
    w.handle(compute("t", {"d": (B,)}))
    assert w.task_state("d") == "flight"
    assert w.handle(WhoHasAnswered("wh", {"d": ()})) == []
    assert w.task_state("d") == "flight" and list(w.tasks["d"].who_has or ()) == [B]
    w.handle(WhoHasAnswered("wh2", {"d": (A,)}))
    assert list(w.tasks["d"].who_has or ()) == [B, A]
    # the stale holder costs one failed fetch at most
    cmds = w.handle(FetchSucceeded("s", B, ("d",), {}))
    assert of(cmds, Fetch) == [Fetch("s", A, ("d",))]
    cmds = w.handle(FetchFailed("f2", A, ("d",), "down"))
    assert of(cmds, AskWhoHas) == [AskWhoHas("f2", ("d",))] and w.task_state("d") == "missing"


def test_an_empty_who_has_answer_keeps_the_holders_of_a_queued_key() -> None:
    w = ws(max_concurrent_fetches=1)
    w.handle(compute("t", {"d": (A,), "e": (A,)}), FetchFailed("f", A, ("d", "e"), "down"))
    w.handle(compute("t", {"d": (B,), "e": (C,)}))  # a resend: e queued behind d's fetch
    assert w.task_state("e") == "fetch"
    assert w.handle(WhoHasAnswered("wh", {"d": (), "e": ()})) == []
    assert w.task_state("e") == "fetch" and list(w.tasks["e"].who_has or ()) == [C]


def test_peer_without_the_key() -> None:
    w = ws()
    cmds = w.handle(compute("t", {"d": (A, B), "e": (A,)}))
    (f,) = of(cmds, Fetch)
    assert f.peer == A and set(f.keys) == {"d", "e"}
    cmds = w.handle(FetchSucceeded("s", A, f.keys, {"e": 4}))
    assert of(cmds, AddKeys) == [AddKeys("s", ME, {"e": 4})]
    assert of(cmds, MissingData) == [MissingData("s", ME, A, ("d",))]
    assert of(cmds, Fetch) == [Fetch("s", B, ("d",))]
    cmds = w.handle(FetchSucceeded("s2", B, ("d",), {}))
    assert of(cmds, MissingData) == [MissingData("s2", ME, B, ("d",))]
    assert of(cmds, AskWhoHas) == [AskWhoHas("s2", ("d",))]


def test_data_for_unneeded_key_deleted() -> None:
    w = ws()
    cmds = w.handle(compute("t", {"d": (A,)}))
    (f,) = of(cmds, Fetch)
    w.handle(FreeKeys("free", ME, ("t",)))
    assert w.task_state("d") == "cancelled"
    cmds = w.handle(FetchSucceeded("s", A, ("d",), {"d": 1}))
    assert cmds == [DeleteData("s", ("d",))]
    assert w.task_state("d") is None and not w.tasks
    # unsolicited data too
    assert w.handle(FetchSucceeded("s2", B, ("zz",), {"zz": 1})) == [DeleteData("s2", ("zz",))]


def test_cancelled_fetch_revived_by_new_dependent() -> None:
    w = ws()
    cmds = w.handle(compute("t", {"d": (A,)}))
    w.handle(FreeKeys("free", ME, ("t",)))
    cmds = w.handle(compute("u", {"d": (A,)}))
    assert not of(cmds, Fetch)  # still in flight
    assert w.task_state("d") == "flight"
    assert executed(w.handle(FetchSucceeded("s", A, ("d",), {"d": 1}))) == ["u"]


# --------------------------------------------------------------------------- #
# Freeing
# --------------------------------------------------------------------------- #
def test_free_while_executing_discards_result() -> None:
    w = ws()
    w.handle(compute("x"), compute("y"))
    cmds = w.handle(FreeKeys("free", ME, ("x",)))
    assert cmds == [CancelExecution("free", "x")]
    assert w.task_state("x") == "cancelled"
    assert w.executing_count == 1  # the thread is still busy
    cmds = w.handle(ok("x"))
    assert of(cmds, DeleteData) == [DeleteData("done-x", ("x",))]
    assert not of(cmds, TaskFinished)
    assert executed(cmds) == ["y"]
    assert w.task_state("x") is None
    # a failure of a cancelled task is not reported either
    w.handle(FreeKeys("free-y", ME, ("y",)))
    assert w.handle(err("y")) == []


def test_free_then_recompute_while_executing_reuses_run() -> None:
    w = ws()
    w.handle(compute("x"))
    w.handle(FreeKeys("free", ME, ("x",)))
    assert w.handle(compute("x")) == []
    assert w.task_state("x") == "executing"
    assert of(w.handle(ok("x")), TaskFinished)


def test_free_ready_and_waiting() -> None:
    w = ws()
    w.handle(compute("busy"), compute("r"), compute("wt", {"d": (A,)}))
    cmds = w.handle(FreeKeys("free", ME, ("r", "wt")))
    assert cmds == []  # d is in flight: dropped when it arrives
    assert w.task_state("r") is None and w.task_state("wt") is None
    assert w.ready_count == 0
    cmds = w.handle(ok("busy"))
    assert executed(cmds) == []
    assert w.handle(FetchSucceeded("s", A, ("d",), {"d": 1})) == [DeleteData("s", ("d",))]


def test_free_memory_key() -> None:
    w = ws()
    w.handle(compute("x"))
    w.handle(ok("x"))
    assert w.handle(FreeKeys("free", ME, ("x", "unknown"))) == [DeleteData("free", ("x",))]
    assert w.in_memory == set() and w.nbytes_in_memory == 0


def test_free_of_key_still_needed_as_dependency() -> None:
    w = ws(nthreads=1)
    w.handle(compute("x"))
    w.handle(ok("x"))
    w.handle(compute("blocker"))
    w.handle(compute("y", {"x": (ME,)}))
    assert w.task_state("y") == "ready"
    cmds = w.handle(FreeKeys("free", ME, ("x",)))
    assert cmds == []  # kept: y needs it
    assert w.task_state("x") == "memory"
    cmds = w.handle(ok("blocker"))
    assert executed(cmds) == ["y"]
    cmds = w.handle(ok("y"))
    # y no longer needs x, and the scheduler already let it go
    assert of(cmds, DeleteData) == [DeleteData("done-y", ("x",))]
    assert w.task_state("x") is None


def test_free_of_fetched_replica() -> None:
    w = ws()
    w.handle(compute("t", {"d": (A,)}))
    w.handle(FetchSucceeded("s", A, ("d",), {"d": 1}))
    w.handle(ok("t"))
    # the scheduler knows the replica (AddKeys): kept until it frees it
    assert w.task_state("d") == "memory"
    assert w.handle(FreeKeys("free", ME, ("d",))) == [DeleteData("free", ("d",))]


def test_free_dependent_releases_queued_inputs() -> None:
    w = ws(max_concurrent_fetches=1)
    w.handle(compute("t", {"d": (A,), "e": (B,)}))
    assert {w.task_state("d"), w.task_state("e")} == {"flight", "fetch"}
    w.handle(FreeKeys("free", ME, ("t",)))
    assert {w.task_state("d"), w.task_state("e")} == {"cancelled", None}


# --------------------------------------------------------------------------- #
# Duplicates, scatter, stale events
# --------------------------------------------------------------------------- #
def test_duplicate_compute_requests() -> None:
    w = ws(nthreads=1)
    assert executed(w.handle(compute("x"), compute("x"))) == ["x"]
    w.handle(compute("y"))
    assert w.handle(compute("y"), compute("x")) == []
    assert w.ready_count == 1
    cmds = w.handle(ok("x"))
    assert of(cmds, TaskFinished)[0].key == "x"
    # already in memory: report again (idempotent)
    cmds = w.handle(compute("x"))
    assert cmds == [TaskFinished("compute-x", ME, "x", 8, "int", 1.0, 2.0)]


def test_scatter_satisfies_waiting_task() -> None:
    w = ws()
    cmds = w.handle(compute("t", {"s": ()}))
    assert of(cmds, AskWhoHas) == [AskWhoHas("compute-t", ("s",))]
    assert w.task_state("s") == "missing"
    cmds = w.handle(DataPut("put", {"s": 50}, "c1"))
    assert executed(cmds) == ["t"]
    assert of(cmds, KeysScattered) == [KeysScattered("put", ME, "c1", {"s": 50})]
    assert w.nbytes_in_memory == 50
    w.handle(ok("t"))
    assert w.task_state("s") == "memory"  # scattered data stays until freed
    assert w.handle(DataPut("put2", {"new": 1}, "c1")) == [KeysScattered("put2", ME, "c1", {"new": 1})]
    assert w.task_state("new") == "memory"


def test_scatter_reports_what_it_stored_with_the_client() -> None:
    w = ws(nthreads=1)
    w.handle(compute("x"))  # executing: the put value will be replaced by the result
    w.handle(compute("t", {"f": (A,)}))  # "f" in flight: the put value replaces the fetch
    cmds = w.handle(DataPut("put", {"x": 1, "f": 2, "new": 3}, "c1"))
    assert of(cmds, KeysScattered) == [KeysScattered("put", ME, "c1", {"f": 2, "new": 3})]
    # scattered again (same key): reported again, the scheduler reconciles
    cmds = w.handle(DataPut("put2", {"new": 4}, "c2"))
    assert cmds == [KeysScattered("put2", ME, "c2", {"new": 4})]
    assert w.nbytes_in_memory == 6


def test_scatter_while_fetching() -> None:
    w = ws()
    w.handle(compute("t", {"s": (A,)}))
    assert executed(w.handle(DataPut("put", {"s": 5}))) == ["t"]
    # the late fetch reply is a duplicate copy: nothing to do
    assert w.handle(FetchSucceeded("s", A, ("s",), {"s": 5})) == []


def test_stale_events_ignored() -> None:
    w = ws()
    assert w.handle(ok("ghost")) == [DeleteData("done-ghost", ("ghost",))]
    assert w.handle(err("ghost")) == []
    assert w.handle(FetchFailed("f", A, ("ghost",), "x")) == []
    assert w.handle(WhoHasAnswered("w", {"ghost": (A,)})) == []
    assert w.handle(FreeKeys("f", ME, ("ghost",))) == []
    w.handle(compute("x"))
    w.handle(ok("x"))
    assert w.handle(ok("x")) == []  # duplicate result
    assert w.story("ghost")


def test_compute_requested_for_key_in_flight_resumes() -> None:
    w = ws()
    w.handle(compute("blocker"))
    w.handle(compute("t", {"d": (A,)}))
    cmds = w.handle(compute("d"))
    assert cmds == [] and w.task_state("d") == "flight"
    cmds = w.handle(FetchSucceeded("s", A, ("d",), {"d": 9}))
    assert of(cmds, TaskFinished) == [TaskFinished("s", ME, "d", 9, "", 0.0, 0.0)]


def test_compute_requested_for_key_in_flight_computes_if_fetch_fails() -> None:
    w = ws(nthreads=2)
    w.handle(compute("t", {"d": (A,)}))
    w.handle(compute("d"))
    cmds = w.handle(FetchFailed("f", A, ("d",), "down"))
    assert executed(cmds) == ["d"]
    cmds = w.handle(ok("d"))
    assert of(cmds, TaskFinished)[0].key == "d"
    assert executed(cmds) == ["t"]


def test_unknown_event_type_rejected() -> None:
    with pytest.raises(TypeError):
        ws().handle(object())  # type: ignore[arg-type]


def test_invalid_transition_raises_with_story() -> None:
    w = ws()
    w.handle(compute("x"))
    with pytest.raises(InvalidWorkerTransition, match="executing -> flight.*story"):
        w._set_state(w.tasks["x"], "flight")
    with pytest.raises(InvalidWorkerTransition, match="story"):
        w._set_state(w.tasks["x"], "waiting")


def test_validate_detects_corruption() -> None:
    w = ws(nthreads=1)
    w.handle(compute("x"), compute("y"))
    w.validate()
    w._ready_count += 1
    with pytest.raises(InvalidWorkerState, match="ready count"):
        w.validate()


def test_story_is_bounded() -> None:
    w = WorkerState(ME, 1, story_size=10)
    for i in range(20):
        w.handle(compute(f"x{i}"))
        w.handle(ok(f"x{i}"))
    assert w.story("x0") == []
    assert [e[2] for e in w.story("x19")] == ["ready", "executing", "memory"]
    assert all(e[3] for e in w.story("x19"))  # every entry names its stimulus


def test_heartbeat_figures() -> None:
    w = ws(nthreads=2)
    w.handle(*(compute(f"x{i}") for i in range(5)))
    assert (w.executing_count, w.ready_count) == (2, 3)
    w.handle(ok("x0", 10), ok("x1", 20))
    assert len(w.in_memory) == 2 and w.nbytes_in_memory == 30


def test_fetch_priority_follows_most_urgent_dependent() -> None:
    w = ws(max_concurrent_fetches=1)
    w.handle(compute("t1", {"x": (A,)}, priority=(5,)))  # occupies the only slot
    w.handle(compute("t2", {"y": (B,)}, priority=(9,)), compute("t3", {"z": (C,)}, priority=(1,)))
    w.handle(compute("t4", {"y": (B,)}, priority=(0,)))  # y is now the most urgent input
    cmds = w.handle(FetchSucceeded("s", A, ("x",), {"x": 1}))
    assert of(cmds, Fetch) == [Fetch("s", B, ("y",))]
    cmds = w.handle(FetchSucceeded("s2", B, ("y",), {"y": 1}))
    assert of(cmds, Fetch) == [Fetch("s2", C, ("z",))]


def test_data_arriving_for_queued_key_is_accepted() -> None:
    w = ws(max_concurrent_fetches=1)
    w.handle(compute("t1", {"x": (A,)}), compute("t2", {"y": (A, B)}))
    assert w.task_state("y") == "flight"  # went with x to A
    w.handle(compute("t3", {"z": (B,)}))
    assert w.task_state("z") == "fetch"
    # B answers an older request and happens to send z as well
    cmds = w.handle(FetchSucceeded("s", B, (), {"z": 2}))
    assert w.task_state("z") == "memory"
    assert of(cmds, AddKeys) == [AddKeys("s", ME, {"z": 2})]
