"""replicate and retire_workers on an in-process cluster (3 workers); pause, and the protocol
logic of retirement, are tested on the simulated cluster (tests/simulated/)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from taskmill import Executor, FutureLostError
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)


def inc(x: int) -> int:
    return x + 1


@pytest.fixture
def e() -> Iterator[Executor]:
    with Executor(n_workers=3, threads_per_worker=1, processes=False, set_as_default=False) as ex:
        yield ex


def worker_at(e: Executor, address: str) -> Any:
    assert e.cluster is not None
    (w,) = [w for w in e.cluster.workers if w.address == address]
    return w


def kill(e: Executor, address: str) -> None:
    """Drop a worker without a goodbye: its connections break, its data is gone."""
    w = worker_at(e, address)

    async def abort() -> None:
        w.stream.abort()
        await w.close()

    e.session.sync(abort())
    wait_for(lambda: address not in e.nthreads(), message=f"{address} removed")


def test_scattered_data_on_a_dead_worker_is_lost(e: Executor) -> None:
    a = sorted(e.nthreads())[0]
    f = e.scatter(123, workers=[a])
    kill(e, a)
    with pytest.raises(FutureLostError, match=a):
        f.result(timeout=10)


def test_replicated_data_survives_the_death_of_its_first_holder(e: Executor) -> None:
    a, b, c = sorted(e.nthreads())
    f, g = e.scatter([1, 2], workers=[a])
    assert e.replicate([f, g]) is None
    assert {k: sorted(v) for k, v in e.who_has([f, g]).items()} == {
        f.key: [a, b, c], g.key: [a, b, c]}
    kill(e, a)
    assert e.gather([f, g]) == [1, 2]
    assert e.submit(inc, f, workers=[c]).result() == 2


def test_replicate_n_and_workers(e: Executor) -> None:
    a, b, c = sorted(e.nthreads())
    f = e.scatter("x", workers=[a])
    e.replicate(f, n=2, workers=[b, c])
    assert len(set(e.who_has(f)[f.key]) & {b, c}) == 2
    r = e.submit(inc, 1)
    e.replicate(r, n=2)  # waits for the task, then copies it
    assert len(e.who_has(r)[r.key]) == 2
    with pytest.raises(ValueError, match="unknown workers"):
        e.replicate(f, workers=["tcp://127.0.0.1:1"])


def test_retire_workers_moves_data_and_closes_the_worker(e: Executor) -> None:
    a, b, c = sorted(e.nthreads())
    s = e.scatter(list(range(10)), workers=[a])
    r = e.submit(inc, 5, workers=[a])
    assert r.result() == 6
    assert e.retire_workers([a]) == [a]
    assert a not in e.nthreads()
    wait_for(lambda: worker_at(e, a).status.value == "closed", message=f"retired {a} closed")
    assert all(a not in where for where in e.who_has([s, r]).values())
    assert e.gather([s, r]) == [list(range(10)), 6]
    assert e.submit(inc, r).result() == 7


def test_retire_by_count_keeps_the_rest_working(e: Executor) -> None:
    futures = e.map(inc, range(20))
    e.gather(futures)
    before = set(e.nthreads())
    retired = e.retire_workers(n=2)
    assert len(retired) == 2 and set(retired) <= before
    assert set(e.nthreads()) == before - set(retired)
    assert e.gather(futures) == list(range(1, 21))
    with pytest.raises(ValueError, match="workers=.* or n="):
        e.retire_workers()


def test_retire_without_closing_leaves_the_worker_running(e: Executor) -> None:
    a = sorted(e.nthreads())[0]
    f = e.scatter(7, workers=[a])
    assert e.retire_workers([a], close_workers=False) == [a]
    assert a not in e.nthreads()
    assert worker_at(e, a).status.value == "running"
    assert f.result() == 7
    assert a not in e.who_has(f)[f.key]


def test_worker_closing_gracefully_hands_its_data_over(e: Executor) -> None:
    a = sorted(e.nthreads())[0]
    f = e.scatter("precious", workers=[a])
    e.session.sync(worker_at(e, a).close_gracefully())
    assert a not in e.nthreads()
    assert f.result(timeout=10) == "precious"
