"""Actor calls from a user thread over its own connections (*channels*).

Theory of operation
-------------------
A blocking Executor's user thread (the main thread, a task's thread, an
actor's thread) that calls an actor's method would otherwise hand the
request to the Executor's event loop and wait for the loop to hand the reply
back: two thread hand-offs and the loop's own steps, about half of a call's
round trip.  Instead the thread keeps, per actor, a
:class:`~taskmill.comm.blocking.BlockingComm` to the actor's worker (a
:class:`Channel`) and does the I/O itself:

* A call writes its request at once and returns; its reply is read when
  someone needs it (``ActorFuture.result``/``done``, or a later call's
  result on the same channel).  A worker serves one connection's requests
  one at a time, in order, so a channel's replies come back in the order of
  its requests: each reply read goes to the oldest pending call.  So one
  thread's calls on one actor run in the order made, and a burst of calls is
  pipelined (no round trip between two calls).
* One channel per actor, not per worker: a long call on one actor does not
  hold up calls on another actor of the same worker.
* Channels belong to the thread that opened them (``threading.local``), at
  most ``MAX_CHANNELS`` per thread (the least recently used idle one closes
  beyond that).  A call's result may be asked for from another thread: a
  lock serialises each channel's reads and writes, and a thread whose reply
  another thread is reading just waits for it to be handed over.
* A broken connection fails every pending call of its channel with
  :class:`~taskmill.errors.ActorLostError` (the worker is gone) and drops the
  channel; the next call opens a new one.  Closing the Executor closes its
  channels (``Session.blocking_channels``).

The Executor's event loop keeps serving the other cases (asynchronous
Executors, calls made on the loop thread).
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
import weakref
from collections import OrderedDict, deque
from typing import Any, Protocol

from taskmill import timeouts
from taskmill.comm.blocking import BlockingComm
from taskmill.comm.credentials import token_of
from taskmill.comm.pool import unpack_reply
from taskmill.comm.tls import client_context
from taskmill.protocol.wire_types import Message

#: channels one thread keeps open at most
MAX_CHANNELS = 64
#: how often a thread waiting for a reply another thread reads looks again (seconds)
_HANDOVER_POLL = 0.005

class Call(Protocol):
    """What a channel needs of one call: its reply's meaning, and its error
    when the worker cannot be reached."""

    def unpack(self, reply: dict[str, Any]) -> Any: ...

    def lost(self, exc: Exception) -> Exception: ...


_local = threading.local()


class Channel:
    """One thread's connection to the worker of one actor (module docstring)."""

    def __init__(self, comm: BlockingComm, session: Any) -> None:
        self.comm = comm
        self.session = session
        self._lock = threading.Lock()
        self._pending: deque[tuple[concurrent.futures.Future[Any], Call]] = deque()
        self._finalizer = weakref.finalize(self, comm.close)
        session.blocking_channels.add(self)

    @property
    def broken(self) -> bool:
        return self.comm.closed()

    @property
    def idle(self) -> bool:
        return not self._pending

    def request(self, msg: Message, call: Call) -> concurrent.futures.Future[Any]:
        """Send ``msg``; the future gets ``call.unpack(reply)`` once the reply is read."""
        wire = msg.to_wire()
        wire["reply"] = True
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            try:
                self.comm.write(wire)
            except OSError as exc:
                self._break(exc)
                raise call.lost(exc) from exc
            self._pending.append((future, call))
        return future

    def wait(self, future: concurrent.futures.Future[Any], timeout: float | None) -> None:
        """Read replies until ``future`` is settled, at most ``timeout`` seconds
        (TimeoutError after that; the call goes on)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not future.done():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError
            if not self._lock.acquire(blocking=False):
                # another thread reads this channel: it hands our reply over
                concurrent.futures.wait([future], timeout=_HANDOVER_POLL if remaining is None
                                        else min(_HANDOVER_POLL, remaining))
                continue
            try:
                if not future.done():
                    self._read_one(remaining)
            finally:
                self._lock.release()

    def poll(self) -> None:
        """Hand over the replies that arrived, without waiting."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            while self._pending and self.comm.ready():
                self._read_one(None)
        finally:
            self._lock.release()

    def _read_one(self, timeout: float | None) -> None:
        try:
            reply = self.comm.read(timeout)
        except TimeoutError:
            raise
        except OSError as exc:
            self._break(exc)
            return
        future, call = self._pending.popleft()
        try:
            future.set_result(call.unpack(unpack_reply(reply, self.comm.peer_address)))
        except BaseException as exc:  # the call's own error (the method raised, lost...)
            future.set_exception(exc)

    def _break(self, exc: Exception) -> None:
        """The connection failed: every pending call fails, the channel is dropped."""
        self.close()
        while self._pending:
            future, call = self._pending.popleft()
            if not future.done():
                future.set_exception(call.lost(exc))

    def close(self) -> None:
        self.comm.close()
        self.session.blocking_channels.discard(self)


def channel_for(session: Any, key: str, address: str, call: Call) -> Channel:
    """This thread's channel to the actor ``key`` on ``address`` through
    ``session``, opened if needed (a failure to connect raises ``call.lost(exc)``)."""
    channels: OrderedDict[tuple[str, str], Channel] | None = getattr(_local, "channels", None)
    if channels is None:
        channels = _local.channels = OrderedDict()
    ident = (session.id, key)
    channel = channels.get(ident)
    if channel is not None and not channel.broken and session.status == "running":
        channels.move_to_end(ident)
        return channel
    if channel is not None:
        channel.close()
        del channels[ident]
    try:
        comm = BlockingComm.connect(address, timeout=timeouts.PEER_CONNECT.get(),
                                    token=token_of(session.security),
                                    context=client_context(session.security))
    except OSError as exc:
        raise call.lost(exc) from exc
    channel = channels[ident] = Channel(comm, session)
    _trim(channels)
    return channel


def _trim(channels: OrderedDict[tuple[str, str], Channel]) -> None:
    """Forget broken channels (their Executor closed, their worker gone), then
    close the least recently used idle ones beyond ``MAX_CHANNELS``."""
    for ident, channel in list(channels.items()):
        if channel.broken:
            del channels[ident]
    for ident, channel in list(channels.items()):
        if len(channels) <= MAX_CHANNELS:
            return
        if channel.idle:
            channel.close()
            del channels[ident]
