"""``Future``: a real ``concurrent.futures.Future`` for a task on the cluster.

Theory of operation
-------------------
Every Future belongs to one client session and names one key.  All Futures of
a key in a session share a :class:`KeyState` (status, where the data is, the
fetched value, the error); the session updates it from scheduler reports on
its event loop and then completes each live Future through
``concurrent.futures.Future``'s own setters, so the standard library's
``wait`` and ``as_completed`` work unchanged.

The Future is RUNNING (``running()``) while its call runs on a worker: the
worker reports calls still running a few milliseconds after they started,
and the scheduler tells the clients (``keys-running``); a call that goes
back to waiting (its worker died, a retry) makes it PENDING again.  So
``cancel()`` keeps the standard library's meaning: True only for a call that
has not started.

A finished task does not move its data: the Future is completed with a
private marker and ``result()`` fetches the value from a worker the first time
it is asked for (once per key; later calls reuse it).  Small results of tasks
a client wants come along with the scheduler's report instead (the worker
attaches them to ``task-finished``), so ``result()`` needs no fetch at all.

Reference counting: each live Future counts once for its key; when the last
is released (``release()`` or garbage collection) the session tells the
scheduler, which frees the data unless another client or a task needs it.
"""

from __future__ import annotations

import concurrent.futures
import time
from concurrent.futures._base import FINISHED as _CF_FINISHED
from concurrent.futures._base import PENDING as _CF_PENDING
from concurrent.futures._base import RUNNING as _CF_RUNNING
from collections.abc import Callable, Generator
from typing import Any, Protocol

from taskmill.client.future_pickling import reduce_future
from taskmill.client.keystate import CANCELLED, FINISHED, KeyState


class FutureSession(Protocol):
    """What a Future asks of the client session it belongs to (a
    :class:`taskmill.client.session.Session` fits: the session sits above
    this module)."""

    @property
    def scheduler_address(self) -> str: ...

    @property
    def owner(self) -> Any: ...

    def register_future(self, fut: Future) -> KeyState: ...

    def release_future(self, key: str) -> None: ...

    def cancel_keys(self, keys: list[str], force: bool = False) -> None: ...

    def on_loop_thread(self) -> bool: ...

    def fetch_result_blocking(self, fut: Future, timeout: float | None) -> Any: ...

    async def result_async(self, fut: Future) -> Any: ...

    def run_callback(self, fn: Callable[[Future], object], future: Future) -> None: ...


class _InMemory:
    """Marker stored as a finished Future's ``concurrent.futures`` result."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<data held on the cluster>"

IN_MEMORY = _InMemory()

class Future(concurrent.futures.Future):  # type: ignore[type-arg]
    """The eventual result of a task running on the cluster.

    Created by :meth:`Executor.submit`, :meth:`Executor.map`,
    :meth:`Executor.scatter` and friends, never directly.  Use ``result()``
    (or ``await future`` in asynchronous mode), ``exception()``, ``done()``,
    ``cancel()``, ``add_done_callback()`` and ``release()``.
    """

    #: dask recognises a future inside a graph (e.g. ``delayed(f)(future)``) by this flag
    __dask_future__ = True

    def __init__(self, key: str, session: FutureSession) -> None:
        super().__init__()
        self.key = key
        self._session = session
        self._released = False
        self._keystate = ks = session.register_future(self)
        if ks.running:
            self._sync_running()

    # -- status ----------------------------------------------------------- #
    @property
    def status(self) -> str:
        """One of "pending", "finished", "error", "cancelled", "lost"."""
        return CANCELLED if self.cancelled() else self._keystate.status

    @property
    def executor(self) -> Any:
        """The Executor this future belongs to."""
        return self._session.owner

    # -- results ---------------------------------------------------------- #
    def result(self, timeout: float | None = None) -> Any:
        """Wait for the task and return its value, fetching it from the worker
        that holds it.  Re-raises the task's exception (same type, with the
        remote traceback as ``__cause__``)."""
        if not self.done() and not self._session.on_loop_thread():
            # wait here: the loop completes the future without being asked
            deadline = None if timeout is None else time.monotonic() + timeout
            super().result(timeout)
            if deadline is not None:
                timeout = max(0.0, deadline - time.monotonic())
        elif self.done():
            super().result()
        return self._session.fetch_result_blocking(self, timeout)

    def traceback(self, timeout: float | None = None) -> str | None:
        """The remote traceback text of a task that raised, else None."""
        self.exception(timeout)
        return self._keystate.traceback

    def cancel(self) -> bool:
        """Cancel the call, as ``concurrent.futures.Future.cancel`` does: True
        when it had not started (its key is cancelled on the cluster, with
        every Future of it) or was cancelled already; False once this client
        knows the call runs (``running()``), or when it is done.  A call is
        known to run a few milliseconds after it starts, so a call cancelled
        within them is cancelled here and its outcome dropped.
        ``Executor.cancel`` also cancels running calls."""
        with self._condition:
            state = self._state
        if state == _CF_RUNNING or state == _CF_FINISHED:
            return False
        if self.cancelled():
            return True
        self._session.cancel_keys([self.key])
        return self._cancel_locally()

    def _sync_running(self) -> None:
        """RUNNING while the key's call runs, PENDING otherwise (until done);
        the key's state is read under the Future's lock, so concurrent calls
        end in the latest state whatever their order."""
        with self._condition:
            if self._keystate.running:
                if self._state == _CF_PENDING:
                    self._state = _CF_RUNNING
            elif self._state == _CF_RUNNING:
                self._state = _CF_PENDING

    def _cancel_locally(self) -> bool:
        """Mark cancelled (running or not: the key was cancelled on the
        cluster) and wake ``concurrent.futures.wait``/``as_completed``
        waiters, atomically (the loop thread may do the same concurrently)."""
        with self._condition:
            if self._state == _CF_RUNNING:
                self._state = _CF_PENDING
            if not super().cancel():
                return False
            if self._state == concurrent.futures._base.CANCELLED:
                self.set_running_or_notify_cancel()
            return True

    def release(self) -> None:
        """Drop this future's claim on the data; the cluster frees it when
        no other future, client or pending task needs it."""
        if not self._released:
            self._released = True
            self._session.release_future(self.key)

    def add_done_callback(self, fn: Callable[[Future], object]) -> None:
        """Call ``fn(future)`` when the future is done.  Callbacks never run on
        the client's event loop thread, so they may call ``result()``."""
        session = self._session

        def run(fut: concurrent.futures.Future) -> None:  # type: ignore[type-arg]
            session.run_callback(fn, self)

        super().add_done_callback(run)

    def _notify_when_done(self, fn: Callable[[Future], object]) -> None:
        """Internal: call ``fn`` on whatever thread completes the future."""
        super().add_done_callback(fn)  # type: ignore[arg-type]

    def __await__(self) -> Generator[Any, None, Any]:
        return self._session.result_async(self).__await__()

    # -- plumbing --------------------------------------------------------- #
    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # interpreter shutdown
            pass

    def __dask_tokenize__(self) -> str:
        return self.key

    def __reduce__(self) -> tuple[Any, ...]:
        return reduce_future(self)  # see taskmill.client.future_pickling

    def __repr__(self) -> str:
        status = self.status
        extra = ""
        if status == FINISHED:
            extra = f", type: {self._keystate.type_name}" if self._keystate.type_name else ""
        return f"<Future: {status}{extra}, key: {self.key}>"

    def _repr_html_(self) -> str:
        from taskmill.client.diagnostics import future_html

        return future_html(self)
