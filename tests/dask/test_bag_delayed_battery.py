"""Issue 3 battery: dask.bag and dask.delayed on the cluster against dask's synchronous scheduler."""

from __future__ import annotations

import itertools
import operator
from typing import Any

import pytest

dask = pytest.importorskip("dask")
db = pytest.importorskip("dask.bag")

from taskmill import Future, wait  # noqa: E402

from tests.dask.compare import on_cluster, reference  # noqa: E402

pytestmark = pytest.mark.timeout(120)




def check(e: Any, x: Any, how: str = "default", sort: bool = False) -> Any:
    got, want = on_cluster(e, x, how), reference(x)
    if sort:
        assert sorted(got) == sorted(want)
    else:
        assert got == want
    return got


RECORDS = [{"name": n, "age": a, "city": c}
           for n, a, c in zip(itertools.cycle(["ann", "bob", "cy", "dee", "eve"]), range(100),
                              itertools.cycle(["oslo", "rome", "lima"]))]


@pytest.fixture(scope="module")
def nums() -> Any:
    return db.from_sequence(range(200), npartitions=5)


@pytest.fixture(scope="module")
def recs() -> Any:
    return db.from_sequence(RECORDS, npartitions=4)


# --------------------------------------------------------------------------- bag
@pytest.mark.parametrize("how", ["default", "get", "compute"])
def test_bag_map_filter(executor: Any, nums: Any, how: str) -> None:
    got = check(executor, nums.map(lambda v: v * v).filter(lambda v: v % 3 == 0), how)
    assert got == [v * v for v in range(200) if (v * v) % 3 == 0]
    got = check(executor, nums.map(operator.add, 1000), how)  # extra positional argument
    assert got == [v + 1000 for v in range(200)]
    got = check(executor, nums.filter(lambda v: v > 190).map(str), how)
    assert got == [str(v) for v in range(191, 200)]


def test_bag_reductions(executor: Any, nums: Any) -> None:
    assert check(executor, nums.sum()) == sum(range(200))
    assert check(executor, nums.count()) == 200
    assert check(executor, nums.max()) == 199
    assert check(executor, nums.mean()) == pytest.approx(99.5)
    assert check(executor, nums.std()) == pytest.approx(reference(nums.std()))
    assert check(executor, nums.topk(3)) == [199, 198, 197]
    assert check(executor, nums.distinct().count()) == 200
    assert check(executor, nums.any()) is True
    assert check(executor, nums.map(lambda v: v < 0).any()) is False


def test_bag_fold(executor: Any, nums: Any) -> None:
    assert check(executor, nums.fold(operator.add)) == sum(range(200))
    assert check(executor, nums.fold(operator.add, initial=7)) == reference(nums.fold(operator.add, initial=7))
    # binop and combine differ
    f = nums.fold(lambda acc, v: acc + [v % 5], lambda a, b: a + b, initial=[])
    got = check(executor, f)
    assert sorted(got) == sorted(v % 5 for v in range(200))
    assert check(executor, nums.reduction(sum, sum)) == sum(range(200))


def test_bag_foldby(executor: Any, nums: Any, recs: Any) -> None:
    got = check(executor, nums.foldby(lambda v: v % 4, operator.add, 0), sort=True)
    assert sorted(got) == sorted((k, sum(v for v in range(200) if v % 4 == k)) for k in range(4))
    got = check(executor, recs.foldby("city", lambda acc, r: acc + r["age"], 0, operator.add, 0), sort=True)
    want: dict[str, int] = {}
    for r in RECORDS:
        want[r["city"]] = want.get(r["city"], 0) + r["age"]
    assert dict(got) == want
    # split_every and a max
    got = check(executor, nums.foldby(lambda v: v % 7, max, -1, split_every=2), sort=True)
    assert dict(got) == {k: max(v for v in range(200) if v % 7 == k) for k in range(7)}


def test_bag_groupby(executor: Any, nums: Any, recs: Any) -> None:
    def norm(pairs: Any) -> Any:
        return sorted((k, sorted(vs)) for k, vs in pairs)

    g = nums.groupby(lambda v: v % 6, shuffle="tasks")
    got, want = on_cluster(executor, g), reference(g)
    assert norm(got) == norm(want)
    assert norm(got) == [(k, [v for v in range(200) if v % 6 == k]) for k in range(6)]
    g2 = recs.groupby(lambda r: r["name"], shuffle="tasks").map(lambda kv: (kv[0], len(kv[1])))
    got = check(executor, g2, sort=True)
    assert dict(got) == {"ann": 20, "bob": 20, "cy": 20, "dee": 20, "eve": 20}


def test_bag_frequencies(executor: Any, recs: Any, nums: Any) -> None:
    got = check(executor, recs.pluck("city").frequencies(), sort=True)
    assert dict(got) == {"oslo": 34, "rome": 33, "lima": 33}
    got = check(executor, nums.map(lambda v: v % 3).frequencies(sort=True))
    assert got == [(0, 67), (1, 67), (2, 66)]
    got = check(executor, recs.pluck("name").frequencies(split_every=2), sort=True)
    assert dict(got) == {n: 20 for n in ["ann", "bob", "cy", "dee", "eve"]}


