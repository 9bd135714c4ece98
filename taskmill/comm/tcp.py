"""TCP comms on ``asyncio.BufferedProtocol`` (fast with uvloop).

Theory of operation
-------------------
:class:`TCPComm` is both the :class:`~taskmill.comm.core.Comm` and the
transport's protocol object, to keep the per-message path short.

Receiving: the event loop reads straight into the buffer a
:class:`~taskmill.protocol.FrameParser` hands out (a scratch buffer for small
items, an exact-size ``bytearray`` per large frame, or for frames of 8 MiB
and more a mapping lent by the process's
:class:`~taskmill.protocol.receive_pool.ReceivePool`, faulted in already or
by a helper thread while it fills), so large frames are
never concatenated or copied.  Completed messages (frame lists) queue in an inbox and
are decoded by ``read()``.  When the inbox holds many unread messages the
transport stops reading (backpressure to the sender's kernel buffers).

Sending: ``write()`` encodes, checks the limits, then hands the prefix and the
frames to ``transport.writelines`` (zero-copy with uvloop); tiny messages are
joined into one ``write``.  When the transport's buffer passes its high-water
mark it calls ``pause_writing`` and ``write()`` waits for ``resume_writing``.
Sending a large frame stops the process's background fault-in of a spare
receive buffer, if one is under way (``ReceivePool.stop_prefault``): the
send needs the cores more.

Errors: a malformed, oversize or truncated stream is logged as a warning with
the peer address and the reason, that connection alone is aborted, and
``read()`` raises :class:`CommClosedError` carrying the reason.

Loopback shortcut: a listener on a loopback (or wildcard) address also
listens on an abstract Unix socket named after its loopback address
(``shortcut_name``), and connecting to a loopback address tries that socket
first, falling back to TCP when nothing listens there.  Abstract names live
in the network namespace, exactly like ``127.0.0.1``, vanish with the
process, and reach the same ``TCPComm`` code; a Unix socket just skips the
TCP stack, so a message between processes of one machine costs about half.
Addresses stay ``tcp://``; nothing above this module knows the difference.

Anyone may bind an abstract name, but only the holder of a TCP port can
listen on it, so a connection through the shortcut is kept only when the
listening process runs as our own user (``SO_PEERCRED``): a name taken by
another user is ignored and TCP used instead.

TLS: when the :class:`~taskmill.security.Security` of a listener or a
connection has certificates (:mod:`~taskmill.comm.tls`), it wraps its
sockets (the shortcut's included) in TLS with mutual certificates; the same
``TCPComm`` runs on top.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import ssl
from typing import Any, Callable, cast

from taskmill.comm.addressing import parse_address, peer_uid, shortcut_name, unparse_address
from taskmill.comm.core import CommClosedError, Comm, HandleComm, Listener, receive_pool
from taskmill.comm.tls import client_context, server_context
from taskmill.protocol import (
    Frame,
    FrameLimits,
    FrameParser,
    ProtocolError,
    dumps,
    frame_prefix,
    loads,
)
from taskmill.protocol.framing import PREFAULT_FRAME, frame_lengths
from taskmill.comm.credentials import Credentials

logger = logging.getLogger("taskmill.comm.tcp")

#: connections stay inside this process (no authentication)
IN_PROCESS = False

_SMALL_WRITE = 16 * 1024
_INBOX_HIGH = 1024
_INBOX_LOW = 64
_CLOSE_TIMEOUT = 5.0


def _sockaddr(sockname: Any) -> str:
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        return unparse_address("tcp", str(sockname[0]), int(sockname[1]))
    return "tcp://<local socket>"  # the Unix side of a loopback shortcut


_WILDCARD_HOSTS = ("", "0.0.0.0", "::")


class TCPComm(Comm, asyncio.BufferedProtocol):
    """A comm over one TCP connection."""

    def __init__(
        self, limits: FrameLimits, on_connect: Callable[[TCPComm], None] | None = None
    ) -> None:
        self.limits = limits
        self.local_address = self.peer_address = "tcp://<unconnected>"
        self._on_connect = on_connect
        self._inbox: collections.deque[list[Frame]] = collections.deque()
        # appends to our inbox; large frames land in the process's receive pool
        self._parser = FrameParser(limits, self._inbox, receive_pool().allocate)
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()  # protocols are made inside the loop
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._write_paused = False
        self._read_paused = False
        self._closed = False
        self._close_reason: str | None = None
        self._lost: asyncio.Future[None] | None = None

    # -- Comm interface ----------------------------------------------------- #

    async def read(self) -> Any:
        """The next message; raises :class:`CommClosedError` once closed."""
        inbox = self._inbox
        while not inbox:
            if self._close_reason is not None:
                raise CommClosedError(f"{self.peer_address}: {self._close_reason}")
            waiter = self._read_waiter
            if waiter is None or waiter.done():
                waiter = self._read_waiter = self._loop.create_future()
            await waiter
        frames = inbox.popleft()
        if self._read_paused and len(inbox) <= _INBOX_LOW and self._transport is not None:
            self._read_paused = False
            self._transport.resume_reading()
        try:
            return loads(frames)
        except ProtocolError as exc:
            reason = f"malformed message: {exc}"
            self._fail(reason)
            raise CommClosedError(f"{self.peer_address}: {reason}") from exc

    def write_nowait(self, msg: Any) -> bool:
        if self._write_paused:
            return False
        self._send(msg)
        return True

    async def write(self, msg: Any) -> int:
        """Send one message; waits while the send buffer is over its high-water mark."""
        nbytes = self._send(msg)
        if self._write_paused:
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            await waiter
        return nbytes

    def _send(self, msg: Any) -> int:
        """Encode and hand one message to the transport; returns its size."""
        transport = self._transport
        if self._closed or transport is None or transport.is_closing():
            raise CommClosedError(f"{self.peer_address}: {self._close_reason or 'comm closed'}")
        frames = dumps(msg)
        prefix = frame_prefix(frames, self.limits)
        if len(frames) == 1 and len(frames[0]) <= _SMALL_WRITE:
            data = prefix + frames[0]
            transport.write(data)
            nbytes = len(data)
        else:
            transport.writelines([prefix, *frames])
            nbytes = len(prefix) + sum(frame_lengths(frames))
            if nbytes >= PREFAULT_FRAME:
                receive_pool().stop_prefault()  # the send needs the cores more
        return nbytes

    async def close(self) -> None:
        """Flush buffered writes, close, and wait (briefly) until the socket is gone."""
        if self._transport is None or self._lost is None:
            return
        self._closed = True
        self._inbox.clear()
        if self._close_reason is None:
            self._close_reason = "comm closed locally"
        self._transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._lost), _CLOSE_TIMEOUT)
        except asyncio.TimeoutError:
            self._transport.abort()

    def abort(self) -> None:
        """Close at once, dropping unsent data."""
        self._closed = True
        self._inbox.clear()
        if self._close_reason is None:
            self._close_reason = "comm aborted locally"
        if self._transport is not None:
            self._transport.abort()

    def closed(self) -> bool:
        """Whether the comm is closed."""
        return self._closed

    # -- protocol callbacks ------------------------------------------------- #

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._transport = transport
        self._lost = self._loop.create_future()
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local_address = _sockaddr(transport.get_extra_info("sockname"))
        self.peer_address = _sockaddr(transport.get_extra_info("peername"))
        if self._on_connect is not None:
            self._on_connect(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._parser.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        inbox = self._inbox
        before = len(inbox)
        try:
            self._parser.buffer_updated(nbytes)
        except ProtocolError as exc:
            self._fail(f"malformed frame stream: {exc}")
            return
        if len(inbox) > before:
            if self._closed:
                inbox.clear()
                return
            self._wake_reader()
            if len(self._inbox) >= _INBOX_HIGH and not self._read_paused:
                self._read_paused = True
                assert self._transport is not None
                self._transport.pause_reading()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._close_reason is None:
            if not self._parser.at_boundary():
                self._close_reason = (
                    f"connection closed mid-message ({self._parser.pending_description()})"
                )
                logger.warning("closing connection from %s: %s", self.peer_address, self._close_reason)
            elif exc is not None:
                self._close_reason = f"connection lost: {exc}"
            else:
                self._close_reason = "connection closed by peer"
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        self._wake_reader()
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_exception(CommClosedError(f"{self.peer_address}: {self._close_reason}"))
        self._drain_waiters.clear()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    # -- internals ---------------------------------------------------------- #

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, reason: str) -> None:
        """Drop this connection because of a protocol violation."""
        logger.warning("closing connection from %s: %s", self.peer_address, reason)
        self._close_reason = reason
        self.abort()


class TCPListener(Listener):
    """A listening TCP socket; see :class:`~taskmill.comm.core.Listener`."""

    def __init__(self, handle_comm: HandleComm) -> None:
        super().__init__(handle_comm)
        self._server: asyncio.AbstractServer | None = None
        self._shortcut: asyncio.AbstractServer | None = None
        self._ssl: ssl.SSLContext | None = None

    async def _start(self, host: str, port: int, limits: FrameLimits, security: Credentials | None) -> None:
        loop = asyncio.get_running_loop()
        self._ssl = server_context(security)
        self._server = await loop.create_server(
            lambda: TCPComm(limits, on_connect=self._serve),
            host,
            port,
            reuse_address=True,
            backlog=1024,
            ssl=self._ssl,
        )
        sockets = list(self._server.sockets or ())
        self.address = _sockaddr(sockets[0].getsockname()) if sockets else f"tcp://{host}:{port}"
        _, bound_host, bound_port = parse_address(self.address)
        name = shortcut_name("127.0.0.1" if host in _WILDCARD_HOSTS else bound_host, bound_port)
        if name is not None:
            await self._start_shortcut(name, limits)

    async def _start_shortcut(self, name: str, limits: FrameLimits) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(name)
            sock.listen(1024)
            self._shortcut = await asyncio.get_running_loop().create_unix_server(
                lambda: TCPComm(limits, on_connect=self._serve), sock=sock, ssl=self._ssl)
        except OSError as exc:  # taken or not allowed here: TCP alone still works
            sock.close()
            logger.debug("no loopback shortcut for %s: %s", self.address, exc)

    async def _stop_accepting(self) -> None:
        for server in (self._server, self._shortcut):
            if server is not None:
                server.close()


async def backend_connect(address: str, limits: FrameLimits, security: Credentials | None) -> Comm:
    """Open one connection (no retries; see :func:`taskmill.comm.connect`):
    through the loopback shortcut when the listener has one, else TCP; over
    TLS when ``security`` has certificates."""
    _, host, port = parse_address(address)
    loop = asyncio.get_running_loop()
    context = client_context(security)
    name = shortcut_name(host, port)
    if name is not None:
        comm = await _connect_shortcut(name, limits, context)
        if comm is not None:
            comm.peer_address = address
            return comm
    _, tcp_comm = await loop.create_connection(
        lambda: TCPComm(limits), host, port, ssl=context,
        server_hostname="" if context is not None else None)
    return tcp_comm


async def _connect_shortcut(name: str, limits: FrameLimits,
                            context: ssl.SSLContext | None) -> TCPComm | None:
    """A comm over the abstract Unix socket ``name``; None when nobody listens there."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, name)
        uid = peer_uid(sock)
    except OSError:
        sock.close()
        return None
    if uid != os.getuid():
        sock.close()
        logger.warning("the loopback shortcut %r belongs to uid %d, not us: using TCP",
                       name[1:], uid)
        return None
    _, comm = await loop.create_unix_connection(
        lambda: TCPComm(limits), sock=sock, ssl=context,
        server_hostname="" if context is not None else None)
    return comm


async def backend_listen(address: str, handle_comm: HandleComm, limits: FrameLimits,
                         security: Credentials | None) -> Listener:
    """Listen on ``address`` (port 0 picks a free port), over TLS when
    ``security`` has certificates."""
    _, host, port = parse_address(address)
    listener = TCPListener(handle_comm)
    await listener._start(host, port, limits, security)
    return listener
