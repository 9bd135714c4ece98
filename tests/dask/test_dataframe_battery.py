"""Issue 3 battery: dask.dataframe on the cluster against dask's synchronous scheduler."""

from __future__ import annotations

from typing import Any

import pytest

dask = pytest.importorskip("dask")
pd = pytest.importorskip("pandas")
dd = pytest.importorskip("dask.dataframe")
np = pytest.importorskip("numpy")

import pandas.testing as pdt  # noqa: E402

from taskmill import Future, wait  # noqa: E402

from tests.dask.compare import on_cluster, reference  # noqa: E402

pytestmark = pytest.mark.timeout(120)

NPART = 4




def assert_same(got: Any, want: Any, sort: bool = False, exact: bool = False, dtypes: bool = True) -> None:
    """Equal pandas objects (row order ignored when ``sort``).  ``dtypes=False``
    when comparing with plain pandas: dask turns object/str columns into its
    own string dtype."""
    assert type(got) is type(want)
    kw = {} if dtypes else {"check_dtype": False, "check_index_type": False}
    if isinstance(got, pd.DataFrame):
        if sort:
            got = got.sort_index().sort_values(list(got.columns), kind="stable") if not got.index.is_unique \
                else got.sort_index()
            want = want.sort_index().sort_values(list(want.columns), kind="stable") if not want.index.is_unique \
                else want.sort_index()
        pdt.assert_frame_equal(got, want, check_exact=exact, rtol=1e-9, **kw)
    elif isinstance(got, pd.Series):
        if sort:
            got = got.sort_index(kind="stable") if got.index.is_unique else got.sort_values(kind="stable")
            want = want.sort_index(kind="stable") if want.index.is_unique else want.sort_values(kind="stable")
        pdt.assert_series_equal(got, want, check_exact=exact, rtol=1e-9, **kw)
    elif isinstance(got, pd.Index):
        pdt.assert_index_equal(got, want, exact=dtypes)
    else:
        assert got == pytest.approx(want, rel=1e-9)


def like_pandas(got: Any, want: Any, sort: bool = True) -> None:
    """A cluster result equals what pandas computes (values, not dtype flavours)."""
    assert_same(got, want, sort=sort, dtypes=False)


def check(e: Any, x: Any, how: str = "default", sort: bool = False, exact: bool = False) -> Any:
    got, want = on_cluster(e, x, how), reference(x)
    assert_same(got, want, sort=sort, exact=exact)
    return got


@pytest.fixture(scope="module")
def pdf() -> Any:
    rs = np.random.RandomState(0)
    n = 400
    return pd.DataFrame({
        "k": rs.randint(0, 12, n),
        "g": rs.choice(["a", "b", "c", "d"], n),
        "x": rs.standard_normal(n),
        "y": rs.randint(-50, 50, n),
        "s": rs.choice(["apple", "Banana", "cherry pie", "date", "elder"], n),
    }, index=pd.RangeIndex(n, name="i"))


@pytest.fixture(scope="module")
def ddf(pdf: Any) -> Any:
    return dd.from_pandas(pdf, npartitions=NPART)


def test_config_while_open(executor: Any) -> None:
    assert dask.config.get("scheduler") == executor.get
    assert dask.config.get("dataframe.shuffle.method") == "tasks"


def test_roundtrip_and_elementwise(executor: Any, ddf: Any, pdf: Any) -> None:
    like_pandas(check(executor, ddf), pdf)
    got = check(executor, ddf[ddf.x > 0].assign(z=ddf.x * ddf.y + 1)[["k", "z"]], how="get")
    like_pandas(got, pdf[pdf.x > 0].assign(z=pdf.x * pdf.y + 1)[["k", "z"]])
    assert check(executor, ddf.x.sum(), how="compute") == pytest.approx(pdf.x.sum())
    assert check(executor, ddf.y.max()) == pdf.y.max()
    assert check(executor, ddf.shape[0]) == len(pdf)


