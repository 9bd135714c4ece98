"""scikit-learn through the backend "taskmill" on a real process cluster:
the same fits as ``n_jobs=1``, and nothing left on the scheduler."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

joblib = pytest.importorskip("joblib")
np = pytest.importorskip("numpy")
pytest.importorskip("sklearn")

import taskmill.joblib  # noqa: E402,F401  (registers the backend)
from sklearn.datasets import load_iris, make_classification  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.svm import SVC  # noqa: E402
from taskmill import Executor  # noqa: E402
from tests.conftest import wait_for  # noqa: E402


@pytest.fixture(scope="module")
def process_executor() -> Iterator[Executor]:
    with Executor(n_workers=2, threads_per_worker=1, processes=True) as e:
        yield e  # fresh workers: the scattered X meets their warm-up imports (tests/server/test_warmup.py)


def test_grid_search_matches_the_sequential_fit(process_executor: Executor,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = make_classification(n_samples=1500, n_features=20, random_state=0)  # X: 240 kB
    grid = {"C": [0.5, 5.0]}  # 2 candidates x 3 folds
    sequential = GridSearchCV(SVC(), grid, cv=3, n_jobs=1).fit(X, y)
    scattered: list[Any] = []
    real_scatter = process_executor.scatter

    def counting_scatter(data: Any, **options: Any) -> Any:
        scattered.extend(data)
        return real_scatter(data, **options)

    monkeypatch.setattr(process_executor, "scatter", counting_scatter)
    with joblib.parallel_config(backend="taskmill"):
        distributed = GridSearchCV(SVC(), grid, cv=3, n_jobs=-1).fit(X, y)
    assert [x is X for x in scattered] == [True]  # X once for the six fits; y and the folds are small
    assert distributed.best_params_ == sequential.best_params_
    np.testing.assert_allclose(distributed.cv_results_["mean_test_score"],
                               sequential.cv_results_["mean_test_score"])
    assert distributed.cv_results_["params"] == sequential.cv_results_["params"]
    scheduler = process_executor.cluster.scheduler
    wait_for(lambda: not scheduler.state.tasks, message="the scheduler holds no task of the fit")


def test_cross_val_score_matches_the_sequential_one(process_executor: Executor) -> None:
    X, y = load_iris(return_X_y=True)
    sequential = cross_val_score(SVC(C=2.0), X, y, cv=3, n_jobs=1)
    with joblib.parallel_config(backend="taskmill"):
        distributed = cross_val_score(SVC(C=2.0), X, y, cv=3, n_jobs=-1)
    np.testing.assert_allclose(distributed, sequential)
