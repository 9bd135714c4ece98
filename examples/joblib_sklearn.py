"""scikit-learn's grid search on a taskmill cluster through the joblib backend.

Run with ``python examples/joblib_sklearn.py`` (needs ``taskmill[joblib]`` and
scikit-learn).  The data is scattered to the cluster once; each batch of fits
is one task; the result is the same as with ``n_jobs=1``.
"""

from __future__ import annotations

import time

import joblib
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

import taskmill.joblib  # noqa: F401  (registers the backend "taskmill")
from taskmill import Executor


def main() -> None:
    X, y = make_classification(n_samples=2000, n_features=20, random_state=0)
    grid = {"C": [0.1, 1.0, 10.0, 100.0], "gamma": ["scale", 0.01]}
    with Executor() as e:
        print(f"cluster: {sum(e.nthreads().values())} threads, dashboard {e.dashboard_link}")
        started = time.perf_counter()
        with joblib.parallel_config(backend="taskmill"):
            search = GridSearchCV(SVC(), grid, cv=5, n_jobs=-1).fit(X, y)
        print(f"{len(search.cv_results_['params']) * 5} fits in {time.perf_counter() - started:.2f} s "
              f"on the cluster: best {search.best_params_}, score {search.best_score_:.3f}")
    started = time.perf_counter()
    sequential = GridSearchCV(SVC(), grid, cv=5, n_jobs=1).fit(X, y)
    print(f"the same search with n_jobs=1 in {time.perf_counter() - started:.2f} s: "
          f"best {sequential.best_params_}, score {sequential.best_score_:.3f}")
    assert sequential.best_params_ == search.best_params_


if __name__ == "__main__":
    main()
