"""The worker state machine fetching copies the scheduler asks for (replicate, retirement).

``AcquireReplicas`` is handled by ``WorkerState._on_acquire_replicas`` in
:mod:`taskmill.core.worker.state`; copies wait behind inputs of tasks
(``REPLICA_PRIORITY``).
"""

from __future__ import annotations

from taskmill.core.worker.events import (
    AskWhoHas,
    DeleteData,
    Fetch,
    FetchFailed,
    FetchSucceeded,
    WhoHasAnswered,
)
from taskmill.protocol.vocabulary import (
    AcquireReplicas,
    AddKeys,
    FreeKeys,
    MissingData,
    ReleasedKeys,
)
from tests.core.test_worker_state import ME, A, B, compute, ok, ws


def acquire(**who_has: tuple[str, ...]) -> AcquireReplicas:
    return AcquireReplicas("acquire", ME, dict(who_has), {k: 10 for k in who_has})


def test_copy_is_fetched_announced_and_kept_until_freed() -> None:
    w = ws()
    assert w.handle(acquire(s=(A,), t=(A,))) == [Fetch("acquire", A, ("s", "t"))]
    cmds = w.handle(FetchSucceeded("got", A, ("s", "t"), {"s": 10, "t": 12}))
    assert cmds == [AddKeys("got", ME, {"s": 10, "t": 12})]
    assert w.in_memory == {"s", "t"}
    assert w.handle(FreeKeys("free", ME, ("s",))) == [DeleteData("free", ("s",))]
    assert w.in_memory == {"t"}


def test_inputs_of_tasks_are_fetched_before_copies() -> None:
    w = ws(max_concurrent_fetches=1)
    w.handle(acquire(s=(A,)))  # in flight from A
    w.handle(acquire(c=(B,)), compute("x", {"d": (B,)}))
    cmds = w.handle(FetchSucceeded("got", A, ("s",), {"s": 10}))
    assert [c for c in cmds if isinstance(c, Fetch)] == [Fetch("got", B, ("d", "c"))]


def test_key_already_here_is_announced_at_once() -> None:
    w = ws()
    w.handle(compute("x"))
    w.handle(ok("x", nbytes=5))
    assert w.handle(acquire(x=(A,))) == [AddKeys("acquire", ME, {"x": 5})]


def test_key_being_computed_here_is_declined() -> None:
    w = ws()
    w.handle(compute("x"))
    assert w.handle(acquire(x=(A,))) == [ReleasedKeys("acquire", ME, ("x",))]
    assert w.task_state("x") == "executing"


def test_copy_freed_while_in_flight_is_dropped_on_arrival() -> None:
    w = ws()
    w.handle(acquire(s=(A,)))
    assert w.handle(FreeKeys("free", ME, ("s",))) == []
    assert w.task_state("s") == "cancelled"
    cmds = w.handle(FetchSucceeded("got", A, ("s",), {"s": 10}))
    assert cmds == [DeleteData("got", ("s",))]
    assert w.task_state("s") is None


def test_missing_holder_is_reported_then_scheduler_asked() -> None:
    w = ws()
    w.handle(acquire(s=(A,)))
    cmds = w.handle(FetchSucceeded("got", A, ("s",), {}))
    assert MissingData("got", ME, A, ("s",)) in cmds
    assert AskWhoHas("got", ("s",)) in cmds
    assert w.task_state("s") == "missing"
    assert w.handle(WhoHasAnswered("who", {"s": (B,)})) == [Fetch("who", B, ("s",))]


def test_unreachable_holder_falls_back_to_another() -> None:
    w = ws()
    w.handle(acquire(s=(A, B)))
    cmds = w.handle(FetchFailed("failed", A, ("s",), "refused"))
    assert Fetch("failed", B, ("s",)) in cmds


def test_copy_requested_for_a_key_already_being_fetched_as_input() -> None:
    w = ws()
    w.handle(compute("x", {"d": (A,)}))
    assert w.handle(acquire(d=(A, B))) == []
    w.handle(FetchSucceeded("got", A, ("d",), {"d": 10}))
    # the task ran and no longer needs it, but the scheduler asked to keep it
    w.handle(ok("x"))
    assert "d" in w.in_memory
