"""Batched stream: many small messages coalesced into few writes, no timer.

Theory of operation
-------------------
``BatchedSend.send(*msgs)`` never blocks.  On an idle stream (nothing
queued, no write in flight, no flush due) the messages are written at once,
inside ``send``, so the peer can start on them while this side finishes its
own work; a flush is then scheduled with ``loop.call_soon``, and every later
send of this loop iteration joins the buffer and leaves with that flush as ONE
message (a list) in ONE write.  So a lone send costs no extra loop turn and a
burst at most two writes.  While a write is in flight (the transport is
applying backpressure), new messages accumulate and go out in the next write
as soon as the current one completes.  A write that needs no waiting goes out
synchronously (``Comm.write_nowait``), so the common case costs no task.  A
batch that would exceed the frame limits (many big messages queued at once)
goes out as several smaller batches, in order.

Holding.  ``send(..., hold=seconds)`` lets messages that are not urgent wait
for company: on an idle stream they are not written at once but stay in the
buffer until the first of: a later send without ``hold`` (they go with it, in
order), ``HOLD_LIMIT`` messages waiting, or a timer ``seconds`` after the
first held message.  A worker holds its task reports while it still runs
other calls (more reports follow within microseconds), so a map's thousands
of reports reach the scheduler in tens of writes, not one each; a lone call's
report is not held.

The receiver reads lists of messages from the comm.

Errors: when the comm breaks or a batch cannot be encoded, the comm is
aborted, the error is kept (``exception``) and reported to ``on_error`` if
given, and every later ``send`` raises :class:`CommClosedError`.  Must be used
from the thread of the loop that owns the comm.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from taskmill.comm.core import CommClosedError, Comm
from taskmill.protocol import ProtocolError
from taskmill.protocol.wire_types import Message

logger = logging.getLogger("taskmill.comm.batched")

#: held messages written anyway once this many wait (see ``BatchedSend.send``)
HOLD_LIMIT = 64


class BatchedSend:
    """Coalesces messages sent to one comm into batched writes."""

    def __init__(
        self, comm: Comm, on_error: Callable[[BaseException], None] | None = None
    ) -> None:
        self.comm = comm
        self.on_error = on_error
        #: Messages written so far.
        self.messages_sent = 0
        #: Writes (batches) made so far.
        self.batches_sent = 0
        #: The error that broke the stream, if any.
        self.exception: BaseException | None = None
        self._buffer: list[Any] = []
        self._flush_scheduled = False
        self._write_task: asyncio.Task[None] | None = None
        self._hold_timer: asyncio.TimerHandle | None = None
        self._closing = False

    def send(self, *msgs: Any, hold: float = 0.0) -> None:
        """Queue ``msgs`` for the next batch; raises if the stream is closed.
        With ``hold`` (seconds) an idle stream waits up to that long for more
        messages before writing (see the module's docstring)."""
        if self._closing or self.exception is not None or self.comm.closed():
            raise CommClosedError(
                f"batched stream to {self.comm.peer_address} is closed"
                + (f": {self.exception!r}" if self.exception is not None else "")
            ) from self.exception
        self._buffer.extend(msgs)
        if self._flush_scheduled or self._write_task is not None:
            return  # leaves with this iteration's flush, or after the write in flight
        if hold > 0.0 and len(self._buffer) < HOLD_LIMIT:
            if self._hold_timer is None:
                self._hold_timer = asyncio.get_running_loop().call_later(hold, self._hold_over)
            return
        self._flush_scheduled = True
        asyncio.get_running_loop().call_soon(self._flush)  # for later sends of this iteration
        self._write_buffer()  # an idle stream: these go now

    def send_messages(self, *msgs: Message, hold: float = 0.0) -> None:
        """Send messages of the vocabulary, in their wire form (see :meth:`send`)."""
        self.send(*[m.to_wire() for m in msgs], hold=hold)

    @property
    def pending(self) -> int:
        """Messages queued and not yet handed to a write."""
        return len(self._buffer)

    async def close(self) -> None:
        """Write everything queued, then close the comm.  Closing twice is fine."""
        self._closing = True
        while self._write_task is not None or (self._buffer and self.exception is None):
            if self._write_task is None:
                self._write_buffer()
            if self._write_task is not None:
                await asyncio.shield(self._write_task)
        await self.comm.close()

    def abort(self) -> None:
        """Drop queued messages and abort the comm."""
        self._closing = True
        self._end_hold()
        self._buffer.clear()
        if self._write_task is not None:
            self._write_task.cancel()
        self.comm.abort()

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._write_buffer()

    def _hold_over(self) -> None:
        self._hold_timer = None
        self._write_buffer()

    def _end_hold(self) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None

    def _write_buffer(self) -> None:
        if self._write_task is not None or not self._buffer or self.exception is not None:
            return
        self._end_hold()  # whatever was held leaves with this write
        batch, self._buffer = self._buffer, []
        try:  # the common case: all of it now, no task, no extra loop turn
            rest = self._write_nowait(batch)
        except Exception as exc:
            self._fail(exc)
            return
        if rest:
            self._write_task = asyncio.get_running_loop().create_task(self._write(rest))

    def _write_nowait(self, batch: list[Any]) -> list[Any]:
        """Write what flow control allows now; a batch over the frame limits
        goes as smaller batches.  Returns the messages left to write later."""
        try:
            if not self.comm.write_nowait(batch):
                return batch
        except ProtocolError:
            if len(batch) == 1:
                raise
            half = len(batch) // 2
            rest = self._write_nowait(batch[:half])
            return rest + batch[half:] if rest else self._write_nowait(batch[half:])
        self.messages_sent += len(batch)
        self.batches_sent += 1
        return []

    async def _write_split(self, batch: list[Any]) -> None:
        """``comm.write`` of a batch, split in halves while it exceeds the frame limits."""
        try:
            await self.comm.write(batch)
        except ProtocolError:
            if len(batch) == 1:
                raise
            half = len(batch) // 2
            await self._write_split(batch[:half])
            await self._write_split(batch[half:])
            return
        self.messages_sent += len(batch)
        self.batches_sent += 1

    async def _write(self, batch: list[Any]) -> None:
        try:
            await self._write_split(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)
        finally:
            self._write_task = None
        if self._buffer and self.exception is None:
            self._write_buffer()

    def _fail(self, exc: BaseException) -> None:
        self._end_hold()
        self.exception = exc
        self._buffer.clear()
        if not isinstance(exc, CommClosedError):
            logger.error("batched stream to %s failed: %r", self.comm.peer_address, exc)
        self.comm.abort()
        if self.on_error is not None:
            self.on_error(exc)

    def __repr__(self) -> str:
        return (
            f"<BatchedSend to {self.comm.peer_address}: {self.messages_sent} messages "
            f"in {self.batches_sent} batches, {len(self._buffer)} pending>"
        )
