"""Same-loop message links: objects handed over as they are, no encoding.

Theory of operation
-------------------
An embedded scheduler and the Executor that started it run on one event
loop.  Between them the message stream needs no bytes at all:
:func:`local_link` makes two connected :class:`LocalEnd` objects, and
``send(*msgs)`` on one end hands the messages to the other end's receiver
(``on_messages(batch)``), as one list.  This is the batching of
:class:`~taskmill.comm.batched.BatchedSend` without its encoding, copying,
decoding and reader task.  Each end chooses when its batches leave:

* **at once** (``at_once=True``, the default), inside ``send``, while the
  link is idle: a lone call's submission reaches the scheduler's machine, and
  its ``compute-task`` the worker's socket, in the very loop callback that
  took it from the user's thread, with no queue and no extra loop turn;
* **at the end of the turn** (``at_once=False``): every message sent during
  one loop turn is delivered together by a callback the loop runs next.  The
  scheduler's end to its client works so: the report that completes a
  Future wakes the user's thread, which then needs the GIL.  Completed in
  the last callback before the loop sleeps, the woken thread finds the GIL
  free; completed inside the scheduler's handling, the thread wakes, waits
  for the GIL while the loop ends its turn, and wakes again.

Messages sent while the link is busy wait and leave together, in order, on
the next loop turn, whichever the end's choice.  The link is busy while a
delivery runs on either of its ends (a receiver that sends back, or an end
that sends while its peer delivers, never nests a handling inside another:
a scheduler's routing is never interleaved with its client's reactions),
while messages wait, or while the other end has no receiver yet
(``on_messages`` is set after the link is made: messages sent meanwhile wait
for the next turn, not lost).

An exception from a receiver is the receiver's bug: it goes to the loop's
exception handler (as a failing loop callback would) and never into the
sender, which may be in the middle of its own handling.

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


class _Busy:
    """Whether a delivery runs on either end of one link (shared by both ends)."""

    __slots__ = ("delivering",)

    def __init__(self) -> None:
        self.delivering = False


class LocalEnd:
    """One end of a same-loop link; see the module docstring."""

    def __init__(self, loop: asyncio.AbstractEventLoop, peer_address: str, busy: _Busy) -> None:
        self.peer_address = peer_address
        #: deliver inside ``send`` while the link is idle, else at the end of the turn
        self.at_once = True
        #: receives each batch of messages the other end sent
        self.on_messages: OnMessages = _ignore_messages
        #: runs once when the other end closes or aborts
        self.on_close: Callable[[], None] = _ignore_close
        self._loop = loop
        self._peer: LocalEnd | None = None
        self._outbox: list[Any] = []
        self._flush_scheduled = False
        self._closed = False
        self._busy = busy

    def send(self, *msgs: Any) -> None:
        """Hand ``msgs`` to the other end: at once on an idle link (unless
        ``at_once`` is off), else with the next turn's batch (see the module
        docstring)."""
        if self._closed:
            raise CommClosedError(f"local link to {self.peer_address} is closed")
        peer = self._peer
        if (self.at_once and not self._outbox and not self._busy.delivering and peer is not None
                and peer.on_messages is not _ignore_messages):
            self._deliver(peer, list(msgs))
            return
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
        self._deliver(self._peer, batch)

    def _deliver(self, peer: LocalEnd, batch: list[Any]) -> None:
        busy = self._busy
        busy.delivering = True
        try:
            peer.on_messages(batch)
        except Exception as exc:  # the receiver's bug: not the sender's to handle
            self._loop.call_exception_handler({
                "message": f"receiver of a local link from {peer.peer_address} failed",
                "exception": exc,
            })
        finally:
            busy.delivering = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._outbox)} queued"
        return f"<LocalEnd to {self.peer_address}: {state}>"


def local_link(loop: asyncio.AbstractEventLoop, a_name: str, b_name: str, *,
               b_at_once: bool = True) -> tuple[LocalEnd, LocalEnd]:
    """Two connected ends on ``loop``: the first is ``a_name``'s (it talks to
    ``b_name``), the second ``b_name``'s; ``b_at_once=False`` makes the second
    deliver at the end of the turn (see the module docstring)."""
    busy = _Busy()
    a, b = LocalEnd(loop, b_name, busy), LocalEnd(loop, a_name, busy)
    b.at_once = b_at_once
    a._peer, b._peer = b, a
    return a, b
