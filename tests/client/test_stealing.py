"""Work stealing on an in-process cluster: tasks placed on the holder of
their input spread to the idle worker, each running once; with the option
off they stay."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from taskmill import Executor, get_worker

_lock = threading.Lock()
_runs: list[tuple[int, str]] = []


def make_input() -> bytes:
    return b"small"


def nap(x: bytes, i: int, seconds: float) -> str:
    """Sleep like a task that computes (the workload, not synchronisation)."""
    address = get_worker().address
    with _lock:
        _runs.append((i, address))
    time.sleep(seconds)
    return str(address)


def spread(n: int = 40) -> tuple[dict[str, int], list[tuple[int, str]]]:
    """Run ``n`` naps of 50 ms taking an input computed on worker A only:
    how many ran on each worker, and every run."""
    del _runs[:]
    with Executor(n_workers=2, threads_per_worker=2, processes=False, dashboard_port=None) as e:
        a, b = sorted(e.scheduler_info()["workers"])
        x = e.submit(make_input, workers=[a], allow_other_workers=False)
        x.result()
        where = e.gather(e.map(nap, [x] * n, range(n), [0.05] * n, pure=False))
    counts = {a: where.count(a), b: where.count(b)}
    return counts, list(_runs)


def test_the_idle_worker_steals_from_the_holder_of_the_input_and_nothing_runs_twice(
        set_options: Callable[[Mapping[str, Any]], None]) -> None:
    set_options({"scheduler.work-stealing-interval": 0.02})
    counts, runs = spread()
    a, b = sorted(counts)
    # without stealing B gets only the four its slots took before A's queue grew
    assert counts[b] >= 10, counts
    assert sorted(i for i, _ in runs) == list(range(40))  # each task ran exactly once


def test_with_stealing_off_the_tasks_stay_where_placement_put_them(
        set_options: Callable[[Mapping[str, Any]], None]) -> None:
    set_options({"scheduler.work-stealing": False})
    counts, runs = spread()
    a, b = sorted(counts)
    assert counts[b] <= 4, counts
    assert sorted(i for i, _ in runs) == list(range(40))
