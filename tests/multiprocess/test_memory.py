"""Memory limits with real worker processes: spill to disk, and a task that
allocates far beyond the limit ends in KilledWorker naming the limit."""

from __future__ import annotations

import time
from typing import Any

import pytest

from taskmill import Executor, KilledWorker, wait
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(120)

MB = 10**6


def inc(x: int) -> int:
    return x + 1


def make_array(i: int) -> Any:
    import numpy as np

    return np.full(20 * MB // 8, i, dtype="float64")


def hog(limit_bytes: int) -> int:
    """Allocate (and touch) 20 MB at a time up to ten times the limit."""
    import numpy as np

    held = []
    while len(held) * 20 * MB < 10 * limit_bytes:
        held.append(np.ones(20 * MB // 8))
        time.sleep(0.005)  # leave the nanny a chance to see it; not synchronisation
    return len(held)


def _spilled(e: Executor) -> int:
    return sum(w.get("spilled", 0) for w in e.scheduler_info()["workers"].values())


def test_results_twice_the_memory_limit_complete_by_spilling(no_leaks: None) -> None:
    pytest.importorskip("numpy")
    with Executor(n_workers=2, threads_per_worker=1, memory_limit="200MB",
                  set_as_default=False, dashboard_port=None) as e:
        futures = e.map(make_array, range(40))  # 800 MB of results, 400 MB of limits
        wait(futures, timeout=90)
        assert all(f.done() and f.exception() is None for f in futures)
        wait_for(lambda: _spilled(e) >= 300 * MB, timeout=10, message="heartbeats report spilled data")
        for i, f in enumerate(futures):
            a = f.result()
            assert a.shape == (20 * MB // 8,) and a[0] == i and a[-1] == i
            del a
        assert sum(n.restarts for n in e.cluster.workers) == 0  # spilled, never restarted
        info = e.scheduler_info()["workers"].values()
        assert all(w["memory"] < 0.95 * 200 * MB for w in info)


def test_task_far_beyond_the_limit_ends_in_killed_worker_naming_it() -> None:
    pytest.importorskip("numpy")
    with Executor(n_workers=2, threads_per_worker=1, memory_limit="200MB",
                  set_as_default=False, dashboard_port=None) as e:
        f = e.submit(hog, 200 * MB)
        with pytest.raises(KilledWorker) as info:
            f.result(timeout=90)
        message = str(info.value)
        assert f.key in message and "exceeded its memory limit" in message and "of 200.00 MB" in message
        wait_for(lambda: len(e.nthreads()) == 2, timeout=30, message="workers restarted")
        assert e.submit(inc, 10).result(timeout=30) == 11
