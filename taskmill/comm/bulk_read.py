"""The rest of a large frame, read by a thread in one system call.

Theory of operation
-------------------
An event loop reads a large frame in as many steps as the socket holds
data at a time: with the loopback shortcut's 208 KiB send buffer, some 950
reads per 200 MB, each followed by Python code (the protocol's
``buffer_updated`` and ``get_buffer``) that needs the GIL.  While another
thread of the process holds the GIL (a task computing, the warm-up's
imports of dask), the loop waits for it after every one of those reads, up
to the interpreter's switch interval (5 ms): the frame then comes in at a
fraction of the speed the kernel can copy it (``bench/frame_receive.py
--busy``: a 200 MB fetch 125 -> 553 ms).

So once a frame with at least :data:`BULK_READ` bytes still to come has
started, :class:`BulkRead` takes its rest off the loop: the transport stops
reading, and a thread reads the rest with one ``recv(..., MSG_WAITALL)``
on a duplicate of the socket made blocking, which the kernel returns from
only when the whole rest has arrived (or the connection ends); the GIL is
released for all of it.  Then the socket is non-blocking again, the loop
accounts for the bytes (``done(nbytes, error)`` on the loop) and the
transport reads again.  While the thread reads, the socket is blocking for
the loop too: a write on the same connection meanwhile waits until the
kernel takes it, which in taskmill's request-reply use of a connection
does not happen, and cannot deadlock: a side whose socket is blocking has
this thread draining what the other side sends.  Closing the
comm meanwhile shuts the socket down (:meth:`BulkRead.wake`), which ends the
read.  TLS connections never come here: the bytes on the socket are not the
frame's.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("taskmill.comm.tcp")

#: bytes a frame must still have to come for its rest to be read by a thread
BULK_READ = 8 * 2**20


class BulkRead:
    """One frame's rest, ``view``, read from ``sock`` by a thread (see the
    module docstring); ``done(nbytes, error)`` is called on ``loop`` after."""

    def __init__(self, sock: Any, view: memoryview, loop: asyncio.AbstractEventLoop,
                 done: Callable[[int, BaseException | None], None]) -> None:
        self._sock = socket.fromfd(sock.fileno(), sock.family, sock.type)  # a duplicate
        self._view, self._loop, self._done = view, loop, done
        self._thread = threading.Thread(target=self._run, name="taskmill-bulk-read",
                                        daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """End the read now (the comm closes): shut the connection down."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # not connected any more: the read has ended already
            pass

    def _run(self) -> None:
        view, got, error = self._view, 0, None
        try:
            self._sock.setblocking(True)
            while got < len(view):
                n = self._sock.recv_into(view[got:], len(view) - got, socket.MSG_WAITALL)
                if not n:  # the peer closed mid-frame: the loop's next read says so
                    break
                got += n
        except OSError as exc:
            error = exc
        finally:
            try:
                self._sock.setblocking(False)
            finally:
                self._sock.close()  # the duplicate only
        del view, self._view
        try:
            self._loop.call_soon_threadsafe(self._done, got, error)
        except RuntimeError:  # the loop closed meanwhile: nobody waits for the frame
            logger.debug("a bulk read ended after its event loop closed")
