"""Fixtures for the client contract tests: one small in-process cluster per module."""

from __future__ import annotations

import pytest

from taskmill import Executor


@pytest.fixture(scope="module")
def executor():
    """An embedded cluster with two in-process single-threaded workers."""
    e = Executor(n_workers=2, threads_per_worker=1, processes=False)
    try:
        yield e
    finally:
        e.close()
