"""Actor method calls: taskmill's actors against dask.distributed's, side by side.

```
.venv/bin/python bench/actors.py                 # 3 repetitions
.venv/bin/python bench/actors.py --repeat 5
```

Each repetition runs each system in a fresh interpreter (the order alternates
between repetitions) on 2 worker processes x 1 thread:
``Executor(n_workers=2, threads_per_worker=1)`` or
``distributed.Client(n_workers=2, threads_per_worker=1)``.  One actor of
:class:`Counter` is made with ``submit(Counter, actor=True)`` and warmed up
(200 calls); then, from the client:

- ``call``: 1,000 calls ``a.increment().result()`` one after the other; the
  median of the per-call times, in ms.
- ``burst``: 2,000 calls ``a.increment()`` issued at once, then every result;
  calls per second.
- ``burst_in_order``: 1 when the burst's calls ran in the order they were
  issued (their results increase), else 0.
- ``attribute``: 1,000 reads of ``a.n``; the median per read, in ms.
- ``task``: for reference, 1,000 task round trips ``submit(inc, i,
  pure=False).result()`` on the same cluster; the median, in ms (the target:
  an actor call costs at most a task round trip).

Prints each system's median over the repetitions, and taskmill's ratio.  The
cluster's start-up and the actor's creation are not timed.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Counter:
    """The benchmark's actor."""

    n = 0

    def increment(self) -> int:
        self.n += 1
        return self.n


CHILD = r"""
import json, statistics, sys, time
from bench.actors import Counter
from bench.tasks import inc

system = sys.argv[1]


def per_call(fn, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def measure(c):
    a = c.submit(Counter, actor=True).result()
    for _ in range(200):
        a.increment().result()
    out = {"call": per_call(lambda: a.increment().result(), 1000)}
    t = time.perf_counter()
    futures = [a.increment() for _ in range(2000)]
    results = [f.result() for f in futures]
    out["burst"] = 2000 / (time.perf_counter() - t)
    assert max(results) == a.n
    out["burst_in_order"] = float(results == sorted(results))
    out["attribute"] = per_call(lambda: a.n, 1000)
    i = iter(range(10**9))
    for _ in range(200):
        c.submit(inc, next(i), pure=False).result()
    out["task"] = per_call(lambda: c.submit(inc, next(i), pure=False).result(), 1000)
    return out


if __name__ == "__main__":
    if system == "taskmill":
        from taskmill import Executor
        with Executor(n_workers=2, threads_per_worker=1) as c:
            result = measure(c)
    else:
        from distributed import Client
        with Client(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
            result = measure(c)
    print("@@BENCH " + json.dumps(result), flush=True)
"""

UNITS = {"call": "ms per call (lower is better)", "burst": "calls/s (higher is better)",
         "burst_in_order": "1 if the burst's calls ran in the order issued",
         "attribute": "ms per read (lower is better)", "task": "ms per task (lower is better)"}


def main() -> None:
    sys.path.insert(0, str(ROOT))  # run as a script: the bench package beside it
    from bench import side_by_side

    side_by_side.main(__doc__.splitlines()[0], CHILD, UNITS, "taskmill,dask")


if __name__ == "__main__":
    main()
