"""``dask.annotate`` through every entry point on an in-process cluster:
``e.compute``, ``e.persist``, ``e.get`` (``x.compute(scheduler=e.get)``) and a
plain ``x.compute()``; worker restrictions (where it ran) and a resource no
worker has (waiting, saying why).  How the annotations become task options,
and retries, resources and priorities on the simulated cluster, are in
test_annotations.py."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

from taskmill import Executor  # noqa: E402
from tests.conftest import wait_for  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def fails_first_time(marker: str, x: int) -> int:
    """Raises on its first run (the marker file does not exist yet), then works."""
    if not os.path.exists(marker):
        Path(marker).touch()
        raise RuntimeError(f"first run of {marker}")
    return x + 1


def inc(x: int) -> int:
    return x + 1


@pytest.fixture(scope="module")
def e() -> Iterator[Executor]:
    with Executor(n_workers=2, threads_per_worker=1, processes=False, dashboard_port=None) as ex:
        yield ex


ENTRY_POINTS: dict[str, Callable[[Executor, Any], Any]] = {
    "e.compute": lambda e, x: e.compute(x).result(),
    "e.persist": lambda e, x: e.persist(x).compute(),
    "e.get": lambda e, x: x.compute(scheduler=e.get),
    "x.compute()": lambda e, x: x.compute(),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_annotated_retries_rerun_a_flaky_task(e: Executor, tmp_path: Path, entry: str) -> None:
    run = ENTRY_POINTS[entry]
    with dask.annotate(retries=1):
        flaky = dask.delayed(fails_first_time)(str(tmp_path / "annotated"), 1)
    assert run(e, dask.delayed(inc)(flaky)) == 3
    unannotated = dask.delayed(fails_first_time)(str(tmp_path / "plain"), 1)
    with pytest.raises(RuntimeError, match="first run of"):
        run(e, dask.delayed(inc)(unannotated))


def test_annotated_retries_survive_array_fusion(e: Executor, tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")

    def blocks(marker: str) -> Any:
        return da.ones(4, chunks=4).map_blocks(lambda b: b * fails_first_time(marker, 0),
                                               meta=np.array((), dtype=float))

    with dask.annotate(retries=1):
        x = blocks(str(tmp_path / "annotated"))
    assert int((x + 1).sum().compute()) == 8  # fused with the unannotated rest
    with pytest.raises(RuntimeError, match="first run of"):
        (blocks(str(tmp_path / "plain")) + 1).sum().compute()


def where(e: Executor, collection: Any) -> set[str]:
    """The workers holding the persisted ``collection``'s chunks."""
    e.gather(list(collection.__dask_graph__().values()))
    held = e.who_has()
    return {w for k in dask.core.flatten(collection.__dask_keys__()) for w in held[repr(k)]}


def test_annotated_workers_choose_where_tasks_run(e: Executor) -> None:
    first, second = sorted(e.nthreads())
    with dask.annotate(workers=first):
        x = da.arange(40, chunks=5) + 1
    assert where(e, e.persist(x)) == {first}
    with dask.annotate(workers=[second]):
        y = x * 2
    assert where(e, e.persist(y, optimize_graph=False)) == {second}
    assert where(e, (x * 3).persist()) == {first}  # dask.persist on the default Executor
    # fused, the two layers allow no worker in common: dask's rule leaves the
    # fused tasks unrestricted (as dask.distributed does with an empty list)
    assert where(e, e.persist(y)) <= {first, second}


def test_a_resource_no_worker_has_leaves_the_tasks_waiting_saying_why(
        e: Executor, caplog: pytest.LogCaptureFixture) -> None:
    with dask.annotate(resources={"GPU": 1}):
        needs_gpu = dask.delayed(inc)(1, dask_key_name="annotated-gpu-task")
    with caplog.at_level(logging.WARNING, logger="taskmill.scheduler"):
        future = e.compute(dask.delayed(inc)(needs_gpu))
        wait_for(lambda: any("annotated-gpu-task" in r.getMessage() for r in caplog.records),
                 message="a warning naming the task that needs a GPU")
    message = next(r.getMessage() for r in caplog.records if "annotated-gpu-task" in r.getMessage())
    assert "none declares GPU" in message
    assert e.cluster.scheduler.state.task_state("annotated-gpu-task") == "no-worker"
    assert any(to == "no-worker" and "none declares GPU" in note
               for _, _, to, _, note in e.story("annotated-gpu-task"))
    assert not future.done()
    e.cancel(future)
