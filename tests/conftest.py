"""Shared fixtures: embedded clusters and leak checks."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from typing import Any

import psutil
import pytest

# Under tests a shell that gets an exception from its state machine closes
# instead of serving on with half-applied state, and the machines write their
# stimulus logs (for replay) into the run's own directory.
os.environ.setdefault("TASKMILL_STRICT", "1")
os.environ.setdefault("TASKMILL_STIMULUS_DIR", os.path.join(tempfile.gettempdir(),
                                                            f"taskmill-stimuli-{os.getpid()}"))


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01,
             message: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} did not hold within {timeout}s")
        time.sleep(interval)


def _sockets(me: psutil.Process) -> set[tuple[object, object]]:
    return {(c.laddr, c.raddr) for c in me.net_connections(kind="inet")
            if c.status in (psutil.CONN_ESTABLISHED, psutil.CONN_LISTEN)}


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail when a test leaves child processes, threads or sockets behind."""
    me = psutil.Process()
    children_before = {p.pid for p in me.children(recursive=True)}
    threads_before = {t.ident for t in threading.enumerate()}
    sockets_before = _sockets(me)
    yield
    leaks: list[str] = []

    def clean() -> bool:
        children = {p.pid for p in me.children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE}
        threads = {t.name for t in threading.enumerate() if t.is_alive() and t.ident not in threads_before}
        sockets = _sockets(me) - sockets_before
        leaks[:] = [f"processes {children - children_before}", f"threads {threads}", f"sockets {sockets}"]
        return not (children - children_before) and not threads and not sockets

    try:
        wait_for(clean, timeout=15, message="no leaked processes, threads or sockets")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {leaks}") from None


@pytest.fixture
def set_options() -> Iterator[Callable[[Mapping[str, Any]], None]]:
    """``set_options({"comm.timeouts.request": 0.5})``: taskmill options set
    (``taskmill.config.set``) until the end of the test."""
    from taskmill import config

    with ExitStack() as stack:
        yield lambda given: stack.enter_context(config.set(given))


@pytest.fixture
def set_environment() -> Iterator[Callable[[Mapping[str, str | None]], None]]:
    """``set_environment({"TASKMILL_DATA_TIMEOUT": "5"})``: environment variables set
    (None: removed) and read by ``taskmill.config.refresh()``; both undone at
    the end of the test."""
    from taskmill import config

    saved = dict(os.environ)

    def change(variables: Mapping[str, str | None]) -> None:
        for name, value in variables.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        config.refresh()

    try:
        yield change
    finally:
        os.environ.clear()
        os.environ.update(saved)
        config.refresh()


@pytest.fixture(scope="module")
def inprocess_executor() -> Iterator[object]:
    """An Executor over an in-process cluster (2 workers, 1 thread each)."""
    from taskmill import Executor

    with Executor(n_workers=2, threads_per_worker=1, processes=False) as e:
        yield e
