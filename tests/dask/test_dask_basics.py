"""Dask collections on taskmill: get, compute, persist, default scheduler."""

from __future__ import annotations

import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
np = pytest.importorskip("numpy")

from taskmill import Executor, Future, MissingDependencyError, wait  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def inc(x: int) -> int:
    return x + 1


def test_get_with_legacy_and_taskspec_graphs(inprocess_executor: Executor) -> None:
    from dask._task_spec import Alias, DataNode, Task, TaskRef

    e = inprocess_executor
    dsk = {
        "a": 1,
        "b": (inc, "a"),
        ("c", 0): Task(("c", 0), inc, TaskRef("b")),
        "d": DataNode("d", 10),
        "e": Alias("e", ("c", 0)),
        "f": (sum, ["a", "b", ("c", 0), "d"]),
    }
    assert e.get(dsk, "f") == 1 + 2 + 3 + 10
    assert e.get(dsk, ["a", ["e", "d"]]) == [1, [3, 10]]


def test_array_mean_through_get_and_default_scheduler(inprocess_executor: Executor) -> None:
    x = da.random.RandomState(0).random_sample((2000, 2000), chunks=(500, 500))
    expected = x.mean().compute(scheduler="sync")
    assert x.mean().compute(scheduler=inprocess_executor.get) == pytest.approx(expected)
    assert dask.config.get("scheduler") == inprocess_executor.get
    assert x.mean().compute() == pytest.approx(expected)


def test_compute_returns_futures_and_sync_values(inprocess_executor: Executor) -> None:
    e = inprocess_executor
    x = da.arange(100, chunks=10)
    f = e.compute(x.sum())
    assert isinstance(f, Future)
    assert f.result() == 4950
    fs = e.compute([x.sum(), x.max()])
    assert [g.result() for g in fs] == [4950, 99]
    assert e.compute([x.sum(), x.min()], sync=True) == [4950, 0]


def test_persist_then_compute(inprocess_executor: Executor) -> None:
    e = inprocess_executor
    x = da.arange(1000, chunks=100) * 2
    y = e.persist(x)
    futures = [v for v in dict(y.__dask_graph__()).values() if isinstance(v, Future)]
    assert len(futures) == 10
    wait(futures)
    held = e.who_has()
    assert all(held.get(repr(k)) for k in dask.core.flatten(y.__dask_keys__()))
    assert (y + 1).sum().compute() == (np.arange(1000) * 2 + 1).sum()
    y2, z2 = dask.persist(x, x + 1)
    assert int(z2.sum().compute()) == int((np.arange(1000) * 2 + 1).sum())
    assert int(y2.sum().compute()) == int((np.arange(1000) * 2).sum())


def test_future_inside_delayed(inprocess_executor: Executor) -> None:
    e = inprocess_executor
    f = e.submit(inc, 41)
    d = dask.delayed(inc)(f)
    assert d.compute() == 43
    assert e.compute(d).result() == 43


def test_exception_keeps_its_type(inprocess_executor: Executor) -> None:
    @dask.delayed
    def boom(x: int) -> int:
        raise ZeroDivisionError(f"boom {x}")

    with pytest.raises(ZeroDivisionError, match="boom 3"):
        boom(3).compute()


def test_graph_with_a_missing_key_fails_naming_it(inprocess_executor: Executor) -> None:
    from dask._task_spec import Task, TaskRef

    graph = {"x": Task("x", inc, TaskRef("nobody-provides-this"))}
    with pytest.raises(MissingDependencyError, match="nobody-provides-this"):
        inprocess_executor.get(graph, "x")


def test_settings_restored_on_close() -> None:
    before = dask.config.get("scheduler", None)
    with Executor(n_workers=1, threads_per_worker=1, processes=False) as e:
        assert dask.config.get("scheduler") == e.get
        assert dask.config.get("dataframe.shuffle.method") == "tasks"
    assert dask.config.get("scheduler", None) == before


def test_graph_packing_pauses_cycle_collection_and_restores_it() -> None:
    import gc

    from taskmill.client.dask_integration import cyclic_gc_paused

    assert gc.isenabled()
    with cyclic_gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with cyclic_gc_paused():
            pass
        assert not gc.isenabled()  # a program that turned it off keeps it off
    finally:
        gc.enable()
