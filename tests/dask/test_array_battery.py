"""Issue 3 battery: dask.array on the cluster against dask's synchronous scheduler."""

from __future__ import annotations

from typing import Any

import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
np = pytest.importorskip("numpy")

from numpy.testing import assert_allclose, assert_array_equal  # noqa: E402

from taskmill import Future, wait  # noqa: E402
from tests.conftest import wait_for  # noqa: E402

from tests.dask.compare import on_cluster, reference  # noqa: E402

pytestmark = pytest.mark.timeout(120)

RTOL = 1e-10




def check(e: Any, x: Any, how: str = "default", exact: bool = False, rtol: float = RTOL,
          atol: float = 0.0) -> Any:
    got, want = on_cluster(e, x, how), reference(x)
    assert type(got) is type(want) or (np.isscalar(got) and np.isscalar(want))
    assert np.shape(got) == np.shape(want)
    if exact:
        assert_array_equal(got, want)
    else:
        assert_allclose(got, want, rtol=rtol, atol=atol)
    return got


@pytest.fixture(scope="module")
def arr() -> Any:
    rs = np.random.RandomState(7)
    return rs.standard_normal((60, 40))


@pytest.fixture(scope="module")
def x(arr: Any) -> Any:
    return da.from_array(arr, chunks=(15, 10))


