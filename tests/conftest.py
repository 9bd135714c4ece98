"""Shared fixtures: embedded clusters and leak checks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import psutil
import pytest


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01,
             message: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} did not hold within {timeout}s")
        time.sleep(interval)


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail when a test leaves child processes or threads behind."""
    me = psutil.Process()
    children_before = {p.pid for p in me.children(recursive=True)}
    threads_before = {t.ident for t in threading.enumerate()}
    yield

    def clean() -> bool:
        children = {p.pid for p in me.children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE}
        threads = {t.ident for t in threading.enumerate() if t.is_alive()}
        return not (children - children_before) and not (threads - threads_before)

    wait_for(clean, timeout=15, message="no leaked processes or threads")


@pytest.fixture(scope="module")
def inprocess_executor() -> Iterator[object]:
    """An Executor over an in-process cluster (2 workers, 1 thread each)."""
    from taskmill import Executor

    with Executor(n_workers=2, threads_per_worker=1, processes=False) as e:
        yield e
