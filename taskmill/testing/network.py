"""The simulated network: FIFO channels, pending work and a seeded choice of what happens next.

Theory of operation
-------------------
Every connection between simulated processes is a pair of :class:`Channel`
objects, one per direction, each a FIFO of *batches* (what one ``send`` of a
shell's batched stream carries), so messages between two peers keep their
order, as on a TCP stream, while messages on different connections overtake
each other freely.

Besides messages, simulated processes have *work* in progress
(:class:`Work`): a task running on a worker thread, a transfer between
workers, an answer to a request.  Each has the simulated time it is due.

:meth:`Network.step` makes one thing happen: it picks, with the network's own
seeded ``random.Random``, one channel holding messages (and delivers its
oldest batch, sometimes together with the batches behind it, as a busy
stream coalesces them) or one piece of pending work (and fires it).  The
:class:`~taskmill.testing.clock.FakeClock` then moves to the time that thing
was due.  The same seed and the same calls give the same run, byte for byte.

Batches travel as they do between real processes: the sender gives the wire
dicts (``msg.to_wire()``); with ``msgpack=True`` (the default) they are
encoded with :func:`taskmill.protocol.dumps` when sent and decoded with
:func:`taskmill.protocol.loads` when delivered, so a value msgpack cannot
carry fails at the sender, as it would on a socket.  The receiver decodes
each dict with :func:`taskmill.protocol.vocabulary.decode`, filling in its
own local fields.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import Any

from taskmill.protocol import dumps, loads
from taskmill.testing.clock import FakeClock

#: seconds a batch takes to cross the simulated network
LATENCY = 0.001

Batch = list[dict[str, Any]]
Receiver = Callable[["Channel", Batch], None]
Closer = Callable[["Channel"], None]


class _Closed:
    """The marker a closed connection leaves at the end of its channel."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<connection closed>"


CLOSED = _Closed()


class Channel:
    """One direction of one simulated connection: a FIFO of batches.

    ``receiver(channel, batch)`` gets each delivered batch (a list of wire
    dicts); ``on_close(channel)`` runs when the end of the stream is
    delivered (after every batch sent before the close)."""

    __slots__ = ("name", "queue", "receiver", "on_close", "closed")

    def __init__(self, name: str, receiver: Receiver, on_close: Closer | None = None) -> None:
        #: "src->dst", for traces and error messages
        self.name = name
        #: (due time, payload) per batch, oldest first; ``CLOSED`` ends it
        self.queue: deque[tuple[float, Any]] = deque()
        self.receiver = receiver
        self.on_close = on_close
        #: no more sending: closed by its sender, or its receiver is gone
        self.closed = False

    def __repr__(self) -> str:
        return f"<Channel {self.name}: {len(self.queue)} queued{', closed' if self.closed else ''}>"


class Work:
    """Something in progress in a simulated process, done at ``due``:
    ``fire()`` makes it happen (a task ends, a transfer lands ...)."""

    __slots__ = ("due", "fire", "label", "owner")

    def __init__(self, due: float, fire: Callable[[], None], label: str, owner: object) -> None:
        self.due = due
        self.fire = fire
        #: what it is, for traces and error messages
        self.label = label
        #: the simulated process it belongs to (its work vanishes with it)
        self.owner = owner

    def __repr__(self) -> str:
        return f"<Work {self.label} due {self.due:.4f}>"


