"""Scheduler state machine: ``rebalance`` moves data between workers, a copy first."""

from __future__ import annotations

from scheduler_helpers import Sched, leave, of, sid
from test_scheduler_replicas import acquires, scatter

from taskmill.core.scheduler.events import RebalanceRequested
from taskmill.protocol.vocabulary import AddKeys, FreeKeys, KeyLost, ReleasedKeys


def rebalance(keys: tuple[str, ...] | None = None,
              workers: tuple[str, ...] | None = None) -> RebalanceRequested:
    return RebalanceRequested(sid(), keys, workers)


def held(s: Sched) -> dict[str, int]:
    return {a: ws.nbytes for a, ws in s.state.workers.items()}


def copy_arrives(s: Sched, cmds: list) -> list:
    """Every requested copy arrives: the recipients report them."""
    out = []
    for worker, who_has in acquires(cmds).items():
        out += s(AddKeys(sid(), worker, {k: 100 for k in who_has}))
    return out


def test_a_hundred_keys_on_one_of_two_workers_end_even_and_none_is_lost() -> None:
    s = Sched("tcp://a", "tcp://b")
    for i in range(100):
        scatter(s, f"k{i}", "tcp://a")
    cmds = s(rebalance())
    assert len(acquires(cmds)["tcp://b"]) == 50  # half moves: both end at the mean
    assert not of(cmds, FreeKeys)  # nothing dropped before its copy arrived
    assert held(s) == {"tcp://a": 10000, "tcp://b": 0}
    frees = of(copy_arrives(s, cmds), FreeKeys)
    assert [f.worker for f in frees] == ["tcp://a"] and len(frees[0].keys) == 50
    assert held(s) == {"tcp://a": 5000, "tcp://b": 5000}
    assert not s.state.rebalancer.moving
    who_has = s.state.who_has([f"k{i}" for i in range(100)])
    assert all(len(h) == 1 for h in who_has.values())  # every key held, once
    assert s(rebalance()) == []  # even already: nothing moves


def test_only_the_named_keys_move_and_only_among_the_named_workers() -> None:
    s = Sched("tcp://a", "tcp://b", "tcp://c")
    for i in range(10):
        scatter(s, f"k{i}", "tcp://a")
    cmds = s(rebalance(keys=("k0", "k1"), workers=("tcp://a", "tcp://b")))
    assert acquires(cmds) == {"tcp://b": {"k0": ("tcp://a",), "k1": ("tcp://a",)}}


def test_a_copy_that_does_not_come_abandons_the_move_and_the_sender_keeps_its_data() -> None:
    s = Sched("tcp://a", "tcp://b")
    for i in range(4):
        scatter(s, f"k{i}", "tcp://a")
    cmds = s(rebalance())
    moved = sorted(acquires(cmds)["tcp://b"])
    cmds = s(ReleasedKeys(sid(), "tcp://b", tuple(moved)))  # declined
    assert not of(cmds, FreeKeys) and not s.state.rebalancer.moving
    assert held(s)["tcp://a"] == 400
    cmds = s(rebalance())
    cmds = s(leave("tcp://b", "worker process exited with signal SIGKILL"))  # the recipient dies
    assert not of(cmds, KeyLost) and not s.state.rebalancer.moving
    assert all(h == ["tcp://a"] for h in s.state.who_has([f"k{i}" for i in range(4)]).values())


def test_one_key_too_big_to_move_usefully_stays() -> None:
    s = Sched("tcp://a", "tcp://b")
    scatter(s, "big", "tcp://a", nbytes=1000)
    assert acquires(s(rebalance())) == {}  # it would only swap the imbalance


def test_an_actors_key_stays_with_its_object() -> None:
    import dataclasses

    from scheduler_helpers import finished, submit, task

    s = Sched("tcp://a", "tcp://b")
    actors = [dataclasses.replace(task(f"Counter-{i}", workers=("tcp://a",)), actor=True) for i in range(4)]
    s(submit(actors, wanted=[t.key for t in actors]))
    for spec in actors:
        s(finished("tcp://a", spec.key))
    assert s.state.workers["tcp://a"].nbytes > 0
    assert acquires(s(rebalance())) == {}  # moving one would free its object
