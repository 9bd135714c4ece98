"""Small results travel with the scheduler's report: ``result()`` needs no fetch.

A worker attaches the serialized value of a task a client wants to its
``task-finished`` message when the value is small and of a type whose size is
known; the scheduler forwards it with ``key-in-memory`` and does not keep it.
Anything else is fetched from the worker as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from taskmill import Executor
from taskmill.server.task_runner import SMALL_RESULT_BYTES, small_result

pytestmark = pytest.mark.timeout(60)


class Opaque:
    """A type whose size ``sizeof`` cannot know: never attached."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


def inc(x: int) -> int:
    return x + 1


def make_bytes(n: int) -> bytes:
    return b"x" * n


def make_opaque(n: int) -> Opaque:
    return Opaque(b"y" * n)


@pytest.fixture
def counted_executor() -> Iterator[tuple[Executor, list[list[str]]]]:
    """An in-process Executor whose workers record every ``get-data`` request."""
    fetches: list[list[str]] = []
    with Executor(n_workers=2, threads_per_worker=1, processes=False) as e:
        for worker in e.cluster.workers:
            serve = worker.handlers["get-data"]

            def counting(keys: list[str], comm: Any = None, _serve: Any = serve) -> Any:
                fetches.append(list(keys))
                return _serve(comm=comm, keys=keys)

            worker.handlers["get-data"] = counting
        yield e, fetches


def test_small_result_needs_no_fetch(counted_executor: tuple[Executor, list[list[str]]]) -> None:
    e, fetches = counted_executor
    assert e.submit(inc, 41).result() == 42
    assert e.gather(e.map(inc, range(100))) == list(range(1, 101))
    assert fetches == []


def test_large_and_opaque_results_are_fetched(
        counted_executor: tuple[Executor, list[list[str]]]) -> None:
    e, fetches = counted_executor
    big = e.submit(make_bytes, SMALL_RESULT_BYTES * 4)
    assert big.result() == b"x" * (SMALL_RESULT_BYTES * 4)
    opaque = e.submit(make_opaque, 10)
    assert opaque.result().payload == b"y" * 10
    assert sorted(k for keys in fetches for k in keys) == sorted([big.key, opaque.key])


def test_small_result_rules() -> None:
    assert small_result(3) is not None
    assert small_result({"a": [1, 2.5, "x"]}) is not None
    assert small_result(b"z" * (SMALL_RESULT_BYTES * 2)) is None
    assert small_result(Opaque(b"")) is None  # unknown type: its size could hide anything
    assert small_result(list(range(100))) is None  # too many items to size cheaply
    assert small_result(lambda: 1) is None