# --------------------------------------------------------------------------- groupby
@pytest.mark.parametrize("how", ["default", "get", "compute"])
def test_groupby_basic_aggregations(executor: Any, ddf: Any, pdf: Any, how: str) -> None:
    gb, pgb = ddf.groupby("k"), pdf.groupby("k")
    like_pandas(check(executor, gb.x.sum(), how, sort=True), pgb.x.sum())
    like_pandas(check(executor, gb.x.mean(), how, sort=True), pgb.x.mean())
    like_pandas(check(executor, gb.y.count(), how, sort=True), pgb.y.count())
    like_pandas(check(executor, gb.size(), how, sort=True), pgb.size())
    like_pandas(check(executor, gb[["x", "y"]].max(), how, sort=True), pgb[["x", "y"]].max())


def test_groupby_agg_dict_and_multi_key(executor: Any, ddf: Any, pdf: Any) -> None:
    spec = {"x": ["sum", "mean", "std", "min"], "y": ["count", "max"]}
    got = check(executor, ddf.groupby("g").agg(spec), sort=True)
    like_pandas(got, pdf.groupby("g").agg(spec))
    got = check(executor, ddf.groupby(["g", "k"]).y.sum(), sort=True)
    like_pandas(got, pdf.groupby(["g", "k"]).y.sum())
    spec2 = {"x": "var", "y": "prod", "k": "first"}
    got = check(executor, ddf.groupby("g").agg(spec2), sort=True)
    like_pandas(got, pdf.groupby("g").agg(spec2))
    got = check(executor, ddf.groupby("g").y.nunique(), sort=True)
    like_pandas(got, pdf.groupby("g").y.nunique())


def test_groupby_many_output_partitions_uses_shuffle(executor: Any, ddf: Any, pdf: Any) -> None:
    got = check(executor, ddf.groupby("k").x.sum(split_out=3), sort=True)
    like_pandas(got, pdf.groupby("k").x.sum())
    got = check(executor, ddf.groupby("k").apply(lambda d: d.y.sum() - len(d), meta=("y", "i8")),
                sort=True)
    like_pandas(got, pdf.groupby("k").apply(lambda d: d.y.sum() - len(d)).rename("y"))
    got = check(executor, ddf.groupby("g").x.transform("mean", meta=("x", "f8")), sort=True)
    like_pandas(got, pdf.groupby("g").x.transform("mean"))


# --------------------------------------------------------------------------- merges
@pytest.fixture(scope="module")
def right() -> Any:
    rs = np.random.RandomState(1)
    return pd.DataFrame({"k": np.arange(0, 16), "w": rs.standard_normal(16), "label": [f"L{i}" for i in range(16)]})


@pytest.mark.parametrize("join", ["inner", "left", "outer"])
def test_merge_on_column_both_partitioned(executor: Any, ddf: Any, pdf: Any, right: Any, join: str) -> None:
    dr = dd.from_pandas(right, npartitions=3)
    assert ddf.npartitions > 1 and dr.npartitions > 1
    m = ddf.merge(dr, on="k", how=join, shuffle_method="tasks")
    got = on_cluster(executor, m)
    want = reference(m)
    key = ["i_", "k", "x"]
    norm = lambda d: d.reset_index(drop=True).assign(i_=0).sort_values(["k", "x", "w"]).reset_index(drop=True)  # noqa: E731
    assert_same(norm(got), norm(want))
    like_pandas(norm(got), norm(pdf.merge(right, on="k", how=join)))
    assert key  # the normalised frames are compared column for column above


def test_merge_default_method_on_cluster(executor: Any, ddf: Any, pdf: Any) -> None:
    # no explicit method: the config says "tasks" while the executor is open
    other = dd.from_pandas(pdf[["k", "y"]].rename(columns={"y": "y2"}).iloc[::5], npartitions=2)
    m = ddf[["k", "x"]].merge(other, on="k")
    got = on_cluster(executor, m).sort_values(["k", "x", "y2"]).reset_index(drop=True)
    want = reference(m).sort_values(["k", "x", "y2"]).reset_index(drop=True)
    assert_same(got, want)
    assert len(got) == len(pdf[["k", "x"]].merge(pdf[["k", "y"]].iloc[::5], on="k"))


