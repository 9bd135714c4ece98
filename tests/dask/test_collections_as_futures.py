"""Persisted dask collections wherever futures go: ``futures_of``, ``wait``,
``progress``, ``fire_and_forget`` and ``Executor.cancel`` take them, alone or
in (nested) lists with futures, as dask.distributed's do."""

from __future__ import annotations

import gc
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
db = pytest.importorskip("dask.bag")

from taskmill import Executor, Future, fire_and_forget, futures_of, progress, wait  # noqa: E402
from tests.conftest import wait_for  # noqa: E402

pytestmark = pytest.mark.timeout(60)

release = threading.Event()


def inc(x: int) -> int:
    return x + 1


def blocked(x: int) -> int:
    """Runs until the test lets it finish (in-process workers share this module)."""
    release.wait(30)
    return x


def touch(path: str) -> str:
    blocked(0)
    Path(path).touch()
    return path


@pytest.fixture(scope="module")
def e() -> Iterator[Executor]:
    with Executor(n_workers=2, threads_per_worker=1, processes=False, dashboard_port=None) as ex:
        yield ex


def chunk_keys(collection: Any) -> list[str]:
    return [repr(k) if isinstance(k, tuple) else k for k in dask.core.flatten(collection.__dask_keys__())]


def test_futures_of_finds_the_futures_behind_collections_and_structures(e: Executor) -> None:
    array = e.persist(da.arange(40, chunks=10) + 1)
    bag = e.persist(db.from_sequence(range(6), npartitions=3).map(inc))
    delayed = e.persist(dask.delayed(inc)(1))
    f = e.submit(inc, 10)
    assert [x.key for x in futures_of(array)] == chunk_keys(array)
    assert [x.key for x in futures_of(bag)] == chunk_keys(bag)
    assert [x.key for x in futures_of(delayed)] == [delayed.key]
    mixed = futures_of([array, {"bag": bag, "f": f}, (delayed, {f})])
    assert [x.key for x in mixed] == [*chunk_keys(array), *chunk_keys(bag), f.key, delayed.key]
    assert all(isinstance(x, Future) for x in mixed)
    assert futures_of(f) == [f] and futures_of([f, f]) == [f] and futures_of(42) == []
    assert futures_of(da.arange(4, chunks=2)) == []  # not persisted: no futures behind it


def test_futures_of_a_persisted_dataframe(e: Executor) -> None:
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    frame = dd.from_pandas(pd.DataFrame({"x": range(20)}), npartitions=4)
    kept = e.persist(frame + 1)
    futures = futures_of(kept)
    assert len(futures) == 4
    assert int(e.gather(futures)[0]["x"].iloc[0]) == 1


def test_wait_and_progress_take_persisted_collections(e: Executor) -> None:
    array = e.persist(da.arange(40, chunks=10) * 2)
    f = e.submit(inc, 1)
    done, not_done = wait([array, f], timeout=30)
    assert {x.key for x in done} == {*chunk_keys(array), f.key} and not not_done
    assert wait(array).done == set(futures_of(array))
    out = io.StringIO()
    assert progress([array, f], file=out) == {"finished": 5, "erred": 0, "cancelled": 0}
    assert "5/5" in out.getvalue()
    with pytest.raises(TypeError, match="expected Futures, persisted dask collections or lists"):
        wait(42)


def test_fire_and_forget_a_persisted_collection_runs_it_after_its_futures_go(
        e: Executor, tmp_path: Path) -> None:
    release.clear()
    markers = [str(tmp_path / f"done-{i}") for i in range(3)]
    kept = e.persist([dask.delayed(touch)(m) for m in markers])
    fire_and_forget(kept)
    del kept
    gc.collect()
    release.set()
    wait_for(lambda: all(os.path.exists(m) for m in markers), timeout=20,
             message="every task of the forgotten collection ran")


def test_cancel_takes_persisted_collections_mixed_with_futures(e: Executor) -> None:
    release.clear()
    try:
        kept = e.persist(db.from_sequence(range(4), npartitions=4).map(blocked))
        f = e.submit(blocked, 99, pure=False)
        futures = [*futures_of(kept), f]
        e.cancel([kept, f])
        assert all(x.cancelled() for x in futures)
        keys = {x.key for x in futures}
        wait_for(lambda: not keys & set(e.cluster.scheduler.state.tasks), timeout=20,
                 message="the scheduler forgot the cancelled collection")
    finally:
        release.set()
