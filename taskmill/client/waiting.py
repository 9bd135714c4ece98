"""``wait``, ``as_completed`` and ``fire_and_forget`` over taskmill Futures.

Futures are ``concurrent.futures.Future`` objects, so ``wait`` is the standard
library's; ``as_completed`` adds what cluster users want: futures added while
iterating, and ``with_results`` to get ``(future, result)`` pairs.  ``wait``
and ``fire_and_forget`` take what dask.distributed's take: a Future, a
persisted dask collection, or (nested) lists, tuples, sets and dicts of them
(:func:`taskmill.client.nested.futures_in`).
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from taskmill.client.future import Future
from taskmill.client.nested import futures_in
from taskmill.protocol.vocabulary import FireAndForget


def wait(futures: Any, timeout: float | None = None,
         return_when: str = concurrent.futures.ALL_COMPLETED) -> Any:
    """Wait for futures (a Future, a persisted dask collection, or lists of
    them); returns ``(done, not_done)`` like the standard library."""
    return concurrent.futures.wait(futures_in(futures), timeout=timeout, return_when=return_when)


class as_completed:  # noqa: N801 - a function-like class, as in concurrent.futures
    """Iterate over futures in the order they complete.

    ``with_results=True`` yields ``(future, result)`` pairs (a failed task
    yields its exception object as the result).  ``add(future)`` feeds more
    futures while iterating.
    """

    def __init__(self, futures: Iterable[Future] = (), with_results: bool = False,
                 raise_errors: bool = True) -> None:
        self.with_results = with_results
        self.raise_errors = raise_errors
        self._done: queue.SimpleQueue[Future] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending: set[Future] = set()  # strong references until yielded
        self.update(futures)

    def add(self, future: Future) -> None:
        with self._lock:
            self._pending.add(future)
        future._notify_when_done(self._done.put)

    def update(self, futures: Iterable[Future]) -> None:
        for f in futures:
            self.add(f)

    def count(self) -> int:
        with self._lock:
            return len(self._pending)

    def is_empty(self) -> bool:
        return self.count() == 0

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self.is_empty():
            raise StopIteration
        fut = self._done.get()
        with self._lock:
            self._pending.discard(fut)
        if not self.with_results:
            return fut
        try:
            return fut, fut.result()
        except BaseException as exc:
            if self.raise_errors:
                raise
            return fut, exc


def fire_and_forget(futures: Any) -> None:
    """Run these tasks (Futures, persisted dask collections, or lists of them)
    to completion even if every Future of them is released."""
    by_session: dict[Any, list[str]] = {}
    for f in futures_in(futures):
        by_session.setdefault(f._session, []).append(f.key)
    for session, keys in by_session.items():
        session.send(FireAndForget("", session.id, tuple(keys)))