def test_merge_on_index(executor: Any, ddf: Any, pdf: Any) -> None:
    lhs = ddf.set_index("k")
    rhs = dd.from_pandas(pd.DataFrame({"w": np.arange(12.0) ** 2}, index=pd.Index(np.arange(12), name="k")),
                         npartitions=3)
    assert lhs.npartitions > 1 and rhs.npartitions > 1
    m = lhs.merge(rhs, left_index=True, right_index=True)
    got = check(executor, m, sort=True)
    want = pdf.set_index("k").merge(rhs.compute(scheduler="sync"), left_index=True, right_index=True)
    like_pandas(got.sort_index().sort_values(["x"]), want.sort_index().sort_values(["x"]))
    j = ddf.join(rhs, on="k", how="left")
    check(executor, j, sort=True)


def test_join_with_unknown_divisions(executor: Any, ddf: Any, pdf: Any) -> None:
    lhs = ddf.clear_divisions()
    rhs = dd.from_pandas(pdf[["y"]].rename(columns={"y": "y2"}), npartitions=3).clear_divisions()
    got = check(executor, lhs.join(rhs, how="inner"), sort=True)
    like_pandas(got.sort_index(), pdf.join(pdf[["y"]].rename(columns={"y": "y2"}), how="inner"))


# --------------------------------------------------------------------------- set_index / shuffle
def test_set_index(executor: Any, ddf: Any, pdf: Any) -> None:
    s = ddf.set_index("x")
    got = check(executor, s)
    like_pandas(got, pdf.set_index("x").sort_index())
    assert got.index.is_monotonic_increasing
    # duplicates in the new index
    s2 = ddf.set_index("k")
    got2 = on_cluster(executor, s2)
    assert got2.index.is_monotonic_increasing
    like_pandas(got2.reset_index().sort_values(["k", "x"]).reset_index(drop=True),
                pdf.reset_index(drop=True).sort_values(["k", "x"]).reset_index(drop=True)[got2.reset_index().columns])
    like_pandas(on_cluster(executor, s2.loc[3:5].x.sum()), pdf[pdf.k.between(3, 5)].x.sum())


def test_shuffle_keeps_rows_and_groups_keys(executor: Any, ddf: Any, pdf: Any) -> None:
    sh = ddf.shuffle("k", npartitions=5)
    parts = on_cluster(executor, sh.map_partitions(lambda d: sorted(set(d.k)), meta=("k", object)))
    keysets = [set(p) for p in parts]
    for i, a in enumerate(keysets):  # every key lives in one partition only
        for b in keysets[i + 1:]:
            assert not a & b
    got = check(executor, sh, sort=True)
    like_pandas(got.sort_index(), pdf)


def test_shuffle_on_cluster_uses_tasks_method(executor: Any, ddf: Any) -> None:
    from dask.dataframe.dask_expr._shuffle import DiskShuffle, TaskShuffle

    assert dask.config.get("dataframe.shuffle.method") == "tasks"
    sh = ddf.shuffle("k", npartitions=5)
    lowered = sh.optimize().expr.lower_completely()
    kinds = {type(node) for node in lowered.walk()}
    assert TaskShuffle in kinds and DiskShuffle not in kinds
    names = {k[0] if isinstance(k, tuple) else k for k in sh.__dask_graph__()}
    assert any(n.startswith("split-taskshuffle") for n in names)
    assert any(n.startswith("group-taskshuffle") for n in names)
    assert not any("disk" in n for n in names)
    assert on_cluster(executor, sh.k.count()) == 400
    # merge and set_index too
    m = ddf.merge(ddf[["k", "y"]], on="k").optimize().expr.lower_completely()
    assert DiskShuffle not in {type(n) for n in m.walk()}


# --------------------------------------------------------------------------- window / time
@pytest.fixture(scope="module")
def ts() -> Any:
    idx = pd.date_range("2024-01-01", periods=500, freq="37min")
    rs = np.random.RandomState(2)
    return pd.DataFrame({"v": rs.standard_normal(500).cumsum(), "n": rs.randint(0, 9, 500)}, index=idx)