def test_bag_from_sequence_pluck(executor: Any, recs: Any) -> None:
    got = check(executor, recs.pluck("age"))
    assert got == list(range(100))
    got = check(executor, recs.pluck(["name", "age"]).take(3, npartitions=1, compute=False))
    assert list(got) == [("ann", 0), ("bob", 1), ("cy", 2)]
    pairs = db.from_sequence([(i, str(i)) for i in range(30)], partition_size=7)
    assert pairs.npartitions == 5
    assert check(executor, pairs.pluck(1)) == [str(i) for i in range(30)]
    got = check(executor, recs.map(lambda r: r["age"] if r["city"] == "rome" else None).remove(lambda v: v is None))
    assert got == [r["age"] for r in RECORDS if r["city"] == "rome"]
    assert check(executor, recs.pluck("age").sum(), how="compute") == sum(range(100))


def test_bag_flatten_product_and_to_dataframe(executor: Any) -> None:
    pytest.importorskip("pandas")
    b = db.from_sequence([[1, 2], [3], [], [4, 5, 6]], npartitions=2)
    assert check(executor, b.flatten()) == [1, 2, 3, 4, 5, 6]
    small = db.from_sequence([1, 2, 3], npartitions=2)
    assert check(executor, small.product(small).count()) == 9
    df = db.from_sequence(RECORDS[:20], npartitions=3).to_dataframe()
    got, want = on_cluster(executor, df), reference(df)
    assert got.equals(want) and len(got) == 20


def test_bag_persist_then_compute(executor: Any, nums: Any) -> None:
    e = executor
    b = nums.map(lambda v: v * 3)
    p = e.persist(b)
    futures = [v for v in p.__dask_graph__().values() if isinstance(v, Future)]
    assert len(futures) == b.npartitions
    wait(futures, timeout=30)
    assert all(f.status == "finished" for f in futures)
    assert on_cluster(e, p) == [v * 3 for v in range(200)]
    assert on_cluster(e, p.filter(lambda v: v % 2 == 0).sum(), "get") == sum(v * 3 for v in range(0, 200, 2))
    (q,) = dask.persist(b.frequencies())
    assert dict(q.compute()) == {v * 3: 1 for v in range(200)}


# --------------------------------------------------------------------------- delayed
@dask.delayed
def add(a: Any, b: Any) -> Any:
    return a + b


@dask.delayed
def total(xs: Any) -> Any:
    return sum(xs)


