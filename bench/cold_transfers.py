"""Cold transfers: the first 200 MB moved in a fresh cluster (issue 15, item 1).

```
.venv/bin/python bench/cold_transfers.py                 # 3 repetitions, 200 MB
.venv/bin/python bench/cold_transfers.py --repeat 5 --mb 20
.venv/bin/python bench/run.py --only cold_w2w,cold_scatter,cold_gather
```

Theory of operation
-------------------
A transfer is "cold" when it is the first one its processes make: nothing of
the receive path has run yet (no buffer of that size was ever mapped, no
large-message code was ever executed), and, between workers, no connection to
the peer exists.  Users feel this one, not the tenth, so each measurement gets
a cluster of its own: every repetition of every workload is a fresh
interpreter (``script`` kind in ``bench/run.py``) starting
``Executor(n_workers=2, threads_per_worker=1)`` or dask.distributed's
``Client(n_workers=2, threads_per_worker=1, processes=True)``.

Untimed preparation, identical for both systems: both workers and the client
import numpy (an import is not a transfer), one tiny task runs on each worker
(the scheduler-worker and client-scheduler paths are warm), and the array to
move is made (on worker A by a task, or in the client for ``scatter``).  Then
one call is timed, from the call to its return:

* ``cold_w2w``: ``submit(nbytes_of, x, workers=[B])`` on the array ``x`` made
  on worker A, to its result (includes one task round trip, like
  ``transfer``);
* ``cold_scatter``: ``scatter(array, workers=[A])``, which returns once the
  worker holds the data;
* ``cold_gather``: ``x.result()`` of the array made on worker A.

The value is MB/s (1 MB = 10^6 bytes) of the array's size over that time.
The array is float64 random numbers (incompressible), as in ``transfer``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics

MB = 1_000_000

#: workload name -> what is timed
WORKLOADS = {
    "cold_w2w": "first array worker A -> task on worker B, fresh cluster",
    "cold_scatter": "first `scatter` of an array to a worker, fresh cluster",
    "cold_gather": "first `result()` of an array made on a worker, fresh cluster",
}

SYSTEM_IMPORT = {
    "taskmill": "from taskmill import Executor as Client, wait",
    "dask": "from distributed import Client, wait",
}
CONSTRUCTOR = {
    "taskmill": "Client(n_workers=2, threads_per_worker=1)",
    "dask": "Client(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)",
}
CLOSE = {
    "taskmill": "c.close()",
    "dask": "cl = c.cluster; c.close(); cl.close()",
}

SCRIPT = r"""
import json, time
import numpy
{import_line}
from bench.tasks import make_array, nbytes_of

if __name__ == "__main__":
    nbytes, workload = {nbytes}, {workload!r}
    c = {constructor}
    deadline = time.monotonic() + 60
    while len(c.scheduler_info()["workers"]) < 2:
        assert time.monotonic() < deadline, "the workers did not come up within 60 s"
        time.sleep(0.05)
    a, b = sorted(c.scheduler_info()["workers"])
    c.run(__import__, "numpy")                       # an import is not a transfer
    for w in (a, b):                                 # warm the task paths, not the data paths
        assert c.submit(nbytes_of, numpy.zeros(1), workers=[w], pure=False).result() == 8
    if workload == "cold_scatter":
        data = make_array(nbytes, 7)
        t = time.perf_counter()
        [x] = c.scatter([data], workers=[a])
        dt = time.perf_counter() - t
        assert x.result().nbytes == data.nbytes
    else:
        x = c.submit(make_array, nbytes, 7, workers=[a], allow_other_workers=False, pure=False)
        wait([x])
        if workload == "cold_w2w":
            t = time.perf_counter()
            got = c.submit(nbytes_of, x, workers=[b], allow_other_workers=False, pure=False).result()
            dt = time.perf_counter() - t
        else:
            t = time.perf_counter()
            got = x.result().nbytes
            dt = time.perf_counter() - t
        assert got == (nbytes // 8) * 8, got
    {close}
    print("@@BENCH " + json.dumps({{"value": nbytes / 1e6 / dt, "seconds": dt}}), flush=True)
"""


def script(system: str, workload: str, nbytes: int) -> str:
    """The fresh-interpreter script of one repetition of ``workload`` on ``system``."""
    if workload not in WORKLOADS:
        raise ValueError(f"unknown cold-transfer workload {workload!r}; pick one of {sorted(WORKLOADS)}")
    return SCRIPT.format(import_line=SYSTEM_IMPORT[system], constructor=CONSTRUCTOR[system],
                         close=CLOSE[system], nbytes=nbytes, workload=workload)


def main() -> None:
    """Standalone: every workload, both systems alternating (ABBA), medians and ratios."""
    from bench.side_by_side import run_child

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mb", type=int, default=200, help="array size in MB (10^6 bytes)")
    parser.add_argument("--systems", default="taskmill,dask")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads")
    options = parser.parse_args()
    systems = [s for s in options.systems.split(",")
               if s != "dask" or importlib.util.find_spec("distributed") is not None]
    names = options.only.split(",")
    values = {w: {s: [] for s in systems} for w in names}
    for rep in range(options.repeat):
        for w in names:
            for s in systems if rep % 2 == 0 else systems[::-1]:
                v = run_child(script(s, w, options.mb * MB), s)["value"]
                values[w][s].append(v)
                print(f"rep {rep + 1} {w:<13} {s:<8} {v:8,.0f} MB/s", flush=True)
    print(f"\n| workload ({options.mb} MB) | {' | '.join(systems)} | taskmill/dask |\n"
          f"|---|{'---|' * (len(systems) + 1)}")
    for w in names:
        med = {s: statistics.median(values[w][s]) for s in systems}
        ratio = f"{med['taskmill'] / med['dask']:.3g}" if "dask" in med and "taskmill" in med else "-"
        print(f"| {w} | {' | '.join(f'{m:,.0f} MB/s' for m in med.values())} | {ratio} |")
    print("\nall values: " + json.dumps(values))


if __name__ == "__main__":
    main()