def test_rolling(executor: Any, ddf: Any, pdf: Any, ts: Any) -> None:
    got = check(executor, ddf.x.rolling(5).mean())
    like_pandas(got, pdf.x.rolling(5).mean())
    got = check(executor, ddf[["x", "y"]].rolling(3, min_periods=1).sum())
    like_pandas(got, pdf[["x", "y"]].rolling(3, min_periods=1).sum())
    dts = dd.from_pandas(ts, npartitions=NPART)
    got = check(executor, dts.v.rolling("2h").max())
    like_pandas(got, ts.v.rolling("2h").max())
    got = check(executor, ddf.x.rolling(4).apply(lambda w: w[-1] - w[0], raw=True))
    like_pandas(got, pdf.x.rolling(4).apply(lambda w: w[-1] - w[0], raw=True))


def test_resample(executor: Any, ts: Any) -> None:
    dts = dd.from_pandas(ts, npartitions=NPART)
    assert dts.known_divisions
    got = check(executor, dts.resample("1D").sum())
    like_pandas(got, ts.resample("1D").sum())
    got = check(executor, dts.v.resample("6h").mean())
    like_pandas(got, ts.v.resample("6h").mean())
    got = check(executor, dts.n.resample("12h").agg("max"))
    like_pandas(got, ts.n.resample("12h").agg("max"))


# --------------------------------------------------------------------------- counting / describing
def test_value_counts_and_nunique(executor: Any, ddf: Any, pdf: Any) -> None:
    got = check(executor, ddf.g.value_counts(), sort=True)
    like_pandas(got, pdf.g.value_counts().sort_index())
    got = check(executor, ddf.k.value_counts(normalize=True), sort=True)
    like_pandas(got.sort_index(), pdf.k.value_counts(normalize=True).sort_index())
    assert check(executor, ddf.k.nunique()) == pdf.k.nunique()
    assert check(executor, ddf.s.nunique(), how="compute") == 5
    got = check(executor, ddf.k.unique(), sort=True)
    assert sorted(got) == sorted(pdf.k.unique())
    got = check(executor, ddf.drop_duplicates(subset=["g", "k"]), sort=True)
    assert len(got) == len(pdf.drop_duplicates(subset=["g", "k"]))


def test_describe(executor: Any, ddf: Any, pdf: Any) -> None:
    got = check(executor, ddf[["x", "y"]].describe())
    want = pdf[["x", "y"]].describe()
    # count, mean, std, min, max agree exactly with pandas; quantiles are approximate in dask
    pdt.assert_frame_equal(got.loc[["count", "mean", "std", "min", "max"]],
                           want.loc[["count", "mean", "std", "min", "max"]], rtol=1e-9)
    got = check(executor, ddf.g.describe())
    assert got["unique"] == 4 and got["count"] == len(pdf)
    check(executor, ddf.x.quantile([0.1, 0.5, 0.9]))


# --------------------------------------------------------------------------- strings
def test_string_methods(executor: Any, ddf: Any, pdf: Any) -> None:
    got = check(executor, ddf.s.str.upper(), exact=True)
    assert list(got) == list(pdf.s.str.upper())
    got = check(executor, ddf.s.str.contains("an"), exact=True)
    assert list(got) == list(pdf.s.str.contains("an"))
    got = check(executor, ddf[ddf.s.str.startswith("c")].s.str.len().sum())
    assert got == pdf[pdf.s.str.startswith("c")].s.str.len().sum()
    got = check(executor, ddf.s.str.slice(0, 3).str.lower() + "-" + ddf.g, exact=True)
    assert list(got) == list(pdf.s.str.slice(0, 3).str.lower() + "-" + pdf.g)
    check(executor, ddf.s.str.replace("a", "_", regex=False).value_counts(), sort=True)


# --------------------------------------------------------------------------- more of the API
def test_more_dataframe_api(executor: Any, ddf: Any, pdf: Any) -> None:
    small = dd.from_pandas(pd.DataFrame({"k": range(12), "kk": np.arange(12) * 10}), npartitions=1)
    check(executor, ddf.merge(small, on="k", broadcast=True), sort=True)
    like_pandas(check(executor, ddf.sort_values("x")), pdf.sort_values("x"), sort=False)
    like_pandas(check(executor, ddf.nlargest(5, "x")), pdf.nlargest(5, "x"), sort=False)
    like_pandas(check(executor, ddf.x.cumsum()), pdf.x.cumsum())
    like_pandas(check(executor, ddf.x.map_overlap(lambda s: s.diff(), 1, 0)), pdf.x.diff())
    like_pandas(check(executor, ddf.groupby("k").cumcount()), pdf.groupby("k").cumcount())
    like_pandas(check(executor, ddf.repartition(npartitions=7)), pdf)
    parts = [dask.delayed(lambda i: pdf.iloc[i * 100:(i + 1) * 100])(i) for i in range(4)]
    like_pandas(check(executor, dd.from_delayed(parts, meta=pdf.iloc[:0])), pdf)
    assert check(executor, ddf.x.map_partitions(len)).tolist() == [100] * NPART


