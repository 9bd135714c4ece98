"""The adaptive recommendation (pure, from the scheduler's state) and the
cluster side's hysteresis, without processes."""

from __future__ import annotations

import pytest

from taskmill.cluster.adaptive import Hysteresis, Move
from taskmill.core.scheduler.adaptive import UNKNOWN_DURATION, recommend
from tests.core.scheduler_helpers import Sched, finished, submit, task


def advice(s: Sched, target_duration: float = 5.0, threads: int | None = None):
    return recommend(s.state.membership, s.state.placement, target_duration, threads)


def test_no_work_no_workers_asks_for_none() -> None:
    assert advice(Sched()).target == 0


def test_work_without_workers_asks_for_at_least_one() -> None:
    s = Sched()
    s(submit([task("inc-1")], wanted=["inc-1"]))
    # one task of unknown duration: 0.5 s of work, one thread
    assert advice(s).target == 1


def test_work_is_measured_durations_over_target_duration() -> None:
    s = Sched("w1")
    s(submit([task("slow-0")], wanted=["slow-0"]))
    s(finished("w1", "slow-0", duration=2.0))  # slow takes 2 s
    s(submit([task(f"slow-{i}") for i in range(1, 41)], wanted=[f"slow-{i}" for i in range(1, 41)]))
    # 40 tasks x 2 s = 80 s of work; in 5 s that is 16 threads; 4 threads per worker
    assert advice(s, 5.0, threads=4).target == 4
    assert advice(s, 10.0, threads=1).target == 8


def test_a_few_long_tasks_ask_for_no_more_threads_than_tasks() -> None:
    s = Sched("w1")
    s(submit([task("long-0")], wanted=["long-0"]))
    s(finished("w1", "long-0", duration=3600.0))
    s(submit([task(f"long-{i}") for i in (1, 2, 3)], wanted=[f"long-{i}" for i in (1, 2, 3)]))
    assert advice(s, 5.0, threads=1).target == 3


def test_unknown_kinds_count_the_default_duration() -> None:
    s = Sched()
    n = 100
    s(submit([task(f"new-{i}") for i in range(n)], wanted=[f"new-{i}" for i in range(n)]))
    expected = int(n * UNKNOWN_DURATION / 5.0)
    assert advice(s, 5.0, threads=1).target == expected


def test_idle_workers_are_named_to_close_least_data_first() -> None:
    s = Sched("w1", "w2", "w3")
    s(submit([task("x-1"), task("x-2")], wanted=["x-1", "x-2"]))
    placed = s.processing()
    for key, addr in placed.items():
        s(finished(addr, key, nbytes=1000 if key == "x-1" else 10))
    a = advice(s)
    # the data (1010 bytes) fits on one worker: the two others go, the one
    # holding nothing first, then the one holding least
    assert a.target == 1
    holder_of = {k: addr for k, addr in placed.items()}
    empty = ({"w1", "w2", "w3"} - set(placed.values())).pop()
    assert a.close == (empty, holder_of["x-2"])


def test_busy_workers_are_never_named_to_close() -> None:
    s = Sched("w1", "w2")
    s(submit([task("busy-1")], wanted=["busy-1"]))
    busy = s.processing()["busy-1"]
    a = advice(s, 5.0)
    assert busy not in a.close
    assert a.target == 1


def test_memory_keeps_workers_that_the_data_needs() -> None:
    s = Sched(("w1", 1), ("w2", 1))
    s(submit([task("big-1")], wanted=["big-1"]))
    addr = s.processing()["big-1"]
    s(finished(addr, "big-1", nbytes=int(1.5 * 2**30)))  # 1.5 GiB with 1 GiB per worker
    assert advice(s).target == 3  # at most 60% full: 1.5 / 0.6 = 2.5 workers


def test_bad_target_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="target_duration"):
        advice(Sched(), 0.0)


def test_hysteresis_goes_up_at_once_and_down_after_wait_count_rounds() -> None:
    h = Hysteresis(minimum=0, maximum=10, wait_count=3)
    assert h.decide(have=0, target=4, close=()) == Move(4)
    assert h.decide(have=4, target=1, close=("a", "b", "c")) is None
    assert h.decide(have=4, target=1, close=("a", "b", "c")) is None
    assert h.decide(have=4, target=1, close=("a", "b", "c")) == Move(1, ("a", "b", "c"))


def test_hysteresis_a_short_pause_closes_nothing() -> None:
    h = Hysteresis(minimum=0, maximum=10, wait_count=3)
    assert h.decide(4, 0, ("a",)) is None
    assert h.decide(4, 0, ("a",)) is None
    assert h.decide(4, 4, ()) is None  # the next burst: the count starts over
    assert h.decide(4, 0, ("a",)) is None
    assert h.decide(4, 0, ("a",)) is None


def test_hysteresis_clamps_to_the_bounds() -> None:
    h = Hysteresis(minimum=2, maximum=5, wait_count=1)
    assert h.decide(0, 0, ()) == Move(2)
    assert h.decide(2, 100, ()) == Move(5)
    assert h.decide(5, 0, ("a", "b", "c", "d", "e")) == Move(2, ("a", "b", "c"))