class Network:
    """Channels and pending work of one simulation, and the seeded choice
    of what happens next (see the module docstring).

    ``coalesce``: the chance that a delivery also takes the next batch of the
    same channel (again and again), as a stream that was busy hands its
    reader several sends at once.  ``trace``: a list to append
    ``(receiver, message)`` to for every message delivered (receivers do it
    through :meth:`record`)."""

    def __init__(self, rng: random.Random, clock: FakeClock, *, msgpack: bool = True,
                 latency: float = LATENCY, coalesce: float = 0.25,
                 trace: list[tuple[str, Any]] | None = None) -> None:
        self.rng = rng
        self.clock = clock
        self.msgpack = msgpack
        self.latency = latency
        self.coalesce = coalesce
        self.trace = trace
        #: open channels (and closed ones still holding batches), in creation order
        self.channels: list[Channel] = []
        #: pending work, in no particular (but deterministic) order
        self.work: list[Work] = []
        #: steps taken so far
        self.steps = 0

    # ------------------------------------------------------------------ #
    # Channels
    # ------------------------------------------------------------------ #
    def channel(self, name: str, receiver: Receiver, on_close: Closer | None = None) -> Channel:
        """A new channel (one direction of a new connection)."""
        ch = Channel(name, receiver, on_close)
        self.channels.append(ch)
        return ch

    def send(self, ch: Channel, batch: Batch) -> None:
        """Queue one batch of wire dicts on ``ch`` (dropped if it is closed:
        the peer is gone)."""
        if ch.closed or not batch:
            return
        payload = dumps(batch) if self.msgpack else list(batch)
        ch.queue.append((self.clock.now + self.latency, payload))

    def close(self, ch: Channel, *, lose_queued: bool = False) -> None:
        """The sender closes ``ch``: its receiver sees the end of the stream
        after the batches already queued (or at once, with ``lose_queued``:
        the process died and what it had sent never left it)."""
        if ch.closed:
            return
        ch.closed = True
        if lose_queued:
            ch.queue.clear()
        ch.queue.append((self.clock.now + self.latency, CLOSED))

    def queued(self, ch: Channel) -> list[Batch]:
        """The batches queued on ``ch``, decoded (for inspection only)."""
        return [loads(p) if self.msgpack else p for _, p in ch.queue if p is not CLOSED]

    def send_first(self, ch: Channel, batch: Batch) -> None:
        """Put ``batch`` back at the head of ``ch`` (a request sent again)."""
        payload = dumps(batch) if self.msgpack else list(batch)
        ch.queue.appendleft((self.clock.now + self.latency, payload))

    def abort(self, ch: Channel) -> None:
        """The receiver of ``ch`` is gone: what is queued vanishes, nothing
        more is delivered."""
        ch.closed = True
        ch.queue.clear()
        self._drop(ch)

    def _drop(self, ch: Channel) -> None:
        try:
            self.channels.remove(ch)
        except ValueError:
            pass

    def deliver(self, ch: Channel) -> None:
        """Deliver the oldest batch of ``ch`` (maybe with the ones behind it)."""
        due, payload = ch.queue.popleft()
        self.clock.advance_to(due)
        if payload is CLOSED:
            self._drop(ch)
            if ch.on_close is not None:
                ch.on_close(ch)
            return
        batch: Batch = loads(payload) if self.msgpack else payload
        queue = ch.queue
        coalesce = self.coalesce
        while queue and coalesce and queue[0][1] is not CLOSED and self.rng.random() < coalesce:
            due, more = queue.popleft()
            self.clock.advance_to(due)
            batch.extend(loads(more) if self.msgpack else more)
        ch.receiver(ch, batch)

    # ------------------------------------------------------------------ #
    # Work
    # ------------------------------------------------------------------ #
    def schedule(self, delay: float, fire: Callable[[], None], label: str,
                 owner: object = None) -> Work:
        """Pending work of ``owner``, done ``delay`` simulated seconds from now."""
        item = Work(self.clock.now + delay, fire, label, owner)
        self.work.append(item)
        return item

    def cancel_work(self, owner: object) -> None:
        """Drop the pending work of ``owner`` (a process that died)."""
        self.work = [w for w in self.work if w.owner is not owner]

    def fire(self, item: Work) -> None:
        """Make pending ``item`` happen now (it must be pending)."""
        work = self.work
        i = work.index(item)
        work[i] = work[-1]
        work.pop()
        self.clock.advance_to(item.due)
        item.fire()

    # ------------------------------------------------------------------ #
    # Steps
    # ------------------------------------------------------------------ #
    @property
    def idle(self) -> bool:
        """Nothing queued on any channel and no pending work."""
        return not self.work and not any(ch.queue for ch in self.channels)

    def step(self) -> bool:
        """Make one thing happen, chosen by the seeded generator among
        channels holding batches and pending work; False when there is none."""
        ready = [ch for ch in self.channels if ch.queue]
        work = self.work
        n = len(ready) + len(work)
        if not n:
            return False
        self.steps += 1
        i = int(self.rng.random() * n)
        if i < len(ready):
            self.deliver(ready[i])
        else:
            i -= len(ready)
            item = work[i]
            work[i] = work[-1]
            work.pop()
            self.clock.advance_to(item.due)
            item.fire()
        return True

    def record(self, receiver: str, message: Any) -> None:
        """Append a delivered message to the trace, if tracing."""
        if self.trace is not None:
            self.trace.append((receiver, message))
