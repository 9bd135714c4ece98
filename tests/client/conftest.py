"""Fixtures for the client contract tests: one small in-process cluster per module."""

from __future__ import annotations

from collections.abc import Iterator

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


@pytest.fixture
def gates() -> Iterator[object]:
    """Gates for gated tasks (tests/client/gates.py), all opened at the end."""
    from tests.client.gates import Gates

    g = Gates()
    try:
        yield g
    finally:
        g.open_all()
