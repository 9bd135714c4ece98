"""Supervision with real processes: what each signal does, restart backoff,
and a silent (SIGSTOPped) worker removed within the TTL and rejoining cleanly."""

from __future__ import annotations

import os
import re
import signal
import time
from typing import Any

import psutil
import pytest

from taskmill import Executor, NoWorkersError, get_worker, wait
from taskmill.cluster.local import LocalCluster
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
        seed = e.submit(slow_inc, 5, pure=False)  # stop the worker holding it: a
        assert seed.result(timeout=30) == 6
        (a,) = e.who_has(seed)[seed.key]
        (b,) = set(procs) - {a}
        # results held on a (kept till the end: a key freed meanwhile would race the
        # phantom-key checks)
        on_a = e.map(slow_inc, range(4), workers=[a])
        before = e.gather(on_a)
        futures = e.map(slow_inc, range(100, 160))
        wait_for(lambda: sum(f.done() for f in futures) >= 5, timeout=30, message="work started")
        os.kill(procs[a], signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            # b fetches its input from the stopped a: the fetch ends when a is removed
            # (the scheduler tells b), not when a answers after SIGCONT, and b computes
            # the input again
            dependent = e.submit(slow_inc, seed, workers=[b])
            wait_for(lambda: a not in e.nthreads(), timeout=ttl + 5, interval=0.02,
                     message="the stopped worker removed")
            detected = time.monotonic() - stopped
            assert ttl - 0.2 < detected < ttl + 2.5, detected
            wait(futures, timeout=60)
            assert e.gather(futures) == list(range(101, 161))  # done on b alone
            assert e.scheduler_info()["workers"][b]["pid"] == procs[b]
            assert dependent.result(timeout=10) == 7
        finally:
            os.kill(procs[a], signal.SIGCONT)
        # it learns it was removed (its connection was closed) and joins again, announcing
        # the keys it still holds, which the scheduler reconciles
        wait_for(lambda: a in e.nthreads(), timeout=20, message="the stopped worker rejoined")
        info = e.scheduler_info()["workers"]
        assert sorted(info) == sorted([a, b]) and info[a]["pid"] == procs[a]  # one record each
        no_phantom_keys(e)  # (it may hold new copies of small results: insurance)
        again = e.map(slow_inc, range(4), workers=[a], pure=False)
        assert e.gather(again) == before
        no_phantom_keys(e)


def test_work_waiting_without_workers_is_reported_then_runs_when_one_joins(
        caplog: pytest.LogCaptureFixture, no_leaks: None) -> None:
    with LocalCluster(n_workers=0, threads_per_worker=1, dashboard_address=None) as cluster, \
            Executor(cluster, set_as_default=False) as e:
        assert e.scheduler_info()["waiting_for_workers"] is None  # nothing waits yet
        future = e.submit(slow_inc, 1)
        wait_for(lambda: (e.scheduler_info()["waiting_for_workers"] or {}).get("tasks") == 1,
                 timeout=5, message="scheduler_info says the task waits for a worker")
        with caplog.at_level("WARNING", logger="taskmill.client"):
            # the first warning comes after 5 s; a loaded machine may word it 6s
            wait_for(lambda: re.search(r"waited \d+s for a worker", caplog.text), timeout=10,
                     message="the client warned that its future waits without workers")
        assert "scheduler.no-workers-timeout" in caplog.text and not future.done()
        cluster.scale(1)
        assert future.result(timeout=30) == 2
        wait_for(lambda: e.scheduler_info()["waiting_for_workers"] is None, timeout=5,
                 message="the wait is over")


def test_the_no_workers_timeout_fails_the_waiting_futures(set_options: Any, no_leaks: None) -> None:
    set_options({"scheduler.no-workers-timeout": 2})
    with Executor(n_workers=1, threads_per_worker=1, set_as_default=False) as e:
        (only,) = pids(e)
        assert e.retire_workers([only]) == [only]
        wait_for(lambda: not e.nthreads(), timeout=30, message="no worker left")
        start = time.monotonic()
        a = e.submit(slow_inc, 1)
        b = e.submit(slow_inc, a)
        with pytest.raises(NoWorkersError, match=r"no worker was connected to the scheduler for [23]s "
                                                 r"\(option scheduler.no-workers-timeout: 2s\)"):
            b.result(timeout=20)
        assert 2.0 <= time.monotonic() - start < 5.0
        assert isinstance(a.exception(timeout=5), NoWorkersError)


@pytest.mark.parametrize("nanny", [True, False], ids=["nanny", "no-nanny"])
def test_sigterm_to_a_node_moves_its_data_and_the_node_stays_down(nanny: bool,
                                                                  no_leaks: None) -> None:
    options = () if nanny else ("--no-nanny",)
    with running("taskmill-scheduler", "--port", "0", "--no-dashboard") as sched:
        address = start_scheduler(sched)
        with running("taskmill-worker", address, "--nthreads", "1", *options) as leaving, \
                running("taskmill-worker", address, "--nthreads", "1", *options):
            with Executor(address, set_as_default=False) as e:
                wait_for(lambda: len(e.nthreads()) == 2, timeout=30, message="two workers")
                node = leaving.popen.pid  # the nanny, or the worker itself
                (victim,) = [w for w, pid in pids(e).items()
                             if node in (pid, psutil.Process(pid).ppid())]
                data = e.scatter(bytes(range(100)), workers=[victim])
                assert leaving.stop(signal.SIGTERM, timeout=30) == 0  # what stopping a node means
                assert list(e.nthreads()) != [victim] and len(e.nthreads()) == 1
                assert data.result(timeout=10) == bytes(range(100))  # moved before it left
                assert victim not in e.who_has(data)[data.key]
                assert leaving.popen.poll() == 0  # the node itself is gone: nothing restarts


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_worker_process_under_a_nanny_gets_a_fresh_worker_with_the_data_kept(
        sig: int, no_leaks: None) -> None:
    with Executor(n_workers=2, threads_per_worker=1, set_as_default=False) as e:
        procs = pids(e)
        victim = sorted(procs)[0]
        data = e.scatter(bytes(range(50)), workers=[victim])
        done = e.map(slow_inc, range(20), workers=[victim])
        e.gather(done)
        os.kill(procs[victim], sig)
        wait_for(lambda: len(e.nthreads()) == 2 and victim not in e.nthreads(), timeout=30,
                 message="a fresh worker process in its place")
        assert procs[victim] not in pids(e).values()
        assert data.result(timeout=10) == bytes(range(50))  # handed over, not lost
        assert e.gather(done) == list(range(1, 21))


def test_a_worker_that_keeps_dying_is_restarted_with_growing_delays(
        set_options: Any, caplog: pytest.LogCaptureFixture, no_leaks: None) -> None:
    set_options({"worker.restart-backoff.initial": 1.0, "worker.restart-backoff.max": 2.0,
                 "worker.restart-backoff.reset-after": 60})
    with caplog.at_level("INFO", logger="taskmill.nanny"), \
            Executor(n_workers=1, threads_per_worker=1, set_as_default=False) as e:
        gaps = []
        for _ in range(4):
            (pid,) = pids(e).values()
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            wait_for(lambda: list(pids(e).values()) not in ([], [pid]), timeout=30,
                     interval=0.02, message="the nanny started a new worker")
            gaps.append(time.monotonic() - killed)
        # the first death restarts at once; then 1 s, 2 s, 2 s (the cap) before each start
        assert gaps[1] >= 1.0 and gaps[2] >= 2.0 and gaps[3] >= 2.0, gaps
        assert gaps[0] < gaps[2], gaps
        for n, delay in ((2, 1.0), (3, 2.0), (4, 2.0)):
            assert f"died {n} times in a row; starting the next one in {delay:.1f}s" in caplog.text
        assert e.submit(slow_inc, 1).result(timeout=30) == 2


def test_a_worker_drops_a_silent_scheduler_and_registers_again(
        monkeypatch: pytest.MonkeyPatch, no_leaks: None) -> None:
    monkeypatch.setenv("TASKMILL_SCHEDULER__WORKER_TTL", "2")  # for the programs started below
    with running("taskmill-scheduler", "--port", "0", "--no-dashboard") as sched:
        address = start_scheduler(sched)
        with running("taskmill-worker", address, "--nthreads", "1") as worker:
            worker.wait_for_line(r"registered with scheduler " + address)
            os.kill(sched.popen.pid, signal.SIGSTOP)
            try:
                worker.wait_for_line(r"heard nothing from the scheduler at \S+ for [0-9.]+s \(2 "
                                     r"times the option scheduler.worker-ttl: 2s\): dropping the "
                                     r"connection", timeout=15)
            finally:
                os.kill(sched.popen.pid, signal.SIGCONT)
            wait_for(lambda: sum("registered with scheduler" in line for line in worker.lines) >= 2,
                     timeout=20, message="the worker registered again")
            with Executor(address, set_as_default=False) as e:
                wait_for(lambda: len(e.nthreads()) == 1, timeout=10, message="one worker record")
                assert e.submit(slow_inc, 1).result(timeout=30) == 2
            # the scheduler, stopped itself, blamed no worker for its own silence
            assert "silent for" not in "".join(sched.lines)


def make_bytes(n: int) -> bytes:
    return b"x" * n


def test_a_clients_fetch_from_a_silent_holder_ends_when_the_holder_is_removed(
        set_options: Any, no_leaks: None) -> None:
    """The client asks a stopped worker for a result: the scheduler removes the
    worker within the TTL and tells the client (``worker-gone``), which drops
    its connection and gets the recomputed result, instead of waiting out the
    data timeout (300 s)."""
    ttl = 2.0
    set_options({"scheduler.worker-ttl": ttl})
    with Executor(n_workers=2, threads_per_worker=1, set_as_default=False) as e:
        procs = pids(e)
        data = e.submit(make_bytes, 2_000_000)  # too big to ride along: fetched by result()
        wait([data], timeout=30)
        (holder,) = e.who_has(data)[data.key]
        # a value fetched from the holder first: the client keeps that connection open, so
        # the fetch below goes out on it (a new connection would fail its 2 s handshake)
        warm = e.submit(make_bytes, 1_500_000, workers=[holder])
        assert len(warm.result(timeout=30)) == 1_500_000
        os.kill(procs[holder], signal.SIGSTOP)
        started = time.monotonic()
        try:
            assert data.result(timeout=60) == b"x" * 2_000_000
            took = time.monotonic() - started
            assert took < ttl + 10, took  # not the data timeout
            assert holder not in e.nthreads()
        finally:
            os.kill(procs[holder], signal.SIGCONT)
        wait_for(lambda: holder in e.nthreads(), timeout=20, message="the stopped worker rejoined")