# --------------------------------------------------------------------------- persist
def test_persist_then_compute(executor: Any, ddf: Any, pdf: Any) -> None:
    e = executor
    base = ddf.assign(z=ddf.x * 2)
    p = e.persist(base)
    assert dask.is_dask_collection(p)
    assert p.npartitions == base.npartitions
    # the rebuilt collection's graph holds one Future per partition
    futures = [v for v in p.__dask_graph__().values() if isinstance(v, Future)]
    assert len(futures) == base.npartitions
    wait(futures, timeout=30)
    assert all(f.status == "finished" for f in futures)
    held = e.who_has()
    assert all(held.get(f.key) for f in futures)
    assert_same(on_cluster(e, p), reference(base))
    like_pandas(on_cluster(e, p.groupby("g").z.sum(), "compute").sort_index(),
                pdf.assign(z=pdf.x * 2).groupby("g").z.sum())
    # set_index samples quantiles with a seed from the collection's token, so the
    # persisted and the fresh collection may split differently: compare as sets of rows
    rows = lambda s: s.reset_index().sort_values(["y", "z"]).reset_index(drop=True)  # noqa: E731
    got = on_cluster(e, p.set_index("y").z, "get")
    assert got.index.is_monotonic_increasing
    assert_same(rows(got), rows(reference(base.set_index("y").z)))
    p2, q2 = dask.persist(base.k.sum(), base.set_index("x"))
    assert p2.compute() == pdf.k.sum()
    like_pandas(q2.compute(), pdf.assign(z=pdf.x * 2).set_index("x").sort_index())


# --------------------------------------------------------------------------- results are ordinary frames
def test_computed_frame_is_mutable(executor: Any, ddf: Any) -> None:
    want = reference(ddf[["x", "y"]])
    want.loc[0, "x"] = 99.0
    got = on_cluster(executor, ddf[["x", "y"]])
    got.loc[0, "x"] = 99.0
    assert got.loc[0, "x"] == 99.0
    assert_same(got, want)


def test_executor_opened_over_disk_setting_shuffles_with_tasks(executor: Any, ddf: Any, pdf: Any) -> None:
    from dask.dataframe.dask_expr._shuffle import DiskShuffle, TaskShuffle

    from taskmill import Executor

    with dask.config.set({"dataframe.shuffle.method": "disk"}):
        with Executor(n_workers=1, threads_per_worker=1, processes=False) as e2:
            assert dask.config.get("scheduler") == e2.get
            assert dask.config.get("dataframe.shuffle.method") == "tasks"
            s = ddf.set_index("x")
            kinds = {type(n) for n in s.optimize().expr.lower_completely().walk()}
            assert DiskShuffle not in kinds
            assert TaskShuffle in kinds
            like_pandas(s.compute(), pdf.set_index("x"))
        # the module's executor is still open: it is the scheduler again, still on tasks
        assert dask.config.get("scheduler") == executor.get
        assert dask.config.get("dataframe.shuffle.method") == "tasks"


def test_errors_keep_their_type(executor: Any, ddf: Any) -> None:
    bad = ddf.map_partitions(lambda d: d["no-such-column"], meta=("x", "f8"))
    with pytest.raises(KeyError, match="no-such-column"):
        bad.compute(scheduler="sync")
    with pytest.raises(KeyError, match="no-such-column"):
        on_cluster(executor, bad)
    with pytest.raises(KeyError, match="no-such-column"):
        on_cluster(executor, bad.sum(), "compute")
    assert on_cluster(executor, ddf.y.count()) == 400
