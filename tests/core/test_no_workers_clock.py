"""When to warn about tasks waiting without workers, and when to fail them
(taskmill.core.scheduler.no_workers.NoWorkersClock), with a clock in hand."""

from __future__ import annotations

from taskmill.core.scheduler.no_workers import FIRST_WARNING, NoWorkersClock


def ticks(clock: NoWorkersClock, waiting: int, start: float, stop: float) -> list[tuple[float, bool, bool]]:
    """(now, warn, timed_out) for a tick each second in [start, stop]."""
    out = []
    now = start
    while now <= stop:
        found = clock.tick(waiting, now)
        out.append((now, found.warn, found.timed_out))
        now += 1.0
    return out


def test_warnings_come_at_growing_intervals_and_never_an_error_without_a_timeout() -> None:
    clock = NoWorkersClock(None)
    seen = ticks(clock, 3, 100.0, 200.0)
    assert [now - 100.0 for now, warn, _ in seen if warn] == [
        FIRST_WARNING * 2 ** i for i in range(5)]  # 5, 10, 20, 40, 80 s
    assert not any(timed_out for _, _, timed_out in seen)
    assert clock.tick(3, 200.0).waited == 100.0


def test_a_worker_joining_ends_the_wait_and_restarts_the_warnings() -> None:
    clock = NoWorkersClock(None)
    ticks(clock, 3, 0.0, 12.0)  # warned at 5 and 10
    assert clock.tick(0, 13.0).waited == 0.0 and clock.since is None
    seen = ticks(clock, 1, 20.0, 26.0)
    assert [now for now, warn, _ in seen if warn] == [20.0 + FIRST_WARNING]


def test_the_timeout_fails_the_tasks_once_then_a_new_wait_begins() -> None:
    clock = NoWorkersClock(8.0)
    seen = ticks(clock, 2, 0.0, 20.0)  # (tasks still waiting after the error: new ones)
    assert [now for now, _, timed_out in seen if timed_out] == [8.0, 17.0]
    assert [now for now, warn, _ in seen if warn] == [5.0, 14.0]
