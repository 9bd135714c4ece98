"""Packing big dask graphs cheaply (issue 15): callables travel once per graph,
big graphs are ordered depth first without ``dask.order`` (small ones keep
it), and the results stay those of dask's own scheduler."""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
np = pytest.importorskip("numpy")

from taskmill import Executor  # noqa: E402
from taskmill.client import dask_graph  # noqa: E402
from taskmill.client.dask_graph import pack_graph, to_key  # noqa: E402
from taskmill.client.dask_pickling import load_node  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def packed_sum(chunks: int, split_every: int = 4) -> Any:
    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr

    x = da.ones(chunks, chunks=1).sum(split_every=split_every)
    expr = FinalizeCompute(collections_to_expr([x], True)).optimize()
    return pack_graph(expr, generation=0)


def test_callables_travel_once_per_graph_not_once_per_task() -> None:
    packed = packed_sum(1_000)
    (token, payload), = packed.funcs.items()
    table = payload.deserialize().args[0]
    assert 0 < len(table) <= 10  # the few callables of the graph's layers
    assert {t.func_token for t in packed.tasks} == {token}
    leaf = next(t for t in packed.tasks if not t.dependencies)
    node = leaf.args.deserialize()[0][0]
    assert type(node) is bytes  # pickled against the table
    assert len(node) < 0.8 * len(pickle.dumps(load_node(table, node)))


def test_functions_nested_in_arguments_go_into_the_table_once_one_is_met() -> None:
    """Functions pickle by name in the C pickler; a lambda or local function
    nested in a node's arguments cannot, so from that node on the slice's
    nodes also put functions in the table; what pickle cannot do at all
    travels as the node itself (None)."""
    from dask._task_spec import Task

    from taskmill.client.dask_pickling import SharedCallables

    def call(f: Any, v: Any) -> Any:
        return f(v)

    class Local:
        pass

    pickler = SharedCallables()
    plain = Task("a", call, abs, -3)  # a local function as the task's own function: the table
    data = pickler.dumps(plain)
    assert data is not None and b"call" not in data
    nested = Task("b", call, lambda v: v + 1, 3)
    data_nested = pickler.dumps(nested)
    assert data_nested is not None
    table = tuple(pickler.table)
    assert load_node(table, data)({}) == 3
    assert load_node(table, data_nested)({}) == 4
    assert pickler.dumps(Task("c", call, type, Local())) is None  # travels as itself


@pytest.mark.parametrize("dask_order_limit", [0, 10**6], ids=["depth-first", "dask.order"])
def test_dependencies_first_and_each_subtree_finished_before_the_next(
        dask_order_limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dask_graph, "DASK_ORDER_LIMIT", dask_order_limit)
    packed = packed_sum(64)
    rank = {t.key: t.priority[-1] for t in packed.tasks}
    assert sorted(rank.values()) == list(range(len(packed.tasks)))
    for t in packed.tasks:
        assert all(rank[d] < rank[t.key] for d in t.dependencies), t.key
    # a reduction step of 4 inputs comes right after its subtree: its inputs'
    # subtrees are contiguous (depth-first), so the data it frees goes at once
    for t in packed.tasks:
        if t.dependencies:
            first = min(rank[d] for d in t.dependencies)
            assert rank[t.key] - first <= size_of_subtree(t.key, packed.tasks)


def size_of_subtree(key: str, tasks: list[Any]) -> int:
    deps = {t.key: t.dependencies for t in tasks}
    seen: set[str] = set()
    stack = list(deps[key])
    while stack:
        k = stack.pop()
        if k not in seen:
            seen.add(k)
            stack.extend(deps[k])
    return len(seen)


def test_a_cycle_is_refused_with_the_key_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dask_graph, "DASK_ORDER_LIMIT", 0)
    def inc(x: int) -> int:
        return x + 1

    with pytest.raises(ValueError, match="cycle"):
        pack_graph({"a": (inc, "b"), "b": (inc, "a"), "c": (inc, "a")}, generation=0)


@pytest.fixture(scope="module")
def executor() -> Iterator[Executor]:
    e = Executor(n_workers=2, threads_per_worker=1)
    try:
        yield e
    finally:
        e.close()


