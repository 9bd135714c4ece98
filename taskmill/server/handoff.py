"""Hand-offs between a worker's loop and its task threads that wake the other
side without holding the GIL.

Theory of operation
-------------------
A worker's loop hands each call to a task thread (:class:`HandOff`), which
sleeps in ``get`` until then, and the thread hands the outcome back to the
loop (:class:`LoopInbox`).  With ``queue.SimpleQueue`` the wake-up (a futex) happens while
the loop's thread holds the GIL: on a busy machine the kernel switches to
the woken thread at once, which finds the GIL taken and sleeps again until
the loop's thread lets go of it, so every hand-off costs two extra context
switches and a wait on the GIL.  ``HandOff`` wakes its taker with
``os.write`` on a pipe, a call that releases the GIL around the system call:
the woken thread can take the GIL and start the call right away.

Items live in a ``deque`` (its ``append`` and ``popleft`` are atomic); each
``put`` writes one byte, each ``get`` reads one byte (blocking, without the
GIL) and then takes the oldest item.  ``drain`` takes the items without their
bytes, so a later ``get`` may read a byte for an item that is gone: it reads
the next byte.  The pipe's two descriptors are closed when the queue is
collected, never while a thread is in ``get`` (which holds a reference).

The pipe holds 64 KiB of bytes: ``put`` would block with that many items
queued, and a worker queues at most one call per thread and the calls it runs
ahead (option ``worker.run-ahead.depth``, at most 1024; and a stop marker per
thread that leaves).

The way back has the same trouble: ``loop.call_soon_threadsafe`` wakes the
loop (an ``eventfd`` write) with the GIL held, and the loop's thread wakes
only to wait for the GIL.  ``LoopInbox.post(fn, *args)`` queues the callback
in a ``deque`` and writes a byte to a pipe the loop watches (``add_reader``),
again with the GIL released; the loop runs every queued callback, in order,
when the pipe is readable, then ``on_drained`` (the worker hands the
outcomes of those callbacks to its machine in one handling), and again while
more were posted meanwhile: a task thread that ends a short call while the
loop handles the last one's outcome (a chain's next link) is served without
another turn of the loop.  Callbacks of one inbox keep their order; there is
no order between them and ``call_soon_threadsafe`` callbacks.  A ``post``
after ``close`` (or once the loop is closed) raises ``RuntimeError``, like
``call_soon_threadsafe`` on a closed loop.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class HandOff(Generic[T]):
    """A FIFO queue of items for threads that block in :meth:`get`."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._read_fd, self._write_fd = os.pipe()
        weakref.finalize(self, _close_fds, self._read_fd, self._write_fd)

    def put(self, item: T) -> None:
        """Queue ``item`` and wake one thread waiting in :meth:`get`."""
        self._items.append(item)
        os.write(self._write_fd, b"\0")  # releases the GIL around the write

    def get(self) -> T:
        """The oldest item; blocks (without the GIL) until there is one."""
        while True:
            os.read(self._read_fd, 1)
            try:
                return self._items.popleft()
            except IndexError:  # its item was drained
                continue

    def drain(self) -> list[T]:
        """Take every queued item at once (threads in :meth:`get` keep waiting)."""
        taken = []
        while True:
            try:
                taken.append(self._items.popleft())
            except IndexError:
                return taken


class LoopInbox:
    """Callbacks posted from any thread, run on ``loop``'s thread in order;
    ``on_drained()`` runs after each run of the callbacks queued by then."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 on_drained: Callable[[], None] | None = None) -> None:
        self._loop = loop
        self._on_drained = on_drained
        self._items: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        weakref.finalize(self, _close_fds, self._read_fd, self._write_fd)
        self._closed = False
        loop.add_reader(self._read_fd, self._run)

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop soon (from any thread).  Raises
        ``RuntimeError`` when the inbox or its loop is closed."""
        if self._closed or self._loop.is_closed():
            raise RuntimeError("the loop of this inbox is closed")
        self._items.append((fn, args))
        os.write(self._write_fd, b"\0")  # releases the GIL around the write

    def close(self) -> None:
        """(On the loop.)  Stop: queued callbacks are dropped, later posts raise."""
        if not self._closed:
            self._closed = True
            self._items.clear()
            if not self._loop.is_closed():
                self._loop.remove_reader(self._read_fd)

    def _run(self) -> None:
        try:
            os.read(self._read_fd, 65536)
        except BlockingIOError:
            pass
        items = self._items
        while items and not self._closed:  # every item whose byte was read is here
            while items and not self._closed:
                fn, args = items.popleft()
                self._call(fn, *args)
            if self._on_drained is not None and not self._closed:
                self._call(self._on_drained)

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self._loop.call_exception_handler(
                {"message": f"exception in {fn!r}, posted to the loop", "exception": exc})


def _close_fds(*fds: int) -> None:
    for fd in fds:
        os.close(fd)
