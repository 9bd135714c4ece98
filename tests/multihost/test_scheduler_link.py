"""The scheduler's host cut off for 10 s, and the scheduler killed and restarted
on the same address, during a map on two worker hosts.  Figures are printed
(``pytest -s``) and recorded in docs/failures.md, "Across hosts"."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskmill import Executor, Future
from tests.multihost.cluster import MultihostCluster, wait_until
from tests.multihost.hosts import Network

pytestmark = pytest.mark.timeout(180)

TASKS = 300
RUNS: Counter[str] = Counter()  # in each worker process: how many calls of slow_square it made


def slow_square(i: int) -> int:
    RUNS["slow_square"] += 1
    time.sleep(0.05)
    return i * i


def runs() -> int:
    return RUNS["slow_square"]


def done(futures: list[Future]) -> int:
    return sum(f.done() for f in futures)


@pytest.fixture
def mapping(no_leaks: None, network: Network, tmp_path: Path) -> Iterator[tuple[MultihostCluster, Executor, list[Future]]]:
    """A scheduler host, two worker hosts, and a map of TASKS calls of 50 ms a quarter done."""
    hosts = [network.add_host(name) for name in ("sched", "w1", "w2")]
    cluster = MultihostCluster(network, tmp_path)
    try:
        cluster.start_scheduler(hosts[0])
        for host in hosts[1:]:
            cluster.start_worker(host)
        e = cluster.executor()
        cluster.wait_for_hosts(e, *hosts[1:])
        futures = e.map(slow_square, range(TASKS))
        wait_until(lambda: done(futures) >= TASKS // 4, 60, "a quarter of the map done")
        yield cluster, e, futures
    finally:
        left = cluster.stop()
        assert not left, f"processes left running in the namespaces: {left}"


def test_scheduler_link_cut_for_10s(mapping: tuple[MultihostCluster, Executor, list[Future]]) -> None:
    cluster, e, futures = mapping
    sched = cluster.network.hosts["sched"]
    workers_before = set(e.scheduler_info()["workers"])
    sched.link.cut()
    cut_at = time.monotonic()
    wait_until(lambda: time.monotonic() - cut_at >= 10, 15, "the cut's 10 s", interval=0.2)
    sched.link.heal()
    healed_at, done_at_heal = time.monotonic(), done(futures)
    wait_until(lambda: done(futures) > done_at_heal, 60, "progress after healing", interval=0.01)
    resumed_after = time.monotonic() - healed_at
    assert e.gather(futures) == [i * i for i in range(TASKS)]
    finished_after = time.monotonic() - healed_at
    assert set(e.scheduler_info()["workers"]) == workers_before, "a worker was dropped"
    print(f"\nscheduler cut 10s: progress again {resumed_after:.1f}s after healing, the map "
          f"finished {finished_after:.1f}s after healing ({TASKS - done_at_heal} of {TASKS} left then)")


def test_scheduler_killed_and_restarted(mapping: tuple[MultihostCluster, Executor, list[Future]]) -> None:
    cluster, e, futures = mapping
    cluster.kill_scheduler()
    killed_at, done_at_kill = time.monotonic(), done(futures)
    cluster.start_scheduler(cluster.network.hosts["sched"])
    ready_after = time.monotonic() - killed_at
    wait_until(lambda: done(futures) > done_at_kill, 60, "progress after the restart", interval=0.01)
    resumed_after = time.monotonic() - killed_at
    assert e.gather(futures) == [i * i for i in range(TASKS)]
    finished_after = time.monotonic() - killed_at
    calls = sum(e.run(runs).values())
    print(f"\nscheduler SIGKILLed with {done_at_kill} of {TASKS} done: the new one listened after "
          f"{ready_after:.1f}s, progress again after {resumed_after:.1f}s, the map finished after "
          f"{finished_after:.1f}s; {calls - TASKS} calls made twice")
    assert calls - TASKS <= 2, "results the workers held were computed again"