# --------------------------------------------------------------------------- reductions
HOWS = ["default", "get", "compute"]
REDUCTIONS = [(op, axis, HOWS[(i + i // 3) % 3]) for i, (op, axis) in enumerate(
    (op, axis) for op in ["sum", "mean", "std", "var", "min", "max", "prod"] for axis in [None, 0, 1])]


@pytest.mark.parametrize(("op", "axis", "how"), REDUCTIONS)
def test_reductions(executor: Any, x: Any, arr: Any, op: str, axis: Any, how: str) -> None:
    expr = getattr(x, op)(axis=axis)
    got = check(executor, expr, how)
    assert_allclose(got, getattr(arr, op)(axis=axis), rtol=1e-8)


@pytest.mark.parametrize("axis", [None, 0, 1])
@pytest.mark.parametrize("op", ["argmax", "argmin"])
def test_arg_reductions(executor: Any, x: Any, arr: Any, op: str, axis: Any) -> None:
    got = check(executor, getattr(x, op)(axis=axis), exact=True)
    assert_array_equal(got, getattr(arr, op)(axis=axis))


def test_nan_reductions_and_cumsum(executor: Any, arr: Any) -> None:
    a = arr.copy()
    a[::7, ::3] = np.nan
    y = da.from_array(a, chunks=(15, 10))
    check(executor, da.nansum(y, axis=0))
    check(executor, da.nanmean(y))
    check(executor, da.nanstd(y, axis=1))
    got = check(executor, da.nan_to_num(y).cumsum(axis=1))
    assert_allclose(got, np.nan_to_num(a).cumsum(axis=1), rtol=1e-8)


def test_reduction_of_integers_is_exact(executor: Any) -> None:
    y = da.arange(10_000, chunks=777)
    got = check(executor, y.sum(), exact=True)
    assert got == 10_000 * 9_999 // 2
    check(executor, (y % 7).astype("i8").sum(), exact=True)
    check(executor, da.bincount(y % 13), exact=True)
    check(executor, da.unique(y % 17), exact=True)


# --------------------------------------------------------------------------- slicing
def test_slicing(executor: Any, x: Any, arr: Any) -> None:
    cases = [
        x[5:47:3, ::-2],
        x[10],
        x[:, 7],
        x[-1, -1],
        x[None, 3:9, ..., None],
        x[12:13, 29:31],
    ]
    refs = [arr[5:47:3, ::-2], arr[10], arr[:, 7], arr[-1, -1], arr[None, 3:9, ..., None], arr[12:13, 29:31]]
    for expr, ref in zip(cases, refs):
        got = check(executor, expr, exact=True)
        assert_array_equal(got, ref)


def test_fancy_and_boolean_indexing(executor: Any, x: Any, arr: Any) -> None:
    idx = [37, 2, 2, 59, 0, 14]
    got = check(executor, x[idx], exact=True)
    assert_array_equal(got, arr[idx])
    got = check(executor, x[:, [3, 39, 11]], exact=True)
    assert_array_equal(got, arr[:, [3, 39, 11]])
    got = check(executor, x[x > 1.0], exact=True)
    assert_array_equal(got, arr[arr > 1.0])
    mask = da.from_array(arr[:, 0] > 0, chunks=15)
    got = check(executor, x[mask], exact=True)
    assert_array_equal(got, arr[arr[:, 0] > 0])
    got = check(executor, da.where(x > 0, x, -x), exact=True)
    assert_array_equal(got, np.abs(arr))


def test_setitem(executor: Any, arr: Any) -> None:
    y = da.from_array(arr.copy(), chunks=(15, 10))
    y[y < 0] = 0
    y[3:5] = 9.0
    ref = arr.copy()
    ref[ref < 0] = 0
    ref[3:5] = 9.0
    assert_array_equal(check(executor, y, exact=True), ref)


# --------------------------------------------------------------------------- rechunk / shape
@pytest.mark.parametrize("chunks", [(60, 1), (7, 13), (1, 40), (-1, -1), "auto"])
def test_rechunk(executor: Any, x: Any, arr: Any, chunks: Any) -> None:
    y = x.rechunk(chunks)
    got = check(executor, y, exact=True)
    assert_array_equal(got, arr)
    check(executor, (y + 1).sum(axis=0))


def test_reshape_transpose_concatenate_stack(executor: Any, x: Any, arr: Any) -> None:
    check(executor, x.T.reshape((40, 60)).rechunk((40, 60)).reshape((2400,)), exact=True)
    got = check(executor, da.concatenate([x, x[:10]], axis=0), exact=True)
    assert_array_equal(got, np.concatenate([arr, arr[:10]], axis=0))
    got = check(executor, da.stack([x, 2 * x], axis=-1), exact=True)
    assert_array_equal(got, np.stack([arr, 2 * arr], axis=-1))
    check(executor, (x + x.T[:, :, None].transpose((1, 0, 2))[..., 0]), exact=True)
    check(executor, da.block([[x, x], [x, x]]).sum(axis=1))


# --------------------------------------------------------------------------- products
def test_matmul(executor: Any, x: Any, arr: Any) -> None:
    got = check(executor, x @ x.T)
    assert_allclose(got, arr @ arr.T, rtol=1e-8, atol=1e-12)
    got = check(executor, x.T @ x, how="get")
    assert_allclose(got, arr.T @ arr, rtol=1e-8, atol=1e-12)
    v = da.arange(40, chunks=10).astype(float)
    got = check(executor, x.dot(v), how="compute")
    assert_allclose(got, arr.dot(np.arange(40.0)), rtol=1e-8, atol=1e-12)


def test_tensordot_and_einsum(executor: Any, arr: Any) -> None:
    a = np.arange(4 * 6 * 5, dtype=float).reshape(4, 6, 5)
    b = np.arange(6 * 5 * 3, dtype=float).reshape(6, 5, 3) / 10
    A = da.from_array(a, chunks=(2, 3, 5))
    B = da.from_array(b, chunks=(3, 5, 2))
    got = check(executor, da.tensordot(A, B, axes=([1, 2], [0, 1])))
    assert_allclose(got, np.tensordot(a, b, axes=([1, 2], [0, 1])))
    got = check(executor, da.einsum("ijk,jkl->il", A, B))
    assert_allclose(got, np.einsum("ijk,jkl->il", a, b))
    got = check(executor, da.outer(A[0, 0], B[0, 0]))
    assert_allclose(got, np.outer(a[0, 0], b[0, 0]))


# --------------------------------------------------------------------------- linear algebra
@pytest.fixture(scope="module")
def tall() -> Any:
    return np.random.RandomState(3).standard_normal((200, 6))


def test_qr_tall_skinny(executor: Any, tall: Any) -> None:
    A = da.from_array(tall, chunks=(50, 6))
    q, r = da.linalg.qr(A)
    q_got, r_got = dask.compute(q, r)  # on the cluster
    q_ref, r_ref = dask.compute(q, r, scheduler="sync")
    assert_allclose(q_got, q_ref, rtol=1e-8, atol=1e-10)
    assert_allclose(r_got, r_ref, rtol=1e-8, atol=1e-10)
    assert_allclose(q_got @ r_got, tall, atol=1e-10)
    assert_allclose(q_got.T @ q_got, np.eye(6), atol=1e-10)


def test_svd_tall_skinny(executor: Any, tall: Any) -> None:
    A = da.from_array(tall, chunks=(50, 6))
    u, s, v = da.linalg.svd(A)
    u_got, s_got, v_got = e_compute_many(executor, u, s, v)
    u_ref, s_ref, v_ref = dask.compute(u, s, v, scheduler="sync")
    assert_allclose(s_got, s_ref, rtol=1e-8)
    assert_allclose(s_got, np.linalg.svd(tall, compute_uv=False), rtol=1e-8)
    assert_allclose(np.abs(u_got), np.abs(u_ref), atol=1e-10)
    assert_allclose((u_got * s_got) @ v_got, tall, atol=1e-10)


def e_compute_many(e: Any, *xs: Any) -> list[Any]:
    futures = e.compute(list(xs))
    return [f.result() for f in futures]


def test_svd_compressed_seeded(executor: Any, tall: Any) -> None:
    A = da.from_array(tall, chunks=(50, 6))
    u, s, v = da.linalg.svd_compressed(A, k=3, seed=42)
    s_got = on_cluster(executor, s)
    assert_allclose(s_got, reference(s), rtol=1e-8)
    assert_allclose(s_got, np.linalg.svd(tall, compute_uv=False)[:3], rtol=1e-6)


def test_solve_and_cholesky(executor: Any) -> None:
    pytest.importorskip("scipy")  # dask's solve, cholesky and inv call scipy.linalg
    rs = np.random.RandomState(11)
    m = rs.standard_normal((24, 24))
    spd = m @ m.T + 24 * np.eye(24)
    b = rs.standard_normal(24)
    A = da.from_array(spd, chunks=8)
    B = da.from_array(b, chunks=8)
    got = check(executor, da.linalg.solve(A, B), rtol=1e-8, atol=1e-12)
    assert_allclose(got, np.linalg.solve(spd, b), rtol=1e-8)
    L = check(executor, da.linalg.cholesky(A, lower=True), rtol=1e-8, atol=1e-12)
    assert_allclose(L @ L.T, spd, rtol=1e-8)
    got = check(executor, da.linalg.inv(A), rtol=1e-8, atol=1e-12)
    assert_allclose(got @ spd, np.eye(24), atol=1e-8)
    x_ls, *_ = da.linalg.lstsq(da.from_array(m[:, :5], chunks=(8, 5)), B)
    got = check(executor, x_ls, rtol=1e-8, atol=1e-12)
    assert_allclose(got, np.linalg.lstsq(m[:, :5], b, rcond=None)[0], rtol=1e-8)


def test_lu(executor: Any) -> None:
    pytest.importorskip("scipy")
    m = np.random.RandomState(5).standard_normal((16, 16))
    p, l, u = da.linalg.lu(da.from_array(m, chunks=8))
    got = dask.compute(p, l, u)
    want = dask.compute(p, l, u, scheduler="sync")
    for g, w in zip(got, want):
        assert_allclose(g, w, atol=1e-12)


# --------------------------------------------------------------------------- fft
def test_fft(executor: Any) -> None:
    sig = np.random.RandomState(1).standard_normal((8, 64))
    s = da.from_array(sig, chunks=(2, 64))
    got = check(executor, da.fft.fft(s), atol=1e-10)
    assert_allclose(got, np.fft.fft(sig), atol=1e-10)
    got = check(executor, da.fft.rfft(s, axis=1), atol=1e-10)
    assert_allclose(got, np.fft.rfft(sig, axis=1), atol=1e-10)
    back = check(executor, da.fft.ifft(da.fft.fft(s)).real, atol=1e-10)
    assert_allclose(back, sig, atol=1e-10)
    got = check(executor, da.fft.fft2(s.rechunk((8, 64))), atol=1e-10)
    assert_allclose(got, np.fft.fft2(sig), atol=1e-10)
    check(executor, da.fft.fftshift(da.fft.fftfreq(64, chunks=16)), exact=True)


# --------------------------------------------------------------------------- map_blocks / map_overlap
def _block_info_tag(b: Any, block_info: Any = None) -> Any:
    loc = block_info[0]["chunk-location"]
    return b * 0 + loc[0] * 100 + loc[1]


def test_map_blocks(executor: Any, x: Any, arr: Any) -> None:
    got = check(executor, x.map_blocks(np.sin), rtol=1e-12)
    assert_allclose(got, np.sin(arr), rtol=1e-12)
    tagged = check(executor, x.map_blocks(_block_info_tag, dtype=float), exact=True)
    assert tagged[0, 0] == 0 and tagged[59, 39] == 303 and tagged[16, 11] == 101
    # changes chunk shape: block sums
    sums = x.map_blocks(lambda b: b.sum(keepdims=True), chunks=(1, 1))
    got = check(executor, sums)
    assert got.shape == (4, 4)
    assert_allclose(got.sum(), arr.sum(), rtol=1e-8)
    # two inputs
    check(executor, da.map_blocks(np.add, x, x.T.T * 2), exact=True)


def test_map_overlap(executor: Any, arr: Any) -> None:
    x = da.from_array(arr, chunks=(15, 10))

    def smooth(b: Any) -> Any:
        out = b.copy()
        out[1:-1, 1:-1] = (b[:-2, 1:-1] + b[2:, 1:-1] + b[1:-1, :-2] + b[1:-1, 2:]) / 4
        return out

    for boundary in ("reflect", "periodic", "none", 0):
        y = x.map_overlap(smooth, depth=1, boundary=boundary, dtype=float)
        check(executor, y, rtol=1e-12)
    # against numpy: interior identical to a whole-array stencil
    whole = smooth(arr)
    got = on_cluster(executor, x.map_overlap(smooth, depth=1, boundary="none"))
    assert_allclose(got[1:-1, 1:-1], whole[1:-1, 1:-1], rtol=1e-12)
    y1 = da.from_array(np.arange(30.0), chunks=7)
    got = check(executor, y1.map_overlap(lambda b: np.convolve(b, [1, 1, 1], mode="same"), depth=1,
                                         boundary=0), exact=True)
    assert_array_equal(got, np.convolve(np.arange(30.0), [1, 1, 1], mode="same"))


# --------------------------------------------------------------------------- random
def test_seeded_random_generator(executor: Any) -> None:
    rng = da.random.default_rng(42)
    r = rng.random((50, 30), chunks=(10, 10))
    got = check(executor, r, exact=True)
    assert 0 <= got.min() and got.max() < 1
    check(executor, r.mean(axis=0))
    n = da.random.default_rng(42).normal(5, 2, size=(200,), chunks=50)
    check(executor, n, exact=True)
    # the same seed gives the same numbers twice on the cluster
    again = da.random.default_rng(42).random((50, 30), chunks=(10, 10))
    assert_array_equal(on_cluster(executor, again, "compute"), got)


def test_seeded_random_state(executor: Any) -> None:
    rs = da.random.RandomState(42)
    r = rs.random_sample((40, 40), chunks=(10, 20))
    got = check(executor, r, exact=True)
    check(executor, da.random.RandomState(42).randint(0, 10, size=100, chunks=25), exact=True)
    check(executor, da.random.RandomState(42).permutation(20), exact=True)
    assert_array_equal(on_cluster(executor, da.random.RandomState(42).random_sample((40, 40), chunks=(10, 20)),
                                  "get"), got)
    assert abs(on_cluster(executor, r.mean()) - 0.5) < 0.1


# --------------------------------------------------------------------------- more of the API
def _rmax(b: Any, axis: Any, keepdims: bool) -> Any:
    return b.max(axis=axis, keepdims=keepdims)


EXTRA = {
    "percentile": lambda x: da.percentile(x.ravel(), [10, 50, 90]),
    "histogram": lambda x: da.histogram(x, bins=5, range=(-3, 3))[0],
    "topk": lambda x: da.topk(x.ravel(), -4),
    "argtopk": lambda x: da.argtopk(x.ravel(), 5),
    "apply_along_axis": lambda x: da.apply_along_axis(np.sort, 1, x),
    "coarsen": lambda x: da.coarsen(np.sum, x, {0: 2, 1: 2}),
    "blockwise_outer": lambda x: da.blockwise(np.outer, "ij", x[:, 0], "i", x[0], "j", dtype=float),
    "drop_axis": lambda x: x.map_blocks(lambda b: b.sum(axis=1), drop_axis=1),
    "custom_reduction": lambda x: da.reduction(x, _rmax, _rmax, axis=0, dtype=float),
    "norm": lambda x: da.linalg.norm(x, axis=0),
    "corrcoef": lambda x: da.corrcoef(x[:, :5].T),
    "diff_cumprod": lambda x: da.diff(x, axis=0).cumprod(axis=1),
    "isin": lambda x: da.isin(da.arange(20, chunks=5), [1, 5, 19]),
    "choice": lambda x: da.random.default_rng(42).choice(100, size=30, chunks=10),
    "delayed_of_blocks": lambda x: dask.delayed(sum)([dask.delayed(np.sum)(b) for b in x.to_delayed().ravel()]),
}


@pytest.mark.parametrize("name", sorted(EXTRA))
def test_more_array_api(executor: Any, x: Any, name: str) -> None:
    expr = EXTRA[name](x)
    got, want = on_cluster(executor, expr), reference(expr)
    assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-10)


def test_other_scheduler_setting_wins_inside_config_block(executor: Any, x: Any) -> None:
    # a user's explicit dask.config.set still chooses the scheduler while the executor is open
    with dask.config.set(scheduler="threads"):
        assert dask.config.get("scheduler") == "threads"
        assert_allclose(x.sum().compute(), reference(x.sum()), rtol=1e-10)
    assert dask.config.get("scheduler") == executor.get


# --------------------------------------------------------------------------- persist
def test_persist_then_compute(executor: Any, arr: Any) -> None:
    e = executor
    x = da.from_array(arr, chunks=(15, 10))
    y = (x * 2 + 1).rechunk((20, 20))
    p = e.persist(y)
    assert dask.is_dask_collection(p)
    assert p.chunks == y.chunks
    keys = [k if isinstance(k, str) else repr(k) for k in dask.core.flatten(p.__dask_keys__())]
    assert len(keys) == 6
    # persist returns at once; the data lands on the cluster soon after
    wait_for(lambda: all(e.who_has().get(k) for k in keys), timeout=30, message="persisted chunks held")
    for expr_p, expr_y in [(p, y), (p.sum(axis=0), y.sum(axis=0)), (p @ p.T, y @ y.T),
                           (p[::3, [1, 5]], y[::3, [1, 5]])]:
        assert_allclose(on_cluster(e, expr_p), reference(expr_y), rtol=1e-10)
        assert_allclose(on_cluster(e, expr_p, "compute"), reference(expr_y), rtol=1e-10)


def test_dask_persist_uses_cluster(executor: Any, arr: Any) -> None:
    x = da.from_array(arr, chunks=(15, 10))
    a, b = dask.persist(x.mean(axis=0), x.std(axis=1))
    assert_allclose(a.compute(), arr.mean(axis=0), rtol=1e-10)
    assert_allclose(b.compute(), arr.std(axis=1), rtol=1e-10)
    # a persisted collection mixed with a fresh graph
    assert_allclose((a.sum() + x.sum()).compute(), arr.mean(axis=0).sum() + arr.sum(), rtol=1e-10)


def test_dask_compute_many_outputs(executor: Any, x: Any, arr: Any) -> None:
    got = dask.compute(x.sum(), x.max(axis=0), {"k": [x[0, 0], x.min()]})
    want = dask.compute(x.sum(), x.max(axis=0), {"k": [x[0, 0], x.min()]}, scheduler="sync")
    assert_allclose(got[0], want[0], rtol=1e-10)
    assert_array_equal(got[1], want[1])
    assert got[2]["k"][0] == want[2]["k"][0] and got[2]["k"][1] == want[2]["k"][1]


# --------------------------------------------------------------------------- results are ordinary arrays
def test_computed_array_is_writeable(executor: Any, x: Any) -> None:
    want = reference(x)
    got = on_cluster(executor, x)
    assert want.flags.writeable
    assert got.flags.writeable == want.flags.writeable
    got[0, 0] = 123.0
    assert got[0, 0] == 123.0


def test_persisted_keys_survive_a_fresh_compute_of_the_same_graph(executor: Any) -> None:
    e = executor
    x = da.arange(100, chunks=10) * 3
    p = e.persist(x)
    futures = [v for v in p.__dask_graph__().values() if isinstance(v, Future)]
    wait(futures, timeout=30)
    # the unpersisted expression has the same keys; computing it (and releasing its
    # own futures afterwards) must not drop the persisted data
    assert on_cluster(e, x.sum()) == reference(x.sum()) == 14850
    assert_array_equal(on_cluster(e, x), np.arange(100) * 3)
    assert {f.status for f in futures} == {"finished"}
    wait_for(lambda: all(e.who_has().get(f.key) for f in futures), timeout=10, message="persisted data held")
    assert on_cluster(e, p.sum(), "compute") == 14850


def test_releasing_a_persisted_collection_frees_its_data(executor: Any) -> None:
    import gc

    e = executor
    p = e.persist(da.ones((40, 40), chunks=(10, 10)) * 5)
    futures = [v for v in p.__dask_graph__().values() if isinstance(v, Future)]
    assert len(futures) == 16
    wait(futures, timeout=30)
    keys = [f.key for f in futures]
    assert all(e.who_has().get(k) for k in keys)
    assert on_cluster(e, p.sum()) == 8000
    del p, futures
    gc.collect()
    wait_for(lambda: not any(e.who_has().get(k) for k in keys), timeout=15, message="persisted data freed")


def test_future_as_array_input(executor: Any) -> None:
    e = executor
    fa = e.submit(np.arange, 6)
    y = da.from_delayed(dask.delayed(fa), shape=(6,), dtype=int)
    assert_array_equal(on_cluster(e, y * 2), np.arange(6) * 2)
    assert on_cluster(e, y.sum(), "get") == 15
    total = e.compute(y.sum())
    assert isinstance(total, Future) and total.result() == 15
    assert on_cluster(e, dask.delayed(lambda a, b: a + b)(total, fa).sum()) == 15 * 6 + 15


class BlockError(Exception):
    pass


def _boom(b: Any) -> Any:
    raise BlockError("bad block")


def test_errors_keep_their_type(executor: Any) -> None:
    y = da.ones(10, chunks=5).map_blocks(_boom, dtype=float).sum()
    with pytest.raises(BlockError, match="bad block"):
        y.compute(scheduler="sync")
    with pytest.raises(BlockError, match="bad block"):
        on_cluster(executor, y)
    with pytest.raises(BlockError, match="bad block"):
        executor.compute(y).result()
    bad = executor.submit(_zero_division)
    with pytest.raises(ZeroDivisionError):
        on_cluster(executor, da.from_delayed(dask.delayed(bad), shape=(), dtype=int) + 1)
    assert on_cluster(executor, da.ones(4, chunks=2).sum()) == 4


def _zero_division() -> int:
    return 1 // 0
