"""The scheduler machine reconciles a client's ``scatter-done`` with the
workers' own ``keys-scattered``, whichever comes first
(``taskmill.core.scheduler.scatters``)."""

from __future__ import annotations

from taskmill.core.scheduler.events import ClientConnected, ClientDisconnected
from taskmill.protocol.vocabulary import (
    FreeKeys,
    KeyInMemory,
    KeyLost,
    KeysScattered,
    RegisterWorker,
    ReleaseKeys,
    ScatterDone,
)
from tests.core.scheduler_helpers import Sched, leave, of, sid

A = "tcp://a"
B = "tcp://b"


def join(addr: str, incarnation: str) -> RegisterWorker:
    return RegisterWorker(stimulus_id=sid(), worker=addr, nthreads=1, memory_limit=2**30,
                          incarnation=incarnation)


def cluster(*workers: tuple[str, str]) -> Sched:
    s = Sched()
    for addr, incarnation in workers:
        s(join(addr, incarnation))
    s(ClientConnected(sid(), "c1"))
    return s


def done(key: str, where: dict[str, str], client: str = "c1") -> ScatterDone:
    """``where``: address -> the incarnation its put-data answered with."""
    return ScatterDone(sid(), client, {key: tuple(where)}, {key: 5}, {key: "int"}, dict(where))


def reported(addr: str, *keys: str, client: str = "c1") -> KeysScattered:
    return KeysScattered(sid(), addr, client, {k: 5 for k in keys})


def frees(cmds: list) -> dict[str, set[str]]:  # type: ignore[type-arg]
    out: dict[str, set[str]] = {}
    for c in of(cmds, FreeKeys):
        out.setdefault(c.worker, set()).update(c.keys)
    return out


def test_report_then_scatter_done_credits_the_worker() -> None:
    s = cluster((A, "a1"), (B, "b1"))
    assert s(reported(A, "d")) == []  # kept for the client's word
    assert "d" not in s.state.tasks
    cmds = s(done("d", {A: "a1"}))
    assert [(m.client, m.key, m.who_has) for m in of(cmds, KeyInMemory)] == [("c1", "d", (A,))]
    assert s.state.who_has(["d"]) == {"d": [A]}
    assert not s.state.scatters.reported and not s.state.scatters.awaited


def test_scatter_done_then_report_credits_once() -> None:
    s = cluster((A, "a1"), (B, "b1"))
    cmds = s(done("d", {A: "a1", B: "b1"}))
    assert s.state.who_has(["d"]) == {"d": [A, B]} and of(cmds, KeyInMemory)
    assert s(reported(A, "d")) == [] and s(reported(B, "d")) == []
    assert s.state.who_has(["d"]) == {"d": [A, B]}
    assert not s.state.scatters.awaited


def test_a_restarted_worker_at_the_address_is_not_credited() -> None:
    s = cluster((A, "a1"), (B, "b1"))
    s(leave(A))  # the process that took the data died before reporting it...
    s(join(A, "a2"))  # ...and a new one registered at its address
    cmds = s(done("d", {A: "a1"}))
    (lost,) = of(cmds, KeyLost)
    assert lost.key == "d" and "gone" in lost.reason
    assert s.state.who_has(["d"]) == {"d": []}
    assert not s.state.scatters.awaited  # a1 left: it reports nothing any more


def test_a_report_from_a_worker_registered_after_scatter_done() -> None:
    # the put-data reached a new process at A that registered after the
    # client's scatter-done was handled: it is credited on its own report
    s = cluster((A, "a1"), (B, "b1"))
    s(done("d", {A: "a2", B: "b1"}))  # a2 not registered yet: only B is credited
    assert s.state.who_has(["d"]) == {"d": [B]}
    s(leave(A))
    s(join(A, "a2"))
    assert s(reported(A, "d")) == []
    assert s.state.who_has(["d"]) == {"d": [B, A]}


def test_a_late_report_of_a_key_no_longer_in_memory_is_freed() -> None:
    s = cluster((A, "a1"), (B, "b1"))
    s(done("d", {A: "a1", B: "b2"}))  # B's put-data answered b2: a process not registered yet
    s(leave(B))
    s(join(B, "b2"))
    cmds = s(ReleaseKeys(sid(), "c1", ("d",)))
    assert frees(cmds) == {A: {"d"}}
    assert "d" not in s.state.tasks
    assert frees(s(reported(B, "d"))) == {B: {"d"}}  # nobody wants it: freed, not resurrected
    assert "d" not in s.state.tasks
    assert s(reported(A, "d")) == []  # credited: its free went out already
    assert not s.state.scatters.awaited


def test_data_of_a_client_gone_before_scatter_done_is_freed() -> None:
    s = cluster((A, "a1"), (B, "b1"))
    s(reported(A, "d", "e"))
    cmds = s(ClientDisconnected(sid(), "c1"))
    assert frees(cmds) == {A: {"d", "e"}}
    assert frees(s(reported(B, "d"))) == {B: {"d"}}  # reported after the client left
    assert "d" not in s.state.tasks and not s.state.scatters.reported


def test_a_client_gone_frees_no_copy_the_scheduler_counts_on() -> None:
    s = cluster((A, "a1"), (B, "b1"))
    s(ClientConnected(sid(), "c2"))
    s(done("d", {A: "a1"}, client="c2"))  # c2 scattered d to A
    s(reported(A, "d"), reported(B, "d"))  # c1 scattered it to A and B, then vanished
    cmds = s(ClientDisconnected(sid(), "c1"))
    assert frees(cmds) == {B: {"d"}}
    assert s.state.who_has(["d"]) == {"d": [A]}


def test_a_worker_gone_before_scatter_done_is_not_credited() -> None:
    s = cluster((A, "a1"), (B, "b1"))
    s(reported(A, "d"), reported(B, "d"))
    s(leave(A))
    s(done("d", {A: "a1", B: "b1"}))
    assert s.state.who_has(["d"]) == {"d": [B]}
    assert not s.state.scatters.reported and not s.state.scatters.awaited


def test_old_style_scatter_done_credits_workers_that_sent_no_incarnation() -> None:
    s = Sched(A)  # registered without an incarnation, scattered without one
    s(ScatterDone(sid(), "c1", {"d": (A,)}, {"d": 5}))
    assert s.state.who_has(["d"]) == {"d": [A]}
