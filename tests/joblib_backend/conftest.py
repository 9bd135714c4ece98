"""Fixtures for the joblib backend tests: one in-process cluster per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskmill import Executor


@pytest.fixture(scope="module")
def executor() -> Iterator[Executor]:
    """An embedded cluster with two in-process single-threaded workers."""
    with Executor(n_workers=2, threads_per_worker=1, processes=False) as e:
        yield e
