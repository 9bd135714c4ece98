"""Futures inside dask graphs: the graph carries the key, never a pickled
Future.  First the packing (an in-process cluster supplies the futures), then
every shape on worker processes, which could not unpickle a Future."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
db = pytest.importorskip("dask.bag")
np = pytest.importorskip("numpy")

from taskmill import Executor, Future  # noqa: E402
from taskmill.client.dask_graph import pack_graph  # noqa: E402
from taskmill.protocol import SerializationError  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def inc(x: int) -> int:
    return x + 1


def describe(*args: Any, **kwargs: Any) -> Any:
    """Its arguments back, sets as sorted lists (so results compare plainly)."""
    def plain(x: Any) -> Any:
        if isinstance(x, (set, frozenset)):
            return sorted(x)
        if isinstance(x, (list, tuple)):
            return type(x)(plain(v) for v in x)
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x
    return plain(args), plain(kwargs)


def frame_of(values: list[int]) -> Any:
    import pandas

    return pandas.DataFrame({"x": values})


def graphs_with(f: Future, g: Future) -> dict[str, Any]:
    """Every shape in which a Future goes into a dask graph, with its value
    computed from ``f`` = 42 and ``g`` = [1, 2, 3]."""
    nested = dask.delayed(describe)([f, (f, {"in": [g]})], {"f": f}, {f}, key=f)
    shapes = {
        "argument": (dask.delayed(inc)(f), 43),
        "containers and keywords": (nested, (([42, (42, {"in": [[1, 2, 3]]})], {"f": 42}, [42]),
                                             {"key": 42})),
        "after another delayed call": (dask.delayed(inc)(dask.delayed(inc)(f)), 44),
        "da.from_delayed": (da.from_delayed(g, shape=(3,), dtype=int).sum(), 6),
        "db.from_delayed (fused)": (db.from_delayed([dask.delayed(list)(g)]).map(inc).sum(), 9),
        "delayed(future)": (dask.delayed(g), [1, 2, 3]),
    }
    try:
        import dask.dataframe as dd
    except ImportError:  # no pandas
        return shapes
    frame = dd.from_delayed([dask.delayed(frame_of)(g)], meta=frame_of([]))
    shapes["dd.from_delayed"] = (frame.x.sum(), 6)
    return shapes


class Holder:
    """A user's object that hides a Future from the client."""

    def __init__(self, future: Future) -> None:
        self.future = future


# --------------------------------------------------------------------------- #
# Packing
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def futures(inprocess_executor: Executor) -> tuple[Future, Future]:
    e = inprocess_executor
    return e.submit(inc, 41), e.submit(list, (1, 2, 3))


def test_the_packed_graph_carries_the_keys_of_futures(futures: tuple[Future, Future]) -> None:
    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr

    f, g = futures
    for name, (collection, _) in graphs_with(f, g).items():
        expr = FinalizeCompute(collections_to_expr([collection], True)).optimize()
        packed = pack_graph(expr, generation=0)
        assert packed.external <= {f.key, g.key}, name
        assert packed.external or not packed.tasks, name  # delayed(future) is no task at all
        for task in packed.tasks:
            stream = bytes(task.args.frames[0])
            # neither a Future (taskmill.client.future) nor its rebuilder (.future_pickling)
            assert b"taskmill.client.future" not in stream, f"{name}: a pickled Future in {task.key}"
            task.args.deserialize()  # no Future to rebuild, in any process


def test_a_get_graph_with_futures_as_tasks_arguments_and_values(
        inprocess_executor: Executor, futures: tuple[Future, Future]) -> None:
    f, g = futures
    graph = {"x": (inc, f), "y": g, "z": (sum, "y")}
    packed = pack_graph(graph, generation=0)
    assert {t.key for t in packed.tasks} == {"x", "y", "z"} and packed.external == {f.key, g.key}
    assert inprocess_executor.get(graph, ["x", "z"]) == [43, 6]


def test_a_future_pickled_elsewhere_comes_back_on_an_open_executor(
        inprocess_executor: Executor, futures: tuple[Future, Future]) -> None:
    f, _ = futures
    copy = pickle.loads(pickle.dumps(f))
    assert copy is not f and copy.key == f.key and copy.result(timeout=10) == 42
    holder = pickle.loads(pickle.dumps(Holder(f)))
    assert holder.future.result(timeout=10) == 42
    del copy, holder
    assert f.result() == 42  # the original is unharmed by its copies' release


def test_unpickling_a_future_with_no_client_for_it_names_the_fix() -> None:
    from taskmill.client.future_pickling import rebuild_future

    with pytest.raises(RuntimeError, match=r"cannot unpickle the Future 'k': no open Executor "
                                           r"connected to tcp://192.0.2.1:8786.*not inside a task"):
        rebuild_future("k", "tcp://192.0.2.1:8786")


def result_of_held_future(holder: Holder) -> Any:
    return holder.future.result(timeout=20)


# --------------------------------------------------------------------------- #
# On worker processes
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def process_executor() -> Iterator[Executor]:
    with Executor(n_workers=2, threads_per_worker=1, processes=True, dashboard_port=None) as e:
        yield e


def test_futures_inside_dask_graphs_on_worker_processes(process_executor: Executor) -> None:
    e = process_executor
    f = e.submit(inc, 41)
    g = e.submit(list, (1, 2, 3))
    for name, (collection, expected) in graphs_with(f, g).items():
        assert e.compute(collection, sync=True) == expected, name
        assert collection.compute(scheduler=e.get) == expected, name
        assert collection.compute() == expected, name  # the default scheduler
    persisted = e.persist(dask.delayed(inc)(f))
    assert dask.delayed(inc)(persisted).compute() == 44
    assert e.get({"x": (inc, f), "y": g, "z": (sum, "y")}, ["x", "z"]) == [43, 6]
    assert f.result() == 42 and g.result() == [1, 2, 3]  # still usable afterwards


def test_a_future_inside_a_users_object_reaches_a_task_through_its_workers_client(
        process_executor: Executor) -> None:
    """Not a dependency: the task gets the Future itself, rebuilt against its
    worker's client (get_client()), as in dask.distributed."""
    e = process_executor
    f = e.submit(inc, 41)
    assert e.submit(result_of_held_future, Holder(f), pure=False).result(timeout=30) == 42
    assert dask.delayed(result_of_held_future)(Holder(f)).compute() == 42
