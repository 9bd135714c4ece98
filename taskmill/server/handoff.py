"""A queue between threads whose ``put`` wakes the taker without holding the GIL.

Theory of operation
-------------------
A worker's loop hands each call to a task thread, which sleeps in ``get``
until then.  With ``queue.SimpleQueue`` the wake-up (a futex) happens while
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
queued, and a worker queues at most one call per thread (and a stop marker
per thread that leaves).
"""

from __future__ import annotations

import os
import weakref
from collections import deque
from typing import Generic, TypeVar

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


def _close_fds(*fds: int) -> None:
    for fd in fds:
        os.close(fd)
