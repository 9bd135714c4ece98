"""The stamp ring: the last stamps in two arrays, read oldest first, bounded."""

from __future__ import annotations

import pytest

from taskmill.dashboard.monitor import SchedulerMonitor
from taskmill.dashboard.stamps import StampRing


def test_the_ring_keeps_the_last_stamps_oldest_first() -> None:
    ring = StampRing(3)
    assert ring.last() == 0 and not ring.full and len(ring) == 0
    for n in range(1, 6):
        ring.append(n * 10, float(n))
        assert ring.last() == n * 10
    numbers, times = ring.ordered()
    assert list(numbers) == [30, 40, 50] and list(times) == [3.0, 4.0, 5.0]
    assert ring.full and len(ring) == 3


def test_a_ring_needs_room() -> None:
    with pytest.raises(ValueError, match="at least 1 stamp"):
        StampRing(0)


def test_events_older_than_the_ring_have_no_time() -> None:
    mon = SchedulerMonitor()
    mon.stamps = StampRing(2)
    for n in (3, 7, 9):
        mon.stamp(f"task-finished-{n}")
    t2, t5, t8, t9, t10 = mon.when(["x-2", "x-5", "x-8", "x-9", "x-10"])
    assert t2 is None and t5 is None  # stamp 3 was overwritten: too old to tell
    assert t8 is not None and t8 == t9 and t10 is None