class Scale:
    """A callable object of the test module: shared through the table."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def __call__(self, x: Any) -> Any:
        return x * self.factor


def test_shapes_give_dask_results_on_worker_processes(executor: Executor) -> None:
    data = np.arange(200_000, dtype=float)  # chunks big enough to travel out of band
    cases = {
        "tree sum": da.ones(2_000, chunks=1).sum(),
        "2-d blocks": (da.ones((40, 40), chunks=(4, 4)) + da.ones((40, 40), chunks=(4, 4)).T).sum(0),
        "embedded arrays": da.from_array(data, chunks=50_000).map_blocks(Scale(2.0)).sum(),
        "mean of a product": (da.arange(1_000, chunks=10) * 3).mean(),
    }
    for name, x in cases.items():
        assert np.allclose(x.compute(), x.compute(scheduler="sync")), name


def test_a_plain_graph_keeps_its_keys(executor: Executor) -> None:
    def add(a: int, b: int) -> int:
        return a + b

    graph = {("x", i): (add, i, 1) for i in range(100)}
    graph["total"] = (sum, [("x", i) for i in range(100)])  # type: ignore[index]
    assert executor.get(graph, "total") == sum(range(1, 101))
    assert to_key(("x", 1)) == "('x', 1)"


def test_a_graph_sent_in_slices_runs_and_leaves_nothing_held(
        executor: Executor, monkeypatch: pytest.MonkeyPatch) -> None:
    from taskmill.client import dask_graph

    monkeypatch.setattr(dask_graph, "SLICE", 7)  # 1,335 tasks: 191 slices
    x = da.ones(1_000, chunks=1).sum()
    assert x.compute() == 1_000
    y = (da.ones((30, 30), chunks=(3, 3)) @ da.ones((30, 30), chunks=(3, 3))).sum()  # wide inputs
    assert y.compute() == 30 * 30 * 30
    deadline = time.monotonic() + 20
    while any(executor.has_what().values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(executor.has_what().values()), "keys held after a sliced graph"


def test_slices_hold_exactly_the_keys_later_slices_use() -> None:
    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr

    from taskmill.client.dask_graph import pack_slices

    x = da.ones(100, chunks=1).sum(split_every=4)
    expr = FinalizeCompute(collections_to_expr([x], True)).optimize()
    pieces = list(pack_slices(expr, generation=0, size=10))
    assert [len(p.tasks) for p in pieces] == [10] * 13 + [5]  # 100 + 25 + 7 + 2 + 1 tasks
    for i, piece in enumerate(pieces):
        later = {d for p in pieces[i + 1:] for t in p.tasks for d in t.dependencies}
        assert set(piece.needed_later) == later & {t.key for t in piece.tasks}


def add_one(x: int) -> int:
    return x + 1


@pytest.mark.timeout(300)
def test_the_loop_answers_while_200_000_tasks_are_packed(executor: Executor) -> None:
    """Packing runs in the caller's thread; the client's event loop (which
    also runs the embedded scheduler) must keep answering meanwhile: no
    long stretch holding the GIL, no full collection over the graph."""
    from taskmill.client.dask_graph import pack_slices
    from taskmill.client.dask_integration import cyclic_gc_paused

    graph: dict[Any, Any] = {("leaf", i): (add_one, i) for i in range(160_000)}
    level = list(graph)
    while len(level) > 1:  # a tree reduction over them, fan-in 4
        nxt = [("sum", len(level), j) for j in range(0, len(level), 4)]
        graph.update({k: (sum, level[j * 4:j * 4 + 4]) for j, k in enumerate(nxt)})
        level = nxt
    assert len(graph) > 200_000
    loop = executor.session.loop
    slowest = 0.0
    stop = False

    def ping() -> None:
        nonlocal slowest
        while not stop:
            answered = threading.Event()
            sent = time.perf_counter()
            loop.call_soon_threadsafe(answered.set)
            assert answered.wait(30), "the loop did not answer within 30 s"
            slowest = max(slowest, time.perf_counter() - sent)
            time.sleep(0.01)  # pacing only: the measurement is the wait above

    pinger = threading.Thread(target=ping)
    pinger.start()
    try:
        with cyclic_gc_paused():
            ntasks = sum(len(p.tasks) for p in pack_slices(graph, generation=0))
    finally:
        stop = True
        pinger.join()
    assert ntasks == len(graph)
    assert slowest < 0.5, f"the loop stood still for {slowest:.2f} s while packing"


def test_packing_shortens_the_switch_interval_until_the_last_graph_is_out(
        executor: Executor, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from taskmill.client import dask_integration

    before = sys.getswitchinterval()
    seen: list[float] = []

    def recording(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for piece in dask_graph.pack_slices(*args, **kwargs):
            seen.append(sys.getswitchinterval())
            yield piece

    monkeypatch.setattr(dask_integration, "pack_slices", recording)
    assert da.ones(100, chunks=1).sum().compute() == 100
    assert seen and set(seen) == {dask_integration.PACKING_SWITCH_INTERVAL}
    assert sys.getswitchinterval() == before
    with dask_integration.loop_turns_first():  # nested (two threads packing): the outer restores
        with pytest.raises(RuntimeError):
            with dask_integration.loop_turns_first():
                raise RuntimeError("packing failed")
        assert sys.getswitchinterval() == dask_integration.PACKING_SWITCH_INTERVAL
    assert sys.getswitchinterval() == before


def test_a_big_pause_freezes_what_it_left_and_the_next_one_thaws_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    from taskmill.client import dask_integration

    monkeypatch.setattr(dask_integration, "FREEZE_AFTER_OBJECTS", 50_000)
    frozen_before = gc.get_freeze_count()
    try:
        with dask_integration.cyclic_gc_paused():
            kept = [[i] for i in range(100_000)]  # long-lived, like a graph's specs
        assert gc.isenabled()
        assert gc.get_freeze_count() >= frozen_before + 100_000
        assert gc.get_count()[0] < 50_000  # nothing left for the next collection to walk
        with dask_integration.cyclic_gc_paused():
            assert gc.get_freeze_count() == 0  # thawed: frozen garbage can go now
        assert len(kept) == 100_000
    finally:
        gc.unfreeze()
        dask_integration._frozen_by_pause = False
