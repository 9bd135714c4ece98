"""The embedded cluster with real worker processes under nannies."""

from __future__ import annotations

import os
import sys

import pytest

from taskmill import Executor, KilledWorker
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(120)


def inc(x: int) -> int:
    return x + 1


def test_default_executor_runs_and_leaves_nothing_behind(no_leaks: None) -> None:
    with Executor(n_workers=2, threads_per_worker=1) as e:
        pids = {w["pid"] for w in e.scheduler_info()["workers"].values()}
        assert len(pids) == 2 and os.getpid() not in pids
        assert e.submit(inc, 1).result() == 2
        assert e.gather(e.map(inc, range(100))) == list(range(1, 101))


def test_task_that_kills_its_worker_ends_in_killed_worker() -> None:
    with Executor(n_workers=2, threads_per_worker=1, set_as_default=False) as e:
        f = e.submit(os._exit, 3)
        with pytest.raises(KilledWorker) as info:
            f.result(timeout=60)
        message = str(info.value)
        assert f.key in message and "exit code 3" in message
        wait_for(lambda: len(e.nthreads()) == 2, timeout=30, message="workers restarted")
        assert e.submit(inc, 10).result() == 11


def test_restart_replaces_worker_processes() -> None:
    with Executor(n_workers=2, threads_per_worker=1, set_as_default=False) as e:
        before = {w["pid"] for w in e.scheduler_info()["workers"].values()}
        f = e.submit(inc, 1)
        f.result()
        e.restart()
        after = {w["pid"] for w in e.scheduler_info()["workers"].values()}
        assert len(after) == 2 and not (before & after)
        assert f.status == "cancelled"
        assert e.submit(inc, 5).result() == 6


def test_restart_without_waiting_returns_before_the_workers_are_back() -> None:
    with Executor(n_workers=2, threads_per_worker=1, set_as_default=False) as e:
        before = {w["pid"] for w in e.scheduler_info()["workers"].values()}
        e.restart(wait_for_workers=False, timeout=30)
        e.wait_for_workers(2, timeout=30)
        wait_for(lambda: not before & {w["pid"] for w in e.scheduler_info()["workers"].values()},
                 timeout=30, message="the old worker processes gone")
        assert e.submit(inc, 1).result(timeout=30) == 2
        with pytest.raises(ValueError, match="timeout must be a positive number"):
            e.restart(timeout=0)


def test_restart_workers_restarts_only_those_and_keeps_the_others_data() -> None:
    with Executor(n_workers=2, threads_per_worker=1, set_as_default=False) as e:
        infos = e.scheduler_info()["workers"]
        first, second = sorted(infos)
        kept = e.submit(inc, 1, workers=[second])
        lost = e.submit(inc, 2, workers=[first], allow_other_workers=True)
        assert kept.result() == 2 and lost.result() == 3
        assert e.restart_workers([first], timeout=30) == {first: "OK"}
        now = e.scheduler_info()["workers"]
        assert len(now) == 2 and first not in now and second in now
        assert now[second]["pid"] == infos[second]["pid"]  # untouched
        assert e.who_has([kept]) == {kept.key: [second]}  # its data stayed
        assert lost.result(timeout=30) == 3  # recomputed: its only copy went with the process
        with pytest.raises(ValueError, match="no worker at"):
            e.restart_workers(["tcp://127.0.0.1:1"])


def test_worker_processes_preload_numpy_and_dask() -> None:
    def loaded() -> bool:
        return all(m in sys.modules for m in ("numpy", "dask"))

    with Executor(n_workers=1, threads_per_worker=1, set_as_default=False) as e:
        wait_for(lambda: all(e.run(loaded).values()), timeout=30, message="numpy and dask preloaded")
