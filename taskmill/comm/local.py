"""Same-loop message links: objects handed over as they are, no encoding.

Theory of operation
-------------------
An embedded scheduler and the Executor that started it run on one event
loop.  Between them the message stream needs no bytes at all:
:func:`local_link` makes two connected :class:`LocalEnd` objects, and
``send(*msgs)`` on one end queues the messages; the other end's receiver
(``on_messages(batch)``) gets every message queued during this loop turn,
as one list, on the next turn.  This is the batching of
:class:`~taskmill.comm.batched.BatchedSend` (one delivery per turn, order
kept) without its encoding, copying, decoding and reader task.

The messages are the vocabulary's typed values themselves
(:mod:`taskmill.protocol.vocabulary`), not their wire form: the receiver sets
its local fields (``arrived``) and skips encoding and checking, which the
types already guarantee in one process.  Handing objects over has two rules,
which the users of a link keep:

* a message belongs to the receiver once sent: the sender never touches it
  again (the vocabulary's values are frozen);
* payload frames that may alias user memory (a numpy argument pickled with
  out-of-band buffers) are copied before sending (``Serialized.owned()``), so
  the receiver never shares memory with the user's objects, as over TCP.

Closing: ``close()`` delivers what is queued, then closes both ends;
``abort()`` drops it.  Either way the other end's ``on_close()`` runs once
(on the next loop turn), and a later ``send`` raises
:class:`~taskmill.comm.core.CommClosedError`.  A link is used from its
loop's thread only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from taskmill.comm.core import CommClosedError
from taskmill.protocol.wire_types import Message

OnMessages = Callable[[list[Any]], None]


def _ignore_messages(batch: list[Any]) -> None:
    pass


def _ignore_close() -> None:
    pass


class LocalEnd:
    """One end of a same-loop link; see the module docstring."""

    def __init__(self, loop: asyncio.AbstractEventLoop, peer_address: str) -> None:
        self.peer_address = peer_address
        #: receives each batch of messages the other end sent
        self.on_messages: OnMessages = _ignore_messages
        #: runs once when the other end closes or aborts
        self.on_close: Callable[[], None] = _ignore_close
        self._loop = loop
        self._peer: LocalEnd | None = None
        self._outbox: list[Any] = []
        self._flush_scheduled = False
        self._closed = False

    def send(self, *msgs: Any) -> None:
        """Queue ``msgs`` for the other end's next delivery."""
        if self._closed:
            raise CommClosedError(f"local link to {self.peer_address} is closed")
        self._outbox.extend(msgs)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def send_messages(self, *msgs: Message) -> None:
        """Hand messages of the vocabulary over as they are: on one loop they
        need no wire form (a ``BatchedSend`` encodes them)."""
        self.send(*msgs)

    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Deliver what is queued, then close both ends.  Closing twice is fine."""
        self._flush()
        self.abort()

    def abort(self) -> None:
        """Close both ends at once, dropping what is queued."""
        if self._closed:
            return
        self._closed = True
        self._outbox = []
        peer = self._peer
        if peer is not None and not peer._closed:
            peer._closed = True
            peer._outbox = []
            self._loop.call_soon(peer.on_close)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._closed or not self._outbox:
            return
        batch, self._outbox = self._outbox, []
        assert self._peer is not None
        self._peer.on_messages(batch)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._outbox)} queued"
        return f"<LocalEnd to {self.peer_address}: {state}>"


def local_link(loop: asyncio.AbstractEventLoop, a_name: str, b_name: str) -> tuple[LocalEnd, LocalEnd]:
    """Two connected ends on ``loop``: the first is ``a_name``'s (it talks to
    ``b_name``), the second ``b_name``'s."""
    a, b = LocalEnd(loop, peer_address=b_name), LocalEnd(loop, peer_address=a_name)
    a._peer, b._peer = b, a
    return a, b
