"""Fixtures for the dask comparison battery (issue 3)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def executor() -> Iterator[object]:
    """An open Executor over an in-process cluster (2 workers, 1 thread each).

    While it is open it is dask's default scheduler, so a plain ``x.compute()``
    runs on the cluster; ``x.compute(scheduler="sync")`` is the reference."""
    pytest.importorskip("dask")
    from taskmill import Executor

    e = Executor(n_workers=2, threads_per_worker=1, processes=False)
    try:
        yield e
    finally:
        e.close()
