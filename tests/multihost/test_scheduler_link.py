"""The scheduler's host cut off for 10 s, and the scheduler killed and restarted
on the same address, during a computation."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from taskmill import Future, wait
from tests.multihost.cluster import MultihostCluster, wait_until
from tests.multihost.hosts import Network

pytestmark = pytest.mark.timeout(180)

TASKS = 300


def slow_square(i: int) -> int:
    time.sleep(0.05)
    return i * i


def start(network: Network, directory: Path) -> tuple[MultihostCluster, list[Future]]:
    hosts = [network.add_host(name) for name in ("sched", "w1", "w2")]
    cluster = MultihostCluster(network, directory)
    cluster.start_scheduler(hosts[0])
    for host in hosts[1:]:
        cluster.start_worker(host)
    e = cluster.executor()
    cluster.wait_for_hosts(e, *hosts[1:])
    futures = e.map(slow_square, range(TASKS))
    wait_until(lambda: sum(f.done() for f in futures) >= TASKS // 4, 60, "a quarter of the map done")
    return cluster, futures


def stop(cluster: MultihostCluster) -> None:
    left = cluster.stop()
    assert not left, f"processes left running in the namespaces: {left}"


def test_scheduler_link_cut_for_10s(network: Network, tmp_path: Path) -> None:
    cluster, futures = start(network, tmp_path)
    try:
        e, sched = cluster.executors[0], network.hosts["sched"]
        workers_before = set(e.scheduler_info()["workers"])
        sched.link.cut()
        cut_at = time.monotonic()
        wait_until(lambda: time.monotonic() - cut_at >= 10, 15, "the cut's 10 s", interval=0.2)
        sched.link.heal()
        healed_at = time.monotonic()
        assert e.gather(futures) == [i * i for i in range(TASKS)]
        finished_after = time.monotonic() - healed_at
        assert set(e.scheduler_info()["workers"]) == workers_before, "a worker was dropped"
        print(f"\nscheduler cut 10s: the map finished {finished_after:.1f}s after healing")
    finally:
        stop(cluster)


@pytest.mark.xfail(strict=True, reason="needs the restartable scheduler of issue 14 item 3 (branch "
                   "recovery, not merged): a killed scheduler fails every pending Future with "
                   "SchedulerGoneError and workers register afresh with empty stores")
def test_scheduler_killed_and_restarted(network: Network, tmp_path: Path) -> None:
    cluster, futures = start(network, tmp_path)
    try:
        cluster.kill_scheduler()
        killed_at = time.monotonic()
        cluster.start_scheduler(network.hosts["sched"])
        done, _ = wait(futures, timeout=60)
        assert len(done) == TASKS
        assert cluster.executors[0].gather(futures) == [i * i for i in range(TASKS)]
        print(f"\nscheduler restarted: the map finished {time.monotonic() - killed_at:.1f}s "
              "after the kill")
    finally:
        stop(cluster)
