"""A strict ``concurrent.futures.Executor`` over a taskmill cluster.

Follows the standard library's executor contract: ``submit`` returns a
Future, ``map`` yields results lazily in order and honours ``timeout`` from
the original call, ``shutdown(wait, cancel_futures)`` refuses later
submissions with RuntimeError.  Every call is impure (runs each time), as
with a thread or process pool.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from taskmill.client.future import Future


class ClusterPoolExecutor(concurrent.futures.Executor):
    """``concurrent.futures.Executor`` view returned by ``Executor.concurrent_executor()``."""

    def __init__(self, executor: Any) -> None:
        self._executor = executor
        self._futures: weakref.WeakSet[Future] = weakref.WeakSet()
        self._shutdown = False
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            fut = self._executor.submit(fn, *args, pure=False, **kwargs)
            self._futures.add(fut)
            return fut

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1, buffersize: int | None = None) -> Iterator[Any]:
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        end_time = None if timeout is None else timeout + time.monotonic()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            futures = self._executor.map(fn, *iterables, pure=False)
            self._futures.update(futures)

        def results() -> Iterator[Any]:
            try:
                futures.reverse()
                while futures:
                    fut = futures.pop()
                    if end_time is None:
                        yield fut.result()
                    else:
                        yield fut.result(end_time - time.monotonic())
            finally:
                for fut in futures:
                    fut.cancel()

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            futures = list(self._futures)
        if cancel_futures:
            for fut in futures:
                fut.cancel()
        if wait:
            concurrent.futures.wait(futures)
