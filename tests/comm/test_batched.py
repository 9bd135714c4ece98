"""BatchedSend: coalescing within a tick, no added latency, holding, backpressure, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskmill.comm import BatchedSend, Comm, CommClosedError, connect, listen, run
from taskmill.comm.batched import HOLD_LIMIT
from taskmill.comm.eventloop import new_event_loop

pytestmark = pytest.mark.timeout(30)


class GatedComm(Comm):
    """A comm whose writes complete only when the test opens the gate."""

    local_address = peer_address = "test://gated"

    def __init__(self) -> None:
        self.writes: list[Any] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_with: Exception | None = None
        self._closed = False

    async def read(self) -> Any:
        raise NotImplementedError

    async def write(self, msg: Any) -> int:
        if self.fail_with is not None:
            raise self.fail_with
        self.writes.append(msg)
        await self.gate.wait()
        return 1

    async def close(self) -> None:
        self._closed = True

    def abort(self) -> None:
        self._closed = True

    def closed(self) -> bool:
        return self._closed


async def ticks(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


class InstantComm(GatedComm):
    """Writes complete at once (``write_nowait``), as on an idle socket."""

    def write_nowait(self, msg: Any) -> bool:
        if self.fail_with is not None:
            raise self.fail_with
        self.writes.append(msg)
        return True


def test_a_burst_costs_at_most_two_writes() -> None:
    async def main() -> None:
        comm = InstantComm()
        bs = BatchedSend(comm)
        for i in range(100):
            bs.send({"i": i})
        bs.send(100, 101)
        assert comm.writes == [[{"i": 0}]]  # an idle stream: the first leaves at once
        await ticks(1)
        assert comm.writes == [[{"i": 0}], [{"i": i} for i in range(1, 100)] + [100, 101]]
        assert (bs.messages_sent, bs.batches_sent) == (102, 2)
        await ticks(1)
        bs.send("next turn")  # idle again: at once
        assert comm.writes[-1] == ["next turn"]

    run(main())


def test_a_lone_send_is_written_inside_send() -> None:
    async def main() -> None:
        comm = InstantComm()
        bs = BatchedSend(comm)
        bs.send("alone")
        assert comm.writes == [["alone"]] and bs.batches_sent == 1
        await ticks(2)
        assert comm.writes == [["alone"]]  # the flush that followed had nothing to do

    run(main())


def test_a_write_that_must_wait_goes_through_a_task() -> None:
    async def main() -> None:
        comm = GatedComm()  # no write_nowait: every write is awaited
        bs = BatchedSend(comm)
        bs.send(1)
        bs.send(2, 3)
        await ticks(3)
        assert comm.writes == [[1], [2, 3]]

    run(main())


def test_messages_accumulate_while_a_write_is_in_flight() -> None:
    async def main() -> None:
        comm = GatedComm()
        comm.gate.clear()
        bs = BatchedSend(comm)
        bs.send(0)
        await ticks(3)
        assert comm.writes == [[0]]  # in flight, blocked on the gate
        for i in range(1, 6):
            bs.send(i)
            await ticks(1)
        assert comm.writes == [[0]] and bs.pending == 5
        comm.gate.set()
        await ticks(5)
        assert comm.writes == [[0], [1, 2, 3, 4, 5]]
        assert (bs.messages_sent, bs.batches_sent) == (6, 2)

    run(main())


def test_close_flushes_then_closes() -> None:
    async def main() -> None:
        comm = GatedComm()
        bs = BatchedSend(comm)
        bs.send(1, 2)
        await bs.close()
        assert comm.writes == [[1, 2]] and comm.closed()
        with pytest.raises(CommClosedError):
            bs.send(3)
        await bs.close()

    run(main())


def test_broken_comm_reports_error_and_refuses_sends() -> None:
    async def main() -> None:
        comm = GatedComm()
        comm.fail_with = CommClosedError("peer went away")
        errors: list[BaseException] = []
        bs = BatchedSend(comm, on_error=errors.append)
        bs.send(1)
        await ticks(3)
        assert errors == [comm.fail_with] and bs.exception is comm.fail_with
        assert comm.closed()
        with pytest.raises(CommClosedError, match="peer went away"):
            bs.send(2)

    run(main())


def test_batched_stream_over_tcp() -> None:
    async def main() -> None:
        received: list[Any] = []
        batches: list[int] = []
        done = asyncio.Event()

        async def handler(comm: Comm) -> None:
            while len(received) < 1000:
                batch = await comm.read()
                batches.append(len(batch))
                received.extend(batch)
            done.set()

        listener = await listen("tcp://127.0.0.1:0", handler)
        bs = BatchedSend(await connect(listener.address))
        for i in range(1000):
            bs.send({"i": (i,)})
            if i % 100 == 99:
                await ticks(1)
        await done.wait()
        assert received == [{"i": [i]} for i in range(1000)]
        assert len(batches) == bs.batches_sent and 10 <= bs.batches_sent < 1000
        await bs.close()
        await listener.stop()

    async def main_wrapper() -> None:
        await asyncio.wait_for(main(), 20)

    run(main_wrapper())


def test_new_event_loop_prefers_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    loop = new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_batch_over_the_frame_limits_goes_as_smaller_batches() -> None:
    """Many big messages queued in one tick exceed the header limit together,
    not alone: they must still all arrive, in order, in several writes."""
    import asyncio

    from taskmill.comm import BatchedSend, connect, listen
    from taskmill.comm.eventloop import run
    from taskmill.protocol import FrameLimits

    limits = FrameLimits(max_header_bytes=1 << 20)
    payload = b"x" * (300 * 1024)  # inline bytes: each message ~300 KiB of header

    async def main() -> list[int]:
        got: list[int] = []
        done = asyncio.Event()

        async def handle(comm: object) -> None:
            while len(got) < 10:
                for msg in await comm.read():  # type: ignore[attr-defined]
                    got.append(msg["i"])
            done.set()

        listener = await listen("tcp://127.0.0.1:0", handle, limits=limits)
        comm = await connect(listener.address, limits=limits)
        stream = BatchedSend(comm)
        stream.send(*({"i": i, "data": payload} for i in range(10)))
        await asyncio.wait_for(done.wait(), 10)
        assert stream.batches_sent > 1 and stream.messages_sent == 10
        await stream.close()
        await listener.stop()
        return got

    assert run(main()) == list(range(10))


def test_an_immediate_write_that_fails_breaks_the_stream_without_raising_in_send() -> None:
    async def main() -> None:
        comm = InstantComm()
        comm.fail_with = CommClosedError("peer went away")
        errors: list[BaseException] = []
        bs = BatchedSend(comm, on_error=errors.append)
        bs.send(1)  # the failure is recorded, as for a failed flush
        assert errors == [comm.fail_with] and bs.exception is comm.fail_with and comm.closed()
        with pytest.raises(CommClosedError, match="peer went away"):
            bs.send(2)

    run(main())


async def until(condition: Any, seconds: float = 5.0) -> None:
    """Poll ``condition()`` on the loop until it holds (fails after ``seconds``)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


