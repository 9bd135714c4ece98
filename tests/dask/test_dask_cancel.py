"""Cancelling or releasing the futures of a dask compute stops its remaining tasks."""

from __future__ import annotations

import threading
import time

import pytest

dask = pytest.importorskip("dask")

from taskmill import Executor  # noqa: E402
from tests.conftest import wait_for  # noqa: E402

pytestmark = pytest.mark.timeout(120)

RUNS: list[int] = []
_lock = threading.Lock()


def slow(i: int) -> int:
    with _lock:
        RUNS.append(i)
    time.sleep(0.02)
    return i


@pytest.mark.parametrize("how", ["cancel", "release"])
def test_dropping_a_compute_stops_its_remaining_tasks(how: str) -> None:
    RUNS.clear()
    with Executor(n_workers=1, threads_per_worker=1, processes=False, set_as_default=False) as e:
        parts = [dask.delayed(slow)(i) for i in range(300)]
        total = dask.delayed(sum)(parts)
        future = e.compute(total)
        wait_for(lambda: len(RUNS) >= 3, message="some tasks started")
        if how == "cancel":
            future.cancel()
        else:
            future.release()
            del future
        wait_for(lambda: not e.cluster.scheduler.state.tasks, timeout=20,
                 message="the scheduler forgot the computation")
        ran = len(RUNS)
        assert ran < 300
        time.sleep(0.2)  # nothing new starts afterwards (checked after a pause on purpose)
        assert len(RUNS) <= ran + 1