def test_delayed_nested(executor: Any) -> None:
    layer = [add(i, i) for i in range(10)]
    pairs = [add(layer[i], layer[i + 1]) for i in range(9)]
    result = total(pairs)
    assert check(executor, result) == sum(2 * i + 2 * (i + 1) for i in range(9))
    # delayed inside containers, dicts and tuples
    nested = dask.delayed(lambda d: d["a"][0] + d["b"][1]["c"])({"a": [layer[3]], "b": (0, {"c": pairs[2]})})
    assert check(executor, nested, "get") == 6 + (4 + 6)
    # attribute access and operators on delayed objects
    obj = dask.delayed(complex)(3, 4)
    assert check(executor, abs(obj).real + obj.imag * 2, "compute") == 5 + 8
    # a tree of 64 leaves
    level = [dask.delayed(i) for i in range(64)]
    while len(level) > 1:
        level = [add(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    assert check(executor, level[0]) == sum(range(64))


def test_dask_compute_of_many_delayed(executor: Any) -> None:
    xs = [add(i, 1) for i in range(20)]
    got = dask.compute(*xs, total(xs))
    assert list(got) == list(dask.compute(*xs, total(xs), scheduler="sync"))
    assert got[-1] == sum(range(1, 21))
    got = dask.compute({"a": xs[:2], "b": (xs[5], 7)})
    assert got == ({"a": [1, 2], "b": (6, 7)},)


def test_delayed_impure_differs_each_call(executor: Any) -> None:
    import random

    def draw() -> float:
        return random.random()

    a = dask.delayed(draw, pure=False)()
    b = dask.delayed(draw, pure=False)()
    assert a.key != b.key
    both = dask.compute(a, b)
    assert both[0] != both[1]
    # the same impure delayed object computed twice runs twice
    assert on_cluster(executor, a) != on_cluster(executor, a)
    # pure calls share a key (one task) and agree
    p1, p2 = dask.delayed(operator.add, pure=True)(1, 2), dask.delayed(operator.add, pure=True)(1, 2)
    assert p1.key == p2.key
    assert dask.compute(p1, p2) == (3, 3)
    # but inside one graph an impure node runs once and every dependent sees that value
    diff = dask.delayed(lambda u, v: u - v)(a, a)
    assert on_cluster(executor, diff) == 0.0


class CustomError(Exception):
    pass


def test_delayed_exceptions_keep_type(executor: Any) -> None:
    @dask.delayed
    def fail(x: Any) -> Any:
        raise CustomError(f"custom failure {x}")

    @dask.delayed
    def key_err(d: Any) -> Any:
        return d["missing"]

    with pytest.raises(CustomError, match="custom failure 5"):
        fail(5).compute()
    with pytest.raises(CustomError, match="custom failure 6"):
        fail(6).compute(scheduler="sync")
    with pytest.raises(CustomError, match="custom failure 7"):
        executor.compute(fail(7), sync=True)
    with pytest.raises(CustomError, match="custom failure 8"):
        executor.compute(fail(8)).result()
    with pytest.raises(KeyError, match="missing"):
        key_err({}).compute(scheduler=executor.get)
    # an error deep in a graph reaches the caller
    with pytest.raises(ZeroDivisionError):
        total([add(1, 2), dask.delayed(operator.truediv)(add(1, 1), 0)]).compute()
    # bag and array errors too
    with pytest.raises(ValueError, match="invalid literal"):
        db.from_sequence(["1", "x"], npartitions=2).map(int).compute()
    # and the executor still works afterwards
    assert add(2, 3).compute() == 5


def test_future_inside_delayed(executor: Any) -> None:
    e = executor
    f = e.submit(operator.mul, 6, 7)
    g = e.scatter([1, 2, 3])
    d = add(f, 1)
    assert d.compute() == 43
    assert e.compute(d, sync=True) == 43
    assert d.compute(scheduler=e.get) == 43
    assert total(g).compute() == 6
    nested = dask.delayed(lambda m: m["x"] + sum(m["ys"]))({"x": f, "ys": g})
    assert nested.compute() == 48
    # a future as an input to a bag
    b = db.from_delayed([dask.delayed(lambda v: list(range(v)))(e.submit(operator.add, 2, 3))])
    assert b.sum().compute() == 10
    # the futures are still usable afterwards
    assert f.result() == 42 and e.gather(g) == [1, 2, 3]


def test_delayed_persist_then_compute(executor: Any) -> None:
    e = executor
    d = total([add(i, i) for i in range(5)])
    p = e.persist(d)
    assert dask.is_dask_collection(p)
    futures = [v for v in p.__dask_graph__().values() if isinstance(v, Future)]
    assert len(futures) == 1
    wait(futures, timeout=30)
    assert futures[0].result() == 20
    assert add(p, 1).compute() == 21
    assert p.compute() == 20
    (q,) = dask.persist(add(d, 100))
    assert q.compute() == 120


def test_delayed_nout_kwargs_methods(executor: Any) -> None:
    q, r = dask.delayed(divmod, nout=2)(17, 5)
    assert dask.compute(q, r) == dask.compute(q, r, scheduler="sync") == (3, 2)
    full = dask.delayed(lambda shape, fill_value: [fill_value] * shape)(shape=3, fill_value=add(1, 1))
    assert check(executor, full) == [2, 2, 2]
    assert check(executor, dask.delayed("a,b,c").split(",")) == ["a", "b", "c"]
    assert check(executor, dask.delayed({"k": [1, 2]})["k"][1], "get") == 2


class TwoArgError(Exception):
    """Cannot be rebuilt from its pickled args (pickle calls TwoArgError(msg)),
    unless tblib's pickler is registered for it (dask.multiprocessing installs
    it for every exception class that exists when it is imported)."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")


def test_delayed_exception_that_cannot_be_rebuilt(executor: Any) -> None:
    from taskmill import RemoteTaskError

    @dask.delayed
    def fail() -> None:
        raise TwoArgError(1, 2)

    with pytest.raises(TwoArgError, match="1/2"):
        fail().compute(scheduler="sync")
    # the original type when it can be rebuilt, else the documented fallback that
    # keeps its name and message
    with pytest.raises((TwoArgError, RemoteTaskError), match="1/2") as info:
        fail().compute()
    if isinstance(info.value, RemoteTaskError):
        assert "TwoArgError" in str(info.value)
    assert add(1, 1).compute() == 2


def test_future_from_compute_inside_delayed(executor: Any) -> None:
    e = executor
    fut = e.compute(db.from_sequence(range(10), npartitions=3).sum())
    assert isinstance(fut, Future)
    assert add(fut, 1).compute() == 46
    assert check(executor, db.from_sequence(range(10), npartitions=3).map(operator.add, 1).sum().to_delayed()) == 55
    assert dask.compute(add(fut, fut), scheduler=e.get) == (90,)


def _key_graph(k1: Any, k2: Any) -> dict[Any, Any]:
    return {k1: 1, k2: 2, "out": (operator.add, k1, (operator.mul, k2, 10))}


def test_distinct_keys_stay_distinct(executor: Any) -> None:
    dsk = _key_graph("5", 5)
    assert dask.get(dsk, "out") == 21
    assert executor.get(dsk, "out") == 21


def test_keys_that_would_collide_are_refused_clearly(executor: Any) -> None:
    dsk = _key_graph("('x', 0)", ("x", 0))
    with pytest.raises(ValueError, match="rename one"):
        executor.get(dsk, "out")
