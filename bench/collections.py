"""Dask collections on taskmill and on dask.distributed, side by side.

    .venv/bin/python bench/collections.py [--repeat 3] [--markdown PATH]

Each measurement runs in a fresh process with a local cluster of 2 worker
processes x 1 thread (``taskmill.Executor`` or ``distributed.Client``), builds
the collection, and times ``compute`` through the public API (``x.compute()``
with the client open).  Repetitions alternate between the systems; the report
gives medians and the taskmill/dask time ratio.  Workloads (issue 3 targets):

* ``array-mean``: ``da.random.random((10000, 10000), chunks=(1000, 1000)).mean()``, target <= 0.8x
* ``array-xxt``: ``(x + x.T).sum()`` on the same array, target <= 0.8x
* ``df-groupby``: 2,000,000-row dataframe, ``groupby("k").v.mean()``, target <= 1.0x
* ``df-set-index``: the same frame ``set_index("k")`` (tasks shuffle), target <= 1.0x
* ``df-merge``: a 2,000,000-row frame merged with a 2,000,000-row lookup table on a
  column with unique keys (tasks shuffle), target <= 1.0x
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

WORKLOADS = {
    "array-mean": 0.8,
    "array-xxt": 0.8,
    "df-groupby": 1.0,
    "df-set-index": 1.0,
    "df-merge": 1.0,
}


def build(name: str) -> Any:
    import dask.array as da
    import dask.dataframe as dd
    import numpy as np
    import pandas as pd

    if name.startswith("array"):
        x = da.random.random((10000, 10000), chunks=(1000, 1000))
        return x.mean() if name == "array-mean" else (x + x.T).sum()
    n = 2_000_000
    rng = np.random.default_rng(0)
    left = dd.from_pandas(pd.DataFrame({"k": rng.integers(0, 1000, n), "v": rng.random(n)}),
                          npartitions=20)
    if name == "df-groupby":
        return left.groupby("k").v.mean()
    if name == "df-set-index":
        return left.set_index("k").v.sum()
    # a lookup table with unique keys, so the result has as many rows as ``left``
    right = dd.from_pandas(pd.DataFrame({"j": rng.permutation(n), "w": rng.random(n)}),
                           npartitions=20)
    keyed = left.assign(j=left.v.mul(n).astype("int64"))
    return keyed.merge(right, on="j", shuffle_method="tasks").w.sum()


def measure(system: str, name: str) -> float:
    """One timed compute in this process (run as a child)."""
    import dask

    if system == "taskmill":
        from taskmill import Executor

        client: Any = Executor(n_workers=2, threads_per_worker=1)
    else:
        from distributed import Client

        client = Client(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        with dask.config.set({"dataframe.shuffle.method": "tasks"}):
            client.submit(sum, [1]).result()  # warm up
            collection = build(name)
            start = time.perf_counter()
            collection.compute()
            return time.perf_counter() - start
    finally:
        client.close()


def run_child(system: str, name: str) -> float:
    out = subprocess.run([sys.executable, __file__, "--child", system, name], capture_output=True,
                         text=True, timeout=900)
    for line in out.stdout.splitlines():
        if line.startswith("@@SECONDS "):
            return float(line.split()[1])
    raise RuntimeError(f"{system} {name} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description="dask collections: taskmill vs dask.distributed")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default=",".join(WORKLOADS))
    parser.add_argument("--markdown", default=None)
    parser.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(f"@@SECONDS {measure(*args.child)}", flush=True)
        return
    rows = []
    for name in args.only.split(","):
        times: dict[str, list[float]] = {"taskmill": [], "dask": []}
        for rep in range(args.repeat):
            order = ["taskmill", "dask"] if rep % 2 == 0 else ["dask", "taskmill"]
            for system in order:
                seconds = run_child(system, name)
                times[system].append(seconds)
                print(f"{name:14s} rep {rep + 1} {system:9s} {seconds:7.2f} s", flush=True)
        tm, dk = statistics.median(times["taskmill"]), statistics.median(times["dask"])
        rows.append((name, tm, dk, tm / dk, WORKLOADS[name], times))
    lines = ["| workload | taskmill median (s) | dask median (s) | taskmill/dask | target | met? |",
             "|---|---|---|---|---|---|"]
    for name, tm, dk, ratio, target, _ in rows:
        lines.append(f"| {name} | {tm:.2f} | {dk:.2f} | {ratio:.2f} | <= {target} | "
                     f"{'yes' if ratio <= target else '**no**'} |")
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n\n```\n" + json.dumps({r[0]: r[5] for r in rows}, indent=1) + "\n```\n")


if __name__ == "__main__":
    main()
