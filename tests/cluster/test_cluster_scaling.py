"""The Cluster interface on LocalCluster: scale, adapt, Executor(cluster),
sync and async use, the reprs; in-process workers except where noted."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from taskmill import Executor
from taskmill.cluster.local import LocalCluster
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(90)


def inc(x: int) -> int:
    return x + 1


def test_scale_up_and_down_keeps_every_key() -> None:
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        with Executor(cluster, set_as_default=False) as e:
            assert e.submit(inc, 1).result(10) == 2
            cluster.scale(3)
            cluster.wait_for_workers(3, timeout=20)
            assert len(e.nthreads()) == 3 and len(cluster.groups) == 3
            futures = e.scatter(list(range(60)))
            assert len(e.has_what()) == 3  # spread over the three
            cluster.scale(1)
            assert len(cluster.groups) == 1
            wait_for(lambda: len(e.nthreads()) == 1, timeout=20, message="two workers retired")
            assert e.gather(futures) == list(range(60))  # their data moved first
    assert cluster.status == "closed"


def test_scale_rejects_bad_counts() -> None:
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        with pytest.raises(ValueError, match="integer >= 0"):
            cluster.scale(-1)
        with pytest.raises(ValueError, match="exactly one"):
            cluster.scale(2, jobs=2)
        with pytest.raises(ValueError, match="exactly one"):
            cluster.scale()


def test_adapt_grows_on_a_burst_and_shrinks_to_zero_when_idle() -> None:
    with LocalCluster(n_workers=0, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        adaptive = cluster.adapt(minimum=0, maximum=2, interval=0.1, wait_count=3)
        with Executor(cluster, set_as_default=False) as e:
            futures = e.map(time.sleep, [0.2 + i / 1000 for i in range(20)])
            wait_for(lambda: len(e.nthreads()) == 2, timeout=20, message="grew to the maximum")
            e.gather(futures)
            kept = e.scatter(41)
            # the data of a held future keeps one worker
            wait_for(lambda: len(e.nthreads()) == 1, timeout=20, message="shrank to one")
            assert kept.result(5) == 41
            del kept, futures
            wait_for(lambda: len(e.nthreads()) == 0, timeout=20, message="shrank to zero")
            assert cluster.groups == {}
            assert max(m.workers for _, m in adaptive.log) == 2
        with pytest.raises(ValueError, match="adaptive bounds"):
            cluster.scale(5)
        adaptive.stop()
        assert cluster.adaptive is None
        cluster.scale(1)
        cluster.wait_for_workers(1, timeout=20)


def test_adapt_refuses_bad_bounds() -> None:
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        with pytest.raises(ValueError, match="below minimum"):
            cluster.adapt(minimum=3, maximum=1)
        with pytest.raises(ValueError, match="duration"):
            cluster.adapt(target_duration="soon")


def test_a_group_that_ends_by_itself_is_reported() -> None:
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        (group,) = cluster.groups.values()
        cluster._runner.run(group.node.close())  # type: ignore[union-attr]
        with pytest.raises(RuntimeError, match=f"worker group {group.name} ended"):
            cluster.wait_for_workers(2, timeout=20)
        assert cluster.groups == {}
        assert any(group.name in f for f in cluster.failures)


def test_reprs_say_where_and_how_big() -> None:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster:
        cluster.wait_for_workers(2, timeout=20)
        text = repr(cluster)
        assert cluster.scheduler_address in text and "2 workers" in text
        page = cluster._repr_html_()
        assert "LocalCluster" in page and cluster.scheduler_address in page
        assert cluster.dashboard_link and cluster.dashboard_link.startswith("http")
        with Executor(cluster, set_as_default=False) as e:  # the cluster's one-time login link
            assert "/login?token=" in e.dashboard_link


def test_async_cluster_on_the_callers_loop() -> None:
    async def main() -> None:
        async with LocalCluster(n_workers=1, processes=False, asynchronous=True,
                                dashboard_address=None) as cluster:
            await cluster.scale(2)
            await cluster.wait_for_workers(2, timeout=20)
            async with Executor(cluster, asynchronous=True, set_as_default=False) as e:
                assert await e.submit(inc, 41) == 42
        assert cluster.status == "closed"

    asyncio.run(main())


def test_process_workers_scale_and_close_leaves_no_process() -> None:
    import psutil

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        cluster.scale(2)
        cluster.wait_for_workers(2, timeout=30)
        with Executor(cluster, set_as_default=False) as e:
            assert sorted(e.gather(e.map(inc, range(10)))) == list(range(1, 11))
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    wait_for(lambda: not [p for p in psutil.Process().children(recursive=True) if p.pid in left],
             timeout=10, message="no worker process left")
    assert not [t for t in threading.enumerate() if t.name == "taskmill-cluster"]
