"""In-memory comms between event loops of one process, for tests.

Theory of operation
-------------------
``listen("inproc://name")`` registers a listener in a process-wide table
(``inproc://`` alone picks a unique name).  ``connect`` creates two
:class:`InProcComm` ends, each owned by the event loop that uses it: the
connecting task's loop and the listener's loop, which may run in different
threads.  ``write`` encodes the message with ``dumps`` (checking the frame
limits) and delivers a private copy of the frames to the peer's loop with
``call_soon_threadsafe``; ``read`` decodes with ``loads``.  So semantics match
TCP exactly: tuples become lists, ``Serialized`` stays opaque, unencodable
messages fail, and the receiver never shares memory with the sender.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import threading
from typing import Any

from taskmill.comm.addressing import parse_address
from taskmill.comm.core import CommClosedError, Comm, HandleComm, Listener
from taskmill.protocol import Frame, FrameLimits, dumps, frame_prefix, loads
from taskmill.protocol.framing import frame_lengths
from taskmill.comm.credentials import Credentials

_listeners: dict[str, InProcListener] = {}

#: connections stay inside this process (no authentication)
IN_PROCESS = True
_lock = threading.Lock()
_ids = itertools.count(1)


def _fresh_address() -> str:
    return f"inproc://{os.getpid()}/{next(_ids)}"


def _private_copy(frame: Frame) -> Frame:
    return frame if isinstance(frame, bytes) else memoryview(bytearray(frame))


class InProcComm(Comm):
    """One end of an in-memory connection."""

    def __init__(
        self, local_address: str, peer_address: str, loop: asyncio.AbstractEventLoop,
        limits: FrameLimits,
    ) -> None:
        self.local_address = local_address
        self.peer_address = peer_address
        self.limits = limits
        self._loop = loop
        self._peer: InProcComm | None = None
        self._inbox: collections.deque[list[Frame]] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._close_reason: str | None = None

    async def read(self) -> Any:
        """The next message; raises :class:`CommClosedError` once closed and drained."""
        while not self._inbox:
            if self._close_reason is not None:
                raise CommClosedError(f"{self.peer_address}: {self._close_reason}")
            if self._waiter is None or self._waiter.done():
                self._waiter = self._loop.create_future()
            await self._waiter
        return loads(self._inbox.popleft())

    def write_nowait(self, msg: Any) -> bool:
        self._send(msg)
        return True

    async def write(self, msg: Any) -> int:
        """Encode ``msg`` and deliver a copy of its frames to the peer."""
        return self._send(msg)

    def _send(self, msg: Any) -> int:
        if self._closed or self._peer is None:
            raise CommClosedError(f"{self.peer_address}: {self._close_reason or 'comm closed'}")
        frames = dumps(msg)
        prefix = frame_prefix(frames, self.limits)
        copies = [_private_copy(f) for f in frames]
        self._peer._call(self._peer._deliver, copies)
        return len(prefix) + sum(frame_lengths(frames))

    async def close(self) -> None:
        """Close both ends; messages already delivered stay readable by the peer."""
        self.abort()

    def abort(self) -> None:
        """Close both ends at once."""
        if self._closed:
            return
        self._lose("comm closed locally")
        self._inbox.clear()
        if self._peer is not None:
            self._peer._call(self._peer._lose, "connection closed by peer")

    def closed(self) -> bool:
        """Whether this end is closed."""
        return self._closed

    # -- run on this end's loop --------------------------------------------- #

    def _call(self, fn: Any, arg: Any) -> None:
        loop = self._loop
        try:
            if asyncio._get_running_loop() is loop:
                loop.call_soon(fn, arg)  # same loop: no need to wake it through its self-pipe
            else:
                loop.call_soon_threadsafe(fn, arg)
        except RuntimeError:  # that loop is closed: nobody will read this end
            pass

    def _deliver(self, frames: list[Frame]) -> None:
        if not self._closed:
            self._inbox.append(frames)
            self._wake()

    def _lose(self, reason: str) -> None:
        self._closed = True
        if self._close_reason is None:
            self._close_reason = reason
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class InProcListener(Listener):
    """A registered in-memory listener; see :class:`~taskmill.comm.core.Listener`."""

    def __init__(
        self, address: str, handle_comm: HandleComm, loop: asyncio.AbstractEventLoop,
        limits: FrameLimits,
    ) -> None:
        super().__init__(handle_comm)
        self.address = address
        self.limits = limits
        self._loop = loop

    def _accept(self, comm: InProcComm) -> None:
        self._loop.call_soon_threadsafe(self._serve, comm)

    async def _stop_accepting(self) -> None:
        with _lock:
            if _listeners.get(self.address) is self:
                del _listeners[self.address]


async def backend_connect(address: str, limits: FrameLimits, security: Credentials | None) -> Comm:
    """Connect to the in-memory listener at ``address`` (``security`` does not
    apply: the connection never leaves the process)."""
    with _lock:
        listener = _listeners.get(address)
    if listener is None:
        raise ConnectionRefusedError(f"no inproc listener at {address}")
    local = InProcComm(_fresh_address(), address, asyncio.get_running_loop(), limits)
    remote = InProcComm(address, local.local_address, listener._loop, listener.limits)
    local._peer, remote._peer = remote, local
    listener._accept(remote)
    return local


async def backend_listen(address: str, handle_comm: HandleComm, limits: FrameLimits,
                         security: Credentials | None) -> Listener:
    """Register an in-memory listener at ``address`` (``inproc://`` picks a name;
    ``security`` does not apply: only this process can connect)."""
    if not parse_address(address)[1]:
        address = _fresh_address()
    listener = InProcListener(address, handle_comm, asyncio.get_running_loop(), limits)
    with _lock:
        if address in _listeners:
            raise OSError(f"address already in use: {address}")
        _listeners[address] = listener
    return listener
