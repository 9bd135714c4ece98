"""The Comm interface: one bidirectional message stream, whatever the transport.

Theory of operation
-------------------
A :class:`Comm` moves whole messages (anything :func:`taskmill.protocol.dumps`
accepts) between two endpoints: ``write(msg)`` encodes and sends one message,
``read()`` returns the next one, decoded (``Serialized`` payloads stay
opaque).  Messages arrive in order, each exactly once, until the comm closes;
then ``read()`` and ``write()`` raise :class:`CommClosedError` saying why.
Messages that fully arrived before the peer closed can still be read.  At most
one ``read()`` should be pending at a time per comm.

:func:`connect` and :func:`listen` dispatch on the address scheme to a backend
module (``tcp``, ``inproc``), each of which provides ``backend_connect`` and
``backend_listen``.  ``connect`` retries refused connections with a short
exponential backoff until its timeout, so a client may start before its
server.  A :class:`Listener` runs ``handle_comm(comm)`` for each accepted
connection in its own task; the connection lives as long as that task: when
the handler returns the comm is closed, and ``Listener.stop()`` cancels the
handlers and aborts their comms.

Between processes, a connection is authenticated before either side's code
sees it (:mod:`~taskmill.comm.auth`): the listener greets every connection
and, with a shared token configured, runs an HMAC challenge both ways;
``connect`` answers.  A peer that fails is refused (a logged warning on the
accepting side, :class:`~taskmill.comm.auth.AuthenticationError` on the
connecting side, never retried).  The token and TLS files are a
:class:`~taskmill.security.Security` given to ``connect``/``listen`` (a
node passes its own); None reads the ``TASKMILL_*`` environment at that
call.  Either way they are settled when a connection opens: messages pay
nothing for them.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import socket
import ssl
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

from taskmill import config, timeouts
from taskmill.comm.addressing import normalize_address, parse_address
from taskmill.comm.auth import AuthenticationError, client_handshake, server_handshake
from taskmill.comm.tls import client_context
from taskmill.comm.credentials import Credentials, token_of
from taskmill.config_checks import count, seconds, size, size_or_off
from taskmill.protocol import DEFAULT_LIMITS, FrameLimits
from taskmill.protocol.receive_pool import ReceivePool

logger = logging.getLogger("taskmill.comm")

HandleComm = Callable[["Comm"], Awaitable[None]]

_BACKENDS = {"tcp": "taskmill.comm.tcp", "inproc": "taskmill.comm.inproc"}
_FIRST_RETRY_DELAY = 0.005
_MAX_RETRY_DELAY = 0.5


class CommClosedError(IOError):
    """The comm is closed (locally, by the peer, or after a protocol error)."""


class Comm(ABC):
    """One end of a bidirectional stream of messages."""

    local_address: str
    peer_address: str
    limits: FrameLimits = DEFAULT_LIMITS

    @abstractmethod
    async def read(self) -> Any:
        """The next message; raises :class:`CommClosedError` once closed."""

    @abstractmethod
    async def write(self, msg: Any) -> int:
        """Send one message; return the number of bytes it took on the wire.

        Waits while the transport's send buffer is full (flow control).
        Unencodable messages raise ``TypeError`` before anything is sent.
        """

    def write_nowait(self, msg: Any) -> bool:
        """Send ``msg`` at once if that needs no waiting (flow control allows);
        returns False, having sent nothing, when the caller must ``await write``.
        Raises like ``write``.  Lets a stream skip a task per message."""
        return False

    @abstractmethod
    async def close(self) -> None:
        """Flush what was written, then close.  Closing twice is fine."""

    @abstractmethod
    def abort(self) -> None:
        """Close at once, dropping unsent data.  Aborting twice is fine."""

    @abstractmethod
    def closed(self) -> bool:
        """Whether the comm is closed (reads may still drain buffered messages)."""

    def __repr__(self) -> str:
        state = "closed" if self.closed() else "open"
        return (
            f"<{type(self).__name__} {state} "
            f"local={getattr(self, 'local_address', '?')} "
            f"peer={getattr(self, 'peer_address', '?')}>"
        )


class Listener(ABC):
    """Accepts connections at :attr:`address`; serves each in its own task."""

    address: str
    #: whether accepted connections come from other processes (and so authenticate)
    authenticates = True

    def __init__(self, handle_comm: HandleComm) -> None:
        self._handle_comm = handle_comm
        self._handlers: dict[asyncio.Task[None], Comm] = {}
        self._stopped = False
        #: the shared token peers must prove they know (None: none configured)
        self.token: bytes | None = None

    def _serve(self, comm: Comm) -> None:
        """Start ``handle_comm(comm)`` in a task the listener keeps track of."""
        if self._stopped:
            comm.abort()
            return
        task = asyncio.get_running_loop().create_task(self._run_handler(comm))
        self._handlers[task] = comm
        task.add_done_callback(self._handlers.pop)

    async def _run_handler(self, comm: Comm) -> None:
        if self.authenticates:
            try:
                if self.token is None:  # a greeting only: no waiting, no extra loop turn
                    await server_handshake(comm, None)
                else:
                    await asyncio.wait_for(server_handshake(comm, self.token), timeouts.CONNECT.get())
            except asyncio.CancelledError:
                comm.abort()
                raise
            except CommClosedError:  # gone before the greeting (a probe), or bad bytes (logged)
                comm.abort()
                return
            except Exception as exc:
                logger.warning("refused a connection from %s: %s",
                               comm.peer_address, str(exc) or type(exc).__name__)
                comm.abort()
                return
        try:
            await self._handle_comm(comm)
        except asyncio.CancelledError:
            comm.abort()
            raise
        except CommClosedError:
            comm.abort()
        except Exception:
            logger.exception("connection handler for %s failed", comm.peer_address)
            comm.abort()
        else:
            await comm.close()

    @abstractmethod
    async def _stop_accepting(self) -> None:
        """Stop accepting new connections."""

    async def stop(self) -> None:
        """Stop accepting, cancel the handlers and close their comms."""
        self._stopped = True
        await self._stop_accepting()
        tasks = list(self._handlers)
        for task, comm in list(self._handlers.items()):
            task.cancel()
            comm.abort()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address} serving {len(self._handlers)}>"


def _backend(scheme: str) -> Any:
    return importlib.import_module(_BACKENDS[scheme])


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, (OSError, asyncio.TimeoutError)) and not isinstance(
        exc, (socket.gaierror, ssl.SSLError)  # an unknown host; certificates that do not match
    )


def configured_limits() -> FrameLimits:
    """The frame limits of new connections: the protocol's defaults with the
    message size of option ``comm.max-message-bytes``."""
    largest = config.read("comm.max-message-bytes", size)
    if largest == DEFAULT_LIMITS.max_message_bytes:
        return DEFAULT_LIMITS
    return FrameLimits(max_message_bytes=largest)


_receive_pool: list[ReceivePool] = []  # the process's, made at first use
os.register_at_fork(after_in_child=_receive_pool.clear)  # a forked child starts its own


def receive_pool() -> ReceivePool:
    """The process's pool of pre-faulted buffers for large incoming frames
    (options ``comm.receive-pool.max-bytes``, ``.max-buffers``, ``.idle``,
    read at first use), shared by all its connections."""
    if not _receive_pool:
        _receive_pool.append(ReceivePool(
            max_bytes=config.read("comm.receive-pool.max-bytes", size),
            max_buffers=config.read("comm.receive-pool.max-buffers", count),
            idle=config.read("comm.receive-pool.idle", seconds),
        ))
    return _receive_pool[0]


def receive_prefault(memory_limit: int = 0) -> tuple[int, float]:
    """Bytes a process faults in ahead of its first large incoming frame
    (option ``comm.receive-pool.prefault``; at most a quarter of
    ``memory_limit`` when there is one) and the seconds it waits first
    (``.prefault-delay``): the arguments of the pool's
    :meth:`~taskmill.protocol.receive_pool.ReceivePool.prefault_in_background`."""
    wanted = config.read("comm.receive-pool.prefault", size_or_off)
    largest = receive_pool().max_bytes
    if wanted > largest:
        raise ValueError(
            f"option comm.receive-pool.prefault ({wanted} bytes) is larger than option "
            f"comm.receive-pool.max-bytes ({largest} bytes), the most the receive pool keeps: "
            "lower the first or raise the second")
    delay = config.read("comm.receive-pool.prefault-delay", seconds)
    return (min(wanted, memory_limit // 4) if memory_limit > 0 else wanted), delay


async def connect(
    address: str,
    timeout: float | timeouts.Timeout = timeouts.CONNECT,
    limits: FrameLimits | None = None,
    security: Credentials | None = None,
) -> Comm:
    """Open a comm to ``address``, retrying refused connections until ``timeout``
    (seconds, or a :class:`taskmill.timeouts.Timeout`; default
    option ``comm.timeouts.connect``), proving ``security``'s token and using its
    TLS files (None: the environment's); ``limits`` default to :func:`configured_limits`.

    Raises ``TimeoutError`` (an ``OSError``) naming the address and the last
    cause when no connection could be made in time, ``AuthenticationError`` when
    the peer does not share our token, or ``OSError`` at once for causes
    retrying cannot fix (an unknown host name).
    """
    address = normalize_address(address)
    backend = _backend(parse_address(address)[0])
    loop = asyncio.get_running_loop()
    limit, hint = timeouts.seconds(timeout)
    deadline = loop.time() + limit
    delay = _FIRST_RETRY_DELAY
    cause: BaseException | None = None  # the most informative failure so far
    while True:
        try:
            return await _open(backend, address, limits or configured_limits(), deadline, security)
        except AuthenticationError:
            raise  # retrying cannot fix it; the message says what will
        except Exception as exc:
            if not _retryable(exc):
                raise OSError(f"could not connect to {address}: {exc}") from exc
            if cause is None or not isinstance(exc, asyncio.TimeoutError):
                cause = exc
            remaining = deadline - loop.time()
            if remaining <= 0:
                reason = str(cause) or "timed out"
                if client_context(security) is not None:
                    reason += ("; with TLS, check that the peer uses TLS too and accepts this "
                               "node's certificate (tls_cert, $TASKMILL_TLS_*)")
                raise TimeoutError(
                    f"could not connect to {address} within {limit:g}s{hint}: {reason}"
                ) from cause
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, _MAX_RETRY_DELAY)


async def _open(backend: Any, address: str, limits: FrameLimits, deadline: float,
                security: Credentials | None) -> Comm:
    """One attempt: connect, then (between processes) answer the listener's greeting."""
    loop = asyncio.get_running_loop()
    comm: Comm = await asyncio.wait_for(backend.backend_connect(address, limits, security),
                                        max(deadline - loop.time(), 0.0))
    if backend.IN_PROCESS:
        return comm
    try:
        await asyncio.wait_for(client_handshake(comm, token_of(security)),
                               max(deadline - loop.time(), 0.0))
    except BaseException:
        comm.abort()
        raise
    return comm


async def listen(
    address: str, handle_comm: HandleComm, limits: FrameLimits | None = None,
    security: Credentials | None = None,
) -> Listener:
    """Listen at ``address`` (port 0 picks a free port; see ``Listener.address``),
    admitting only peers that prove ``security``'s token, over its TLS (None:
    the environment's).

    Each accepted connection runs ``handle_comm(comm)`` in its own task.
    """
    address = normalize_address(address)
    backend = _backend(parse_address(address)[0])
    listener: Listener = await backend.backend_listen(address, handle_comm,
                                                      limits or configured_limits(), security)
    listener.authenticates = not backend.IN_PROCESS
    listener.token = token_of(security)
    return listener
