"""Abstract worker resources end to end on an in-process cluster: tasks that
need a resource run only on workers that declared it, never more at once
than declared, and wait (saying why) while no worker has it.  How many run
at once on each worker is tested on the simulated cluster
(tests/simulated/test_resources_and_restrictions.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from taskmill import Executor
from taskmill.server.worker import Worker
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)


def hold(x: int, seconds: float = 0.05) -> tuple[int, float, float]:
    start = time.monotonic()
    time.sleep(seconds)
    return x, start, time.monotonic()


def inc(x: int) -> int:
    return x + 1


def overlaps(intervals: list[tuple[float, float]]) -> int:
    """The most intervals running at one moment."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(t, -1) for _, t in intervals])
    most = now = 0
    for _, step in edges:  # at equal times an end (-1) sorts before a start
        now += step
        most = max(most, now)
    return most


def by_worker(e: Executor, futures: list[Any]) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    results = e.gather(futures)
    holders = e.who_has(futures)
    for f, (_, start, stop) in zip(futures, results):
        (worker,) = holders[f.key]
        out.setdefault(worker, []).append((start, stop))
    return out


@pytest.fixture
def e() -> Iterator[Executor]:
    """Two in-process workers with GPU=1 each, two threads each."""
    with Executor(n_workers=2, threads_per_worker=2, processes=False, set_as_default=False,
                  dashboard_port=None, resources={"GPU": 1}) as ex:
        yield ex


def start_worker(e: Executor, **kwargs: Any) -> Worker:
    """One more in-process worker on the Executor's loop."""
    return e.session.sync(Worker(e.scheduler_address, **kwargs).start())  # type: ignore[no-any-return]


def test_tasks_go_only_to_workers_that_have_the_resource(caplog: pytest.LogCaptureFixture) -> None:
    with Executor(n_workers=2, threads_per_worker=2, processes=False, set_as_default=False,
                  dashboard_port=None) as e:
        gpu = start_worker(e, nthreads=2, resources={"GPU": 1}, name="gpu")
        try:
            wait_for(lambda: len(e.nthreads()) == 3, message="the GPU worker joined")
            futures = e.map(hold, range(6), resources={"GPU": 1})
            runs = by_worker(e, futures)
            assert list(runs) == [gpu.address]
            assert overlaps(runs[gpu.address]) == 1
            # dependents of GPU results may run anywhere; a GPU step after them goes back
            plain = e.map(inc, [f for f in e.map(lambda r: r[0], futures)])
            assert e.gather(plain) == list(range(1, 7))
            # a TPU task waits (saying why) until a worker with a TPU joins
            with caplog.at_level(logging.WARNING, logger="taskmill.scheduler"):
                t = e.submit(inc, 41, resources={"TPU": 1})
                wait_for(lambda: any("TPU" in r.getMessage() for r in caplog.records),
                         message="a warning about the missing TPU")
            message = next(r.getMessage() for r in caplog.records if "TPU" in r.getMessage())
            assert t.key in message and "none declares TPU" in message
            assert e.cluster.scheduler.state.task_state(t.key) == "no-worker"
            assert any("none declares TPU" in note and to == "no-worker"
                       for key, _, to, _, note in e.story(t))
            assert not t.done()
            tpu = start_worker(e, nthreads=1, resources={"TPU": 1})
            try:
                assert t.result(timeout=10) == 42
                assert e.who_has(t)[t.key] == [tpu.address]
            finally:
                e.session.sync(tpu.close())
        finally:
            e.session.sync(gpu.close())


def test_bad_requirements_fail_in_the_caller(e: Executor) -> None:
    with pytest.raises(ValueError, match="more than zero"):
        e.submit(inc, 1, resources={"GPU": -1})
    with pytest.raises(TypeError, match="must be a number"):
        e.map(inc, [1], resources={"GPU": "one"})
    with pytest.raises(ValueError, match="embedded cluster"):
        Executor("127.0.0.1:1", resources={"GPU": 1})


def test_dask_compute_and_persist_take_resources(e: Executor) -> None:
    dask = pytest.importorskip("dask")
    runs = [dask.delayed(hold)(i, 0.1) for i in range(6)]
    done = e.compute(runs, sync=True, resources={"GPU": 1})
    assert overlaps([(start, stop) for _, start, stop in done]) <= 2  # 2 GPUs, 4 threads
    kept = e.persist([dask.delayed(hold)(i, 0.1) for i in range(6, 12)], resources={"GPU": 1})
    assert overlaps([(start, stop) for _, start, stop in e.compute(kept, sync=True)]) <= 2
    # a requirement no worker meets holds the whole graph back
    stuck = e.compute(dask.delayed(inc)(1), resources={"TPU": 1})
    wait_for(lambda: e.cluster.scheduler.state.task_state(stuck.key) == "no-worker",
             message="the graph waits for a TPU")
    e.cancel(stuck)