def test_held_messages_wait_for_the_timer_on_an_idle_stream() -> None:
    async def main() -> None:
        comm = InstantComm()
        bs = BatchedSend(comm)
        bs.send("a", hold=0.05)
        bs.send("b", hold=0.05)  # joins; the timer of the first still runs
        await ticks(3)
        assert comm.writes == [] and bs.pending == 2
        await until(lambda: comm.writes != [])
        assert comm.writes == [["a", "b"]] and bs.pending == 0
        bs.send("c")  # idle again, not held: at once
        assert comm.writes[-1] == ["c"]

    run(main())


def test_held_messages_leave_in_order_with_the_next_urgent_send() -> None:
    async def main() -> None:
        comm = InstantComm()
        bs = BatchedSend(comm)
        bs.send("held 1", hold=60)
        bs.send("held 2", hold=60)
        bs.send("urgent")
        assert comm.writes == [["held 1", "held 2", "urgent"]]
        assert bs._hold_timer is None  # nothing is left to fire in a minute

    run(main())


def test_a_full_hold_is_written_at_once() -> None:
    async def main() -> None:
        comm = InstantComm()
        bs = BatchedSend(comm)
        for i in range(HOLD_LIMIT - 1):
            bs.send(i, hold=60)
        assert comm.writes == []
        bs.send(HOLD_LIMIT - 1, hold=60)
        assert comm.writes == [list(range(HOLD_LIMIT))]

    run(main())


def test_close_writes_held_messages() -> None:
    async def main() -> None:
        comm = InstantComm()
        bs = BatchedSend(comm)
        bs.send("held", hold=60)
        await bs.close()
        assert comm.writes == [["held"]] and comm.closed() and bs._hold_timer is None

    run(main())
