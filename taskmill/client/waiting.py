"""``wait``, ``as_completed``, ``fire_and_forget`` and waiting for workers.

Theory of operation
-------------------
Futures are ``concurrent.futures.Future`` objects, so ``wait`` is the standard
library's.  ``wait`` and ``fire_and_forget`` take what dask.distributed's take:
a Future, a persisted dask collection, or (nested) lists, tuples, sets and
dicts of them (:func:`taskmill.client.nested.futures_in`).

``as_completed`` follows dask.distributed's: futures may be added while
iterating (``add``, ``update``), ``batches()`` yields everything done so far,
``with_results=True`` yields ``(future, result)`` pairs, and ``async for``
works with an asynchronous Executor.  Its state, under one condition:

* ``_pending``: each added future with how many times it was added and is
  not done yet (a future added twice is yielded twice, as in dask);
* ``_done``: futures done and not yet yielded, in the order they finished.

Each ``add`` registers a completion callback on the future; it runs on
whatever thread completes the future (the client's loop thread, or the
adding thread for a future done already), moves the future from
``_pending`` to ``_done`` and wakes the waiters: blocked threads through the
condition, ``async for`` waiters through their loop (``call_soon_threadsafe``).
Nothing polls.  Iteration ends when both are empty, so futures added while
iterating are yielded too.  Results (``with_results``) are fetched by the
consumer when a future is yielded, not by the callback: in the blocking
mode with ``result()``, in ``async for`` by awaiting the future.

``wait_for_workers`` asks the scheduler for its workers (``scheduler_info``)
with a short backoff (10 ms doubling to 200 ms), as dask.distributed polls:
clients get no message when a worker joins, and a request every 200 ms
costs the scheduler nothing to speak of.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from taskmill.client.future import Future
from taskmill.client.nested import futures_in
from taskmill.protocol.vocabulary import FireAndForget, SchedulerInfo

#: first and longest pause (seconds) between two questions of ``wait_for_workers``
WORKERS_POLL_FIRST = 0.01
WORKERS_POLL_MAX = 0.2


def wait(futures: Any, timeout: float | None = None,
         return_when: str = concurrent.futures.ALL_COMPLETED) -> Any:
    """Wait for futures (a Future, a persisted dask collection, or lists of
    them); returns ``(done, not_done)`` like the standard library."""
    return concurrent.futures.wait(futures_in(futures), timeout=timeout, return_when=return_when)


class as_completed:  # noqa: N801 - a function-like class, as in concurrent.futures
    """Iterate over futures in the order they complete, as dask.distributed's
    ``as_completed`` does.

    ``for f in as_completed(futures)`` yields each future once it is done
    (finished, failed or cancelled); ``async for`` does the same with the
    futures of an asynchronous Executor.  Futures added while iterating
    (``add(f)``, ``update(fs)``) are yielded too; iteration ends when every
    future added has been yielded.  A future added twice is yielded twice.

    ``with_results=True`` yields ``(future, result)`` pairs, fetching each
    result as its future is yielded.  A failed task then raises its
    exception from the iteration (``raise_errors=True``, the default) or
    gives the exception object as its result (``raise_errors=False``); a
    cancelled future gives a ``CancelledError`` object as its result.

    ``batches()`` yields lists of every future done so far (at least one
    each).  ``count()`` (and ``len()``) is the number of futures not yielded
    yet, done or not; ``is_empty()`` says whether it is zero;
    ``has_ready()`` whether one is done and waiting to be yielded.

    ``timeout`` (seconds from the call to ``as_completed``) bounds the
    waiting: past it, the next step raises ``TimeoutError``.
    """

    def __init__(self, futures: Iterable[Future] | None = None, with_results: bool = False,
                 raise_errors: bool = True, *, timeout: float | None = None) -> None:
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
            raise ValueError(f"as_completed(timeout=) takes seconds (a number >= 0) or None, "
                             f"not {timeout!r}")
        self.with_results = with_results
        self.raise_errors = raise_errors
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._timeout = timeout
        self._condition = threading.Condition(threading.Lock())
        self._pending: dict[Future, int] = {}  # strong references until done
        self._done: collections.deque[Future] = collections.deque()
        self._sessions: set[Any] = set()
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        if futures is not None:
            self.update(futures)

    # -- feeding ------------------------------------------------------------ #
    def add(self, future: Future) -> None:
        """Add a future; it is yielded once it is done (also while iterating)."""
        self.update((future,))

    def update(self, futures: Iterable[Future]) -> None:
        """Add several futures; each is yielded once it is done."""
        if isinstance(futures, Future):
            raise TypeError("as_completed.update takes an iterable of Futures, not one Future: "
                            "use add(future)")
        added = list(futures)
        for f in added:
            if not isinstance(f, Future):
                raise TypeError(f"as_completed takes taskmill Futures, got {type(f).__name__} "
                                f"({f!r:.80}); submit the work with an Executor first")
        with self._condition:
            for f in added:
                self._pending[f] = self._pending.get(f, 0) + 1
                self._sessions.add(f._session)
        for f in added:  # outside the lock: a done future calls back at once
            f._notify_when_done(self._on_done)

    def _on_done(self, future: Any) -> None:
        """A future completed (on whatever thread completed it)."""
        with self._condition:
            left = self._pending.get(future, 0) - 1
            if left < 0:  # cleared meanwhile
                return
            if left:
                self._pending[future] = left
            else:
                del self._pending[future]
            self._done.append(future)
            self._condition.notify_all()
            waiters, self._async_waiters = self._async_waiters, []
        for loop, waiter in waiters:
            try:
                loop.call_soon_threadsafe(_wake, waiter)
            except RuntimeError:  # that loop is closed: nobody waits there any more
                pass

    def clear(self) -> None:
        """Forget every future, done or not: iteration ends."""
        with self._condition:
            self._pending.clear()
            self._done.clear()
            self._condition.notify_all()
            waiters, self._async_waiters = self._async_waiters, []
        for loop, waiter in waiters:
            try:
                loop.call_soon_threadsafe(_wake, waiter)
            except RuntimeError:
                pass

    # -- counting ----------------------------------------------------------- #
    def count(self) -> int:
        """How many futures are still to be yielded: computing or done."""
        with self._condition:
            return sum(self._pending.values()) + len(self._done)

    __len__ = count

    def is_empty(self) -> bool:
        """True when no future is left to yield (computing or done)."""
        return self.count() == 0

    def has_ready(self) -> bool:
        """True when a done future waits to be yielded."""
        with self._condition:
            return bool(self._done)

    def __repr__(self) -> str:
        with self._condition:
            waiting, done = sum(self._pending.values()), len(self._done)
        return f"<as_completed: waiting={waiting} done={done}>"

    # -- blocking iteration ------------------------------------------------- #
    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        future = self._take(block=True)
        assert future is not None  # blocking: a future, or StopIteration
        return self._deliver(future)

    next = __next__

    def _take(self, block: bool) -> Future | None:
        """The next done future; None when not ``block`` and none is done.
        StopIteration when nothing is left."""
        with self._condition:
            while not self._done:
                if not self._pending:
                    raise StopIteration
                if not block:
                    return None
                if any(s.on_loop_thread() for s in self._sessions):
                    raise RuntimeError(
                        "as_completed would block the event loop these futures complete on: "
                        "with an asynchronous Executor iterate with `async for`")
                if not self._condition.wait(self._remaining()):
                    self._check_deadline()
            return self._done.popleft()

    def _remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def _check_deadline(self) -> None:
        """Raise TimeoutError past the deadline (called with the lock held)."""
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise TimeoutError(
                f"as_completed: {_futures(sum(self._pending.values()))} not done within "
                f"timeout={self._timeout:g} s of the call; raise the timeout or leave it out")

    def _deliver(self, future: Future) -> Any:
        """What one step yields for a done future (blocking for its result)."""
        if not self.with_results:
            return future
        if future.status == "cancelled":
            return future, _cancelled(future)
        try:
            return future, future.result()
        except Exception as exc:
            return future, self._failed(exc)

    def _failed(self, exc: Exception) -> Exception:
        """The error a done future's result raised, to pair with it; re-raised
        instead when ``raise_errors`` (a cancellation is always paired)."""
        if self.raise_errors and not isinstance(exc, concurrent.futures.CancelledError):
            raise exc
        return exc

    def next_batch(self, block: bool = True) -> list[Any]:
        """Every future done so far: at least one with ``block`` (waiting for
        it; StopIteration when nothing is left), else possibly none."""
        first = self._take(block)
        if first is None:
            return []
        with self._condition:
            taken = [first, *self._done]
            self._done.clear()
        return [self._deliver(f) for f in taken]

    def batches(self) -> Iterator[list[Any]]:
        """Yield lists of the futures (or ``(future, result)`` pairs) done so
        far, each list as soon as one is done, until none is left."""
        while True:
            try:
                batch = self.next_batch(block=True)
            except StopIteration:
                return
            yield batch

    # -- asynchronous iteration --------------------------------------------- #
    def __aiter__(self) -> as_completed:
        return self

    async def __anext__(self) -> Any:
        loop = asyncio.get_running_loop()
        while True:
            with self._condition:
                if self._done:
                    future = self._done.popleft()
                    break
                if not self._pending:
                    raise StopAsyncIteration
                waiter: asyncio.Future[None] = loop.create_future()
                self._async_waiters.append((loop, waiter))
            remaining = self._remaining()
            if remaining is None:
                await waiter
            else:
                try:
                    await asyncio.wait_for(waiter, remaining)
                except asyncio.TimeoutError:
                    with self._condition:
                        self._check_deadline()
        if not self.with_results:
            return future
        if future.status == "cancelled":
            return future, _cancelled(future)
        try:
            return future, await _result_here(future)
        except Exception as exc:
            return future, self._failed(exc)


async def _result_here(future: Future) -> Any:
    """``await future`` on the running loop, also for a future of a blocking
    Executor, whose session lives on that Executor's own loop thread."""
    session_loop = getattr(future._session, "loop", None)
    if session_loop is None or session_loop is asyncio.get_running_loop():
        return await future
    return await asyncio.wrap_future(
        asyncio.run_coroutine_threadsafe(future._session.result_async(future), session_loop))


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _cancelled(future: Future) -> concurrent.futures.CancelledError:
    return concurrent.futures.CancelledError(f"{future.key} was cancelled")


