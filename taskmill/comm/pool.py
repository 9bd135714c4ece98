"""Client side of the request/reply convention: a pool of reusable comms.

Theory of operation
-------------------
A :class:`ConnectionPool` keeps idle comms per address and hands one out per
request, so concurrent requests to one address use separate connections and
sequential ones reuse the same connection (no connect cost).  At most
``limit`` comms are open at once: past it, idle comms to other addresses are
closed, or ``connect`` waits for a comm to come back.  A comm that broke, or
whose request did not complete cleanly (error, timeout, cancellation), is
aborted and never reused: a late reply must not be read by the next request.

:class:`RPC` is a view of the pool bound to one address: ``ask(message)``
sends a request of the vocabulary (:mod:`taskmill.protocol.vocabulary`) and
returns ``reply["result"]``, or raises the remote exception as its original
type with the remote traceback as ``__cause__``.  ``call(op, **kw)`` does the
same for a bare op (``{"op": op, "reply": True, **kw}``): the request/reply
convention itself knows no vocabulary.
"""

from __future__ import annotations

import asyncio
from typing import Any

from taskmill import timeouts
from taskmill.comm.addressing import normalize_address
from taskmill.comm.core import CommClosedError, Comm, connect
from taskmill.protocol import FrameLimits, ProtocolError, exception_from_reply
from taskmill.protocol.wire_types import Message
from taskmill.comm.credentials import Credentials


def unpack_reply(reply: Any, address: str) -> Any:
    """The result of a request's ``reply`` from ``address``, or its error raised
    (the remote exception as its original type, see ``exception_from_reply``)."""
    if not isinstance(reply, dict):
        raise ProtocolError(f"reply from {address} is not a dict: {reply!r:.200}")
    status = reply.get("status")
    if status == "OK":
        return reply.get("result")
    if status == "error":
        raise exception_from_reply(reply)
    raise ProtocolError(f"reply from {address} has unknown status {status!r:.100}")


class ConnectionPool:
    """Reusable comms to many addresses, at most ``limit`` open at once, each
    opened with ``security`` (None: the environment's; see ``connect``)."""

    def __init__(
        self,
        limit: int = 512,
        timeout: float | timeouts.Timeout = timeouts.CONNECT,
        limits: FrameLimits | None = None,
        security: Credentials | None = None,
    ) -> None:
        self.limit = limit
        self.timeout = timeout
        self.limits = limits
        self.security = security
        self._idle: dict[str, list[Comm]] = {}
        self._n_idle = 0
        self._in_use: set[Comm] = set()
        self._connecting = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False

    @property
    def open(self) -> int:
        """Number of comms open or being opened."""
        return len(self._in_use) + self._n_idle + self._connecting

    @property
    def active(self) -> int:
        """Number of comms handed out and not yet given back."""
        return len(self._in_use)

    async def connect(self, address: str) -> Comm:
        """A comm to ``address``: an idle one if any, else a new one.

        Give it back with :meth:`reuse` when the exchange completed cleanly,
        or abort it.
        """
        address = normalize_address(address)
        while True:
            if self._closed:
                raise CommClosedError("connection pool is closed")
            comm = self._take_idle(address)
            if comm is not None:
                self._in_use.add(comm)
                return comm
            if self.open < self.limit or self._evict_one():
                break
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self._connecting += 1
        try:
            comm = await connect(address, self.timeout, self.limits, self.security)
        finally:
            self._connecting -= 1
        if self._closed:
            comm.abort()
            self._notify()
            raise CommClosedError("connection pool is closed")
        self._in_use.add(comm)
        return comm

    def reuse(self, address: str, comm: Comm) -> None:
        """Give ``comm`` back; it stays open for the next request unless closed."""
        self._in_use.discard(comm)
        if comm.closed() or self._closed:
            comm.abort()
        else:
            self._idle.setdefault(normalize_address(address), []).append(comm)
            self._n_idle += 1
        self._notify()

    def abort_peer(self, address: str) -> int:
        """Abort every comm to ``address``, idle or handed out (a request
        waiting on one fails at once with ``CommClosedError``); -> how many."""
        address = normalize_address(address)
        idle = self._idle.pop(address, [])
        self._n_idle -= len(idle)
        busy = [comm for comm in self._in_use if comm.peer_address == address]
        for comm in (*idle, *busy):
            comm.abort()
        return len(idle) + len(busy)

    def rpc(self, address: str) -> RPC:
        """An :class:`RPC` for ``address`` that draws comms from this pool."""
        return RPC(self, normalize_address(address))

    async def close(self) -> None:
        """Abort every comm (idle or handed out); later ``connect`` calls fail."""
        self._closed = True
        for comms in self._idle.values():
            for comm in comms:
                comm.abort()
        self._idle.clear()
        self._n_idle = 0
        for comm in self._in_use:
            comm.abort()
        self._in_use.clear()
        self._notify()

    def _take_idle(self, address: str) -> Comm | None:
        comms = self._idle.get(address)
        while comms:
            comm = comms.pop()
            self._n_idle -= 1
            if not comm.closed():
                return comm
        return None

    def _evict_one(self) -> bool:
        """Close the least recently used idle comm, if any."""
        for comms in self._idle.values():
            if comms:
                comms.pop(0).abort()
                self._n_idle -= 1
                return True
        return False

    def _notify(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
                return

    def __repr__(self) -> str:
        return f"<ConnectionPool open={self.open} active={self.active} limit={self.limit}>"


class RPC:
    """Requests to one address over comms from a :class:`ConnectionPool`."""

    def __init__(self, pool: ConnectionPool, address: str) -> None:
        self.pool = pool
        self.address = address

    async def ask(self, msg: Message, *, timeout: float | timeouts.Timeout | None = None) -> Any:
        """Send the request ``msg`` and return its result (see :meth:`call`)."""
        request = msg.to_wire()
        request["reply"] = True
        return await self.request(request, timeout=timeout)

    async def call(
        self, op: str, *, timeout: float | timeouts.Timeout | None = None, **kwargs: Any
    ) -> Any:
        """Run ``op`` remotely with ``kwargs``; return its result or raise its error.

        ``timeout`` (seconds, or a :class:`taskmill.timeouts.Timeout`) bounds
        the whole call (connecting included) and raises
        ``asyncio.TimeoutError`` naming the op, the address and the variable
        that sets it; None waits as long as the peer stays connected (only
        for calls that run user code).  (A handler argument that is itself
        called ``timeout`` must go through :meth:`request`.)
        """
        return await self.request({"op": op, "reply": True, **kwargs}, timeout=timeout)

    async def request(
        self, msg: dict[str, Any], timeout: float | timeouts.Timeout | None = None
    ) -> Any:
        """Send the request dict ``msg`` and unpack the reply like :meth:`call`."""
        if timeout is None:
            reply = await self._exchange(msg)
        else:
            limit, hint = timeouts.seconds(timeout)
            try:
                reply = await asyncio.wait_for(self._exchange(msg), limit)
            except asyncio.TimeoutError as exc:
                raise asyncio.TimeoutError(
                    f"no reply to {msg.get('op')!r} from {self.address} within {limit:g}s{hint}"
                ) from exc
        return unpack_reply(reply, self.address)

    async def _exchange(self, msg: dict[str, Any]) -> Any:
        comm = await self.pool.connect(self.address)
        try:
            await comm.write(msg)
            reply = await comm.read()
        except BaseException:
            comm.abort()
            self.pool.reuse(self.address, comm)
            raise
        self.pool.reuse(self.address, comm)
        return reply

    def __repr__(self) -> str:
        return f"<RPC {self.address}>"
