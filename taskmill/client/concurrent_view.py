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
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from taskmill.client.future import Future


class ClusterPoolExecutor(concurrent.futures.Executor):
    """``concurrent.futures.Executor`` view returned by ``Executor.concurrent_executor()``."""

    def __init__(self, executor: Any) -> None:
        self._executor = executor
        self._pending: set[Future] = set()  # strong references: work runs even if the caller drops it
        self._shutdown = False
        self._lock = threading.Lock()

    def _track(self, futures: list[Future]) -> None:
        with self._lock:
            self._pending.update(futures)
        for fut in futures:
            fut._notify_when_done(self._untrack)

    def _untrack(self, fut: Future) -> None:
        with self._lock:
            self._pending.discard(fut)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            fut = self._executor.submit_call(fn, args, kwargs, pure=False)
        self._track([fut])
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
        self._track(futures)

        def results() -> Iterator[Any]:
            try:
                futures.reverse()
                while futures:  # pop inline: no reference to a yielded result stays here
                    if end_time is None:
                        yield futures.pop().result()
                    else:
                        yield futures.pop().result(end_time - time.monotonic())
            finally:
                for fut in futures:
                    fut.cancel()

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            futures = list(self._pending)
        if cancel_futures and futures:
            # like the standard library, cancel only calls that have not started
            running = self._executor.running_keys()
            for fut in futures:
                if fut.key not in running:
                    fut.cancel()
        if wait:
            concurrent.futures.wait(futures)
