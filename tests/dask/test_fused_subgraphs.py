"""Dask's fused tasks run by ``run_subgraph`` (no ``dask.order`` per task):
the same values as dask's ``_execute_subgraph`` for collections of several
shapes, intermediates released as the chain goes, clear errors."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Hashable, Mapping
from typing import Any

import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
np = pytest.importorskip("numpy")

from dask._task_spec import DataNode, Task, TaskRef, _execute_subgraph, execute_graph  # noqa: E402

from taskmill import Executor  # noqa: E402
from taskmill.client.dask_graph import pack_graph  # noqa: E402
from taskmill.client.dask_subgraph import run_subgraph  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def optimised_graph(x: Any) -> dict[Hashable, Any]:
    from dask._expr import FinalizeCompute
    from dask._task_spec import convert_legacy_graph
    from dask.base import collections_to_expr

    return convert_legacy_graph(dict(FinalizeCompute(collections_to_expr([x], True)).optimize()
                                     .__dask_graph__()))


def collections() -> dict[str, Any]:
    import dask.bag as db
    from dask import delayed

    a = da.arange(64, chunks=7).reshape(8, 8).rechunk((2, 4))
    cases: dict[str, Any] = {
        "tree sum": da.ones(40, chunks=1).sum(),
        "elementwise chain": ((da.arange(100, chunks=10) + 1) * 2 - 3).cumsum(axis=0),
        "2-d transpose and mean": (a + a.T).mean(axis=0),
        "bag map filter": db.from_sequence(range(50), npartitions=5).map(lambda v: v + 1)
                            .filter(lambda v: v % 3 != 0).map(lambda v: v * 2),
        "delayed chain": delayed(sum)([delayed(abs)(-i) for i in range(10)]),
    }
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"x": np.arange(40), "y": np.arange(40) % 3})
    df = dd.from_pandas(frame, npartitions=4)
    cases["dataframe assign groupby"] = df.assign(z=df.x * 2 + 1).groupby("y").z.sum()
    return cases


def same(a: Any, b: Any) -> bool:
    """Equal values, arrays and frames included, nested in lists, tuples and dicts."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and bool(np.array_equal(a, b))
    if hasattr(a, "sort_index"):  # pandas: the order of groups may differ
        return bool(a.sort_index().equals(b.sort_index()))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


SHAPES = ["tree sum", "elementwise chain", "2-d transpose and mean", "bag map filter",
          "delayed chain", "dataframe assign groupby"]


@pytest.mark.parametrize("name", SHAPES)
def test_each_fused_task_gives_what_dask_gives(name: str) -> None:
    graph = optimised_graph(collections()[name])
    fused = [node for node in graph.values()
             if isinstance(node, Task) and node.func is _execute_subgraph]
    if name not in ("delayed chain", "dataframe assign groupby"):  # these are not fused
        assert fused, f"{name}: no fused task to check"
    values = execute_graph(graph)  # every value, by dask's own code
    for node in fused:
        ours = Task(node.key, run_subgraph, *node.args, **node.kwargs)
        assert same(ours(values), node(values)), node.key


def test_fused_tasks_travel_with_run_subgraph_in_their_table() -> None:
    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr

    x = da.ones(100, chunks=1).sum()
    packed = pack_graph(FinalizeCompute(collections_to_expr([x], True)).optimize(), generation=0)
    table = next(iter(packed.funcs.values())).deserialize().args[0]
    assert run_subgraph in table
    assert _execute_subgraph not in table


def test_collections_computed_on_a_cluster_match_dask(executor: Executor) -> None:
    for name, x in collections().items():
        assert same(dask.compute(x)[0], dask.compute(x, scheduler="sync")[0]), name


class Box:
    def __init__(self, value: int) -> None:
        self.value = value


def test_an_intermediate_goes_once_its_last_dependent_ran() -> None:
    seen: list[weakref.ref[Box]] = []

    def make(v: int) -> Box:
        box = Box(v)
        seen.append(weakref.ref(box))
        return box

    def step(box: Box) -> Box:
        gc.collect()
        assert all(r() is None for r in seen[:-1]), "an earlier step's value is still held"
        return make(box.value + 1)

    inner: Mapping[Hashable, Any] = {
        "d": Task("d", step, TaskRef("c")),
        "c": Task("c", step, TaskRef("b")),
        "b": Task("b", step, TaskRef("a")),
        "a": Task("a", make, TaskRef("start")),
    }
    assert run_subgraph(inner, "d", ("start",), 1).value == 4
    assert _execute_subgraph(inner, "d", ("start",), 1).value == 4


def test_inputs_take_the_place_of_inner_tasks_of_the_same_key() -> None:
    def fail() -> int:
        raise AssertionError("an inner task given as an input ran")

    inner = {"x": Task("x", fail), "y": Task("y", lambda v: v * 10, TaskRef("x")),
             "k": DataNode("k", 5)}
    assert run_subgraph(inner, "y", ("x",), 7) == _execute_subgraph(inner, "y", ("x",), 7) == 70


def test_a_missing_key_and_a_cycle_are_named() -> None:
    with pytest.raises(KeyError, match="'nowhere'"):
        run_subgraph({"y": Task("y", abs, TaskRef("nowhere"))}, "y", ())
    cycle = {"p": Task("p", abs, TaskRef("q")), "q": Task("q", abs, TaskRef("p"))}
    with pytest.raises(ValueError, match="cycle through key"):
        run_subgraph(cycle, "p", ())


def test_a_subgraph_shared_by_a_layer_travels_once_in_the_table() -> None:
    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr

    from taskmill.client.dask_pickling import SharedCallables, load_node

    x = da.ones(100, chunks=1).sum()
    graph = dict(FinalizeCompute(collections_to_expr([x], True)).optimize().__dask_graph__())
    leaves = [node for node in graph.values() if not node.dependencies]
    subgraph = leaves[0].args[0]
    assert all(leaf.args[0] is subgraph for leaf in leaves)  # dask shares it across the layer
    pickler = SharedCallables()
    dumped = [pickler.dumps(leaf) for leaf in leaves]
    assert sum(entry is subgraph for entry in pickler.table) == 1
    assert len(dumped[1]) < 0.6 * len(dumped[0])  # the first went inline, the others refer to it
    table = tuple(pickler.table)
    for leaf, data in zip(leaves, dumped):
        assert data is not None
        loaded = load_node(table, data)
        assert (loaded.key, loaded.args[1:]) == (leaf.key, leaf.args[1:])
        assert loaded.args[0].keys() == subgraph.keys()
        assert loaded.func is run_subgraph
        assert loaded({}) == leaf({})
    assert load_node(table, dumped[1]).args[0] is load_node(table, dumped[2]).args[0]


def test_a_subgraph_met_once_stays_inline() -> None:
    from taskmill.client.dask_pickling import SharedCallables

    inner = {"y": Task("y", abs, TaskRef("x"))}
    pickler = SharedCallables()
    for i in range(3):  # an equal subgraph, but a new object each time
        node = Task(("z", i), _execute_subgraph, dict(inner), "y", ("x",), DataNode(None, -i))
        assert pickler.dumps(node) is not None
    assert not any(isinstance(entry, dict) for entry in pickler.table)


def test_a_shared_subgraph_is_not_changed_by_running_it() -> None:
    inner = {"b": Task("b", lambda v: v + 1, TaskRef("a")),
             "c": Task("c", lambda v: v * 2, TaskRef("b"))}
    before = dict(inner)
    assert [run_subgraph(inner, "c", ("a",), i) for i in range(3)] == [2, 4, 6]
    assert inner == before
