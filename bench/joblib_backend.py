"""joblib's ``Parallel`` on the backend "taskmill" against dask's backend and loky.

```
.venv/bin/python bench/joblib_backend.py                 # 3 repetitions, every system installed
.venv/bin/python bench/joblib_backend.py --repeat 5 --systems taskmill,loky
```

Each repetition runs each system in a fresh interpreter (the order alternates
between repetitions) on 2 workers x 1 thread: ``Executor(n_workers=2,
threads_per_worker=1)``, ``distributed.Client(n_workers=2, threads_per_worker=1)``
or loky with ``n_jobs=2``.  Workloads, all through ``Parallel(n_jobs=-1)`` (2
for loky) with joblib's automatic batching:

- ``tiny``: 20,000 calls of ``inc``; calls per second.
- ``shared``: 200 calls that each read one element of the same 40 MB array;
  seconds (taskmill and dask scatter the array, loky memory-maps it).
- ``grid``: scikit-learn's ``GridSearchCV(SVC(), {"C": [0.1, 1, 10, 100]}, cv=5)``
  on 2,000 x 20 samples (20 fits); seconds.

Prints the median of each system per workload.  The cluster's start-up is not timed.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
import numpy as np
import joblib
from joblib import Parallel, delayed
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC
from bench.tasks import inc, element

system = sys.argv[1]


def measure(n_jobs):
    out = {}
    t = time.perf_counter()
    Parallel(n_jobs=n_jobs)(delayed(inc)(i) for i in range(20_000))
    out["tiny"] = 20_000 / (time.perf_counter() - t)
    shared = np.random.default_rng(0).random(5_000_000)
    t = time.perf_counter()
    Parallel(n_jobs=n_jobs)(delayed(element)(shared, i) for i in range(200))
    out["shared"] = time.perf_counter() - t
    X, y = make_classification(n_samples=2000, n_features=20, random_state=0)
    t = time.perf_counter()
    GridSearchCV(SVC(), {"C": [0.1, 1, 10, 100]}, cv=5, n_jobs=n_jobs).fit(X, y)
    out["grid"] = time.perf_counter() - t
    return out


if __name__ == "__main__":
    if system == "loky":
        Parallel(n_jobs=2)(delayed(inc)(i) for i in range(10))  # start the workers
        result = measure(2)
    elif system == "taskmill":
        import taskmill.joblib
        from taskmill import Executor
        with Executor(n_workers=2, threads_per_worker=1) as e, \
                joblib.parallel_config(backend="taskmill"):
            Parallel(n_jobs=-1)(delayed(inc)(i) for i in range(10))
            result = measure(-1)
    else:
        from distributed import Client
        with Client(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c, \
                joblib.parallel_config(backend="dask"):
            Parallel(n_jobs=-1)(delayed(inc)(i) for i in range(10))
            result = measure(-1)
    print("@@BENCH " + json.dumps(result), flush=True)
"""

UNITS = {"tiny": "calls/s (higher is better)", "shared": "s (lower is better)",
         "grid": "s (lower is better)"}


def main() -> None:
    sys.path.insert(0, str(ROOT))  # run as a script: the bench package beside it
    from bench import side_by_side

    side_by_side.main(__doc__.splitlines()[0], CHILD, UNITS, "taskmill,dask,loky")


if __name__ == "__main__":
    main()