def _futures(n: int) -> str:
    return f"{n} future was" if n == 1 else f"{n} futures were"


def fire_and_forget(futures: Any) -> None:
    """Run these tasks (Futures, persisted dask collections, or lists of them)
    to completion even if every Future of them is released."""
    by_session: dict[Any, list[str]] = {}
    for f in futures_in(futures):
        by_session.setdefault(f._session, []).append(f.key)
    for session, keys in by_session.items():
        session.send(FireAndForget("", session.id, tuple(keys)))


def check_n_workers(n_workers: Any, timeout: Any) -> None:
    """The arguments of ``Executor.wait_for_workers``, checked in the caller's thread."""
    if isinstance(n_workers, bool) or not isinstance(n_workers, int):
        raise TypeError(f"wait_for_workers(n_workers) takes a whole number of workers, "
                        f"not {type(n_workers).__name__} {n_workers!r}")
    if n_workers < 1:
        raise ValueError(f"wait_for_workers(n_workers) takes a number of workers >= 1, "
                         f"not {n_workers}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or timeout < 0):
        raise ValueError(f"wait_for_workers(timeout=) takes seconds (a number >= 0) or None, "
                         f"not {timeout!r}")


def running_workers(info: dict[str, Any]) -> int:
    """The workers of ``scheduler_info()`` that take new work (as dask counts
    them: neither paused nor retiring)."""
    return sum(1 for w in info.get("workers", {}).values()
               if not w.get("paused") and not w.get("retiring"))


async def wait_for_workers(session: Any, n_workers: int, timeout: float | None) -> None:
    """Return once the scheduler of ``session`` has at least ``n_workers``
    running workers; ``TimeoutError`` after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = WORKERS_POLL_FIRST
    while True:
        have = running_workers(await session.scheduler_call(SchedulerInfo()))
        if have >= n_workers:
            return
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(
                f"wait_for_workers: the scheduler at {session.scheduler_address} has {have} running "
                f"worker{'s' if have != 1 else ''}, {n_workers} were awaited, within timeout="
                f"{timeout:g} s; start more workers (taskmill-worker {session.scheduler_address}) "
                f"or wait longer")
        delay = pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic()))
        await asyncio.sleep(delay)
        pause = min(pause * 2, WORKERS_POLL_MAX)
