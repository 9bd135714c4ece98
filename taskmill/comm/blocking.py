"""A blocking comm: one connection used by one thread, without an event loop.

Theory of operation
-------------------
A request that a user thread waits for anyway (an actor's method call made
from a blocking Executor) pays, through the client's event loop, two thread
hand-offs and the loop's own steps: measured, about half of an actor call's
round trip.  A :class:`BlockingComm` lets the waiting thread do the I/O
itself.  It speaks exactly the wire format of :class:`~taskmill.comm.tcp.TCPComm`
(a frame prefix, then msgpack frames: :func:`taskmill.protocol.dumps` /
:func:`~taskmill.protocol.loads`, parsed by the same
:class:`~taskmill.protocol.FrameParser`), connects the same way (the
loopback shortcut, an abstract Unix socket, when the peer is on this
machine and ours; else TCP; TLS when a context is given), and greets the
same way: the handshake is :func:`taskmill.comm.auth.client_handshake`
itself, driven to completion synchronously (it only awaits this comm's
``read`` and ``write``, which here block), so there is one handshake in the
code base, not two.

A read may be bounded by a timeout; one that times out leaves the parser in
its state, so the next read continues where it stopped.  A broken
connection raises :class:`~taskmill.comm.core.CommClosedError` (an OSError)
and the comm is unusable after it.  Not thread-safe: its owner serialises use.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import time
from collections.abc import Coroutine
from typing import Any

from taskmill.comm.addressing import parse_address, peer_uid, shortcut_name
from taskmill.comm.auth import client_handshake
from taskmill.comm.core import CommClosedError
from taskmill.protocol import DEFAULT_LIMITS, FrameLimits, FrameParser, dumps, frame_prefix, loads

class BlockingComm:
    """Messages over one socket, read and written by the calling thread."""

    def __init__(self, sock: socket.socket, peer_address: str,
                 limits: FrameLimits = DEFAULT_LIMITS) -> None:
        self.sock = sock
        self.peer_address = peer_address
        self.limits = limits
        self._parser = FrameParser(limits)
        self._closed = False

    @classmethod
    def connect(cls, address: str, *, timeout: float, token: bytes | None,
                context: ssl.SSLContext | None) -> BlockingComm:
        """Connect to ``address`` (``tcp://host:port``) and run the handshake,
        all within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        _, host, port = parse_address(address)
        sock = _open_shortcut(host, port, timeout)
        if sock is None:
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if context is not None:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                sock = context.wrap_socket(sock, server_hostname=None)
            comm = cls(sock, address)
            comm._deadline = deadline
            _drive(client_handshake(_Greeter(comm), token))
        except BaseException:
            sock.close()
            raise
        comm._deadline = None
        return comm

    _deadline: float | None = None  # while connecting: the handshake's reads and writes share it

    def write(self, msg: Any) -> None:
        """Send one message (blocks until the kernel took it)."""
        self._check()
        frames = dumps(msg)
        data = b"".join([frame_prefix(frames, self.limits), *frames])
        try:
            self.sock.settimeout(self._remaining())
            sent = self.sock.send(data)
            if sent < len(data):  # a big message: the rest as it drains
                self.sock.sendall(memoryview(data)[sent:])
        except OSError as exc:
            self._fail()
            raise CommClosedError(f"{self.peer_address}: {exc}") from exc

    def read(self, timeout: float | None = None) -> Any:
        """The next message, waiting up to ``timeout`` seconds (None: as long
        as the connection stays up); ``TimeoutError`` after that."""
        self._check()
        inbox = self._parser.messages
        deadline = None if timeout is None else time.monotonic() + timeout
        while not inbox:
            limit = self._remaining() if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                self.sock.settimeout(limit)
                n = self.sock.recv_into(self._parser.get_buffer())
            except TimeoutError:
                raise TimeoutError(f"no message from {self.peer_address} within "
                                   f"{timeout if timeout is not None else limit:g}s") from None
            except OSError as exc:
                self._fail()
                raise CommClosedError(f"{self.peer_address}: {exc}") from exc
            if n == 0:
                self._fail()
                raise CommClosedError(f"{self.peer_address}: the connection closed")
            self._parser.buffer_updated(n)
        return loads(inbox.popleft())

    def ready(self) -> bool:
        """Whether a message can be read now without waiting."""
        if self._parser.messages:
            return True
        if self._closed:
            return False
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        """Close the socket (safe to call twice)."""
        self._fail()

    def closed(self) -> bool:
        return self._closed

    def _remaining(self) -> float | None:
        if self._deadline is None:
            return None
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"could not greet {self.peer_address} in time")
        return remaining

    def _check(self) -> None:
        if self._closed:
            raise CommClosedError(f"{self.peer_address}: comm closed")

    def _fail(self) -> None:
        if not self._closed:
            self._closed = True
            try:  # wakes a thread blocked reading it (close alone may not)
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()


class _Greeter:
    """What :func:`client_handshake` sees: a stream whose awaits block."""

    def __init__(self, comm: BlockingComm) -> None:
        self.comm = comm
        self.peer_address = comm.peer_address

    async def read(self) -> Any:
        return self.comm.read()

    async def write(self, msg: Any) -> int:
        self.comm.write(msg)
        return 0


def _drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never really suspends (its awaits block instead)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("a blocking handshake suspended on an event loop")


def _open_shortcut(host: str, port: int, timeout: float) -> socket.socket | None:
    """A socket through the loopback shortcut, or None when nobody (of ours) listens there."""
    name = shortcut_name(host, port)
    if name is None:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(name)
        uid = peer_uid(sock)
    except OSError:
        sock.close()
        return None
    if uid != os.getuid():
        sock.close()
        return None
    return sock
