"""Supervision with real processes: what each signal does, restart backoff,
and a silent (SIGSTOPped) worker removed within the TTL and rejoining cleanly."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from taskmill import Executor, get_worker, wait
from tests.conftest import wait_for
from tests.multiprocess.helpers import running, start_scheduler

pytestmark = pytest.mark.timeout(120)


def pids(e: Executor) -> dict[str, int]:
    return {w: i["pid"] for w, i in e.scheduler_info()["workers"].items()}


def slow_inc(x: int) -> int:
    time.sleep(0.05)
    return x + 1


def held_keys() -> list[str]:
    """The keys in the data store of the worker this runs on."""
    return sorted(get_worker().data)


def no_phantom_keys(e: Executor) -> None:
    """Every key the scheduler places on a worker is in that worker's store
    (the caller keeps the futures of those keys: a key freed meanwhile would
    leave the store before the check)."""
    placed = e.has_what()
    for worker, keys in placed.items():
        held = e.submit(held_keys, workers=[worker], allow_other_workers=False, pure=False)
        assert set(keys) <= set(held.result(timeout=30)), worker


def test_a_stopped_worker_is_removed_within_the_ttl_and_rejoins_cleanly(
        set_options: Any, no_leaks: None) -> None:
    ttl = 2.0
    set_options({"scheduler.worker-ttl": ttl})
    with Executor(n_workers=2, threads_per_worker=1, set_as_default=False) as e:
        procs = pids(e)
        a, b = sorted(procs)
        on_a = e.map(slow_inc, range(4), workers=[a])  # results held on a (kept: no frees race
        before = e.gather(on_a)                         # the phantom-key checks below)
        futures = e.map(slow_inc, range(100, 160))
        wait_for(lambda: sum(f.done() for f in futures) >= 5, timeout=30, message="work started")
        os.kill(procs[a], signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            wait_for(lambda: a not in e.nthreads(), timeout=ttl + 5, interval=0.02,
                     message="the stopped worker removed")
            detected = time.monotonic() - stopped
            assert ttl - 0.2 < detected < ttl + 2.5, detected
            wait(futures, timeout=60)
            assert e.gather(futures) == list(range(101, 161))  # done on b alone
            assert e.scheduler_info()["workers"][b]["pid"] == procs[b]
        finally:
            os.kill(procs[a], signal.SIGCONT)
        # it learns it was removed (its connection was closed), drops its data, joins again
        wait_for(lambda: a in e.nthreads(), timeout=20, message="the stopped worker rejoined")
        info = e.scheduler_info()["workers"]
        assert sorted(info) == [a, b] and info[a]["pid"] == procs[a]  # one record each
        no_phantom_keys(e)  # (it may hold new copies of small results: insurance)
        again = e.map(slow_inc, range(4), workers=[a], pure=False)
        assert e.gather(again) == before
        no_phantom_keys(e)
