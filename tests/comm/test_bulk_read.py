"""The rest of a large frame read by a thread: data intact, the comm usable
after, a close during the read ends it, small frames never use it.  (Over
TLS it must never be used, the socket's bytes being encrypted: the 16 MB
frame of tests/comm/test_tls.py arrives intact.)"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from taskmill.comm import Comm, CommClosedError, connect, listen, run
from taskmill.comm import tcp
from taskmill.comm.bulk_read import BULK_READ
from taskmill.protocol import encode_frames, serialize

pytestmark = pytest.mark.timeout(60)

MIB = 2**20


class CountedBulkReads:
    """Counts the bulk reads started in this process (wraps the class tcp uses)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started = 0
        real = tcp.BulkRead

        def counted(*args: Any) -> Any:
            self.started += 1
            return real(*args)
        monkeypatch.setattr(tcp, "BulkRead", counted)


async def echo(comm: Comm) -> None:
    while True:
        await comm.write(await comm.read())


def with_listener(body: Any, handler: Any = echo) -> Any:
    async def main() -> Any:
        listener = await listen("tcp://127.0.0.1:0", handler)
        try:
            return await body(listener)
        finally:
            await listener.stop()
    return run(main())


@pytest.mark.parametrize("busy", [False, True])
def test_large_frames_arrive_intact_and_the_comm_goes_on(monkeypatch: pytest.MonkeyPatch,
                                                          busy: bool) -> None:
    """Both ends of the echo read in bulk; a thread holding the GIL meanwhile
    (``busy``) changes nothing but the speed."""
    bulk = CountedBulkReads(monkeypatch)
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 255, size=n, dtype="u1") for n in (40 * MIB + 3, 3 * MIB, 24 * MIB)]
    done = threading.Event()

    def compute() -> None:
        while not done.is_set():
            sum(range(1000))

    async def body(listener: Any) -> None:
        comm = await connect(listener.address)
        for array in arrays:
            await comm.write({"data": serialize(array), "tail": "after"})
            got = await comm.read()
            assert got["tail"] == "after" and np.array_equal(got["data"].deserialize(), array)
        await comm.write("small")  # the transport reads again
        assert await comm.read() == "small"
        await comm.close()

    thread = threading.Thread(target=compute)
    if busy:
        thread.start()
    try:
        with_listener(body)
    finally:
        done.set()
        if busy:
            thread.join()
    assert bulk.started == 4  # the 40 and 24 MiB frames, each way; never the 3 MiB one


def test_closing_the_comm_ends_a_bulk_read_under_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """A peer that sends half a large frame and stops: closing our comm ends the
    thread's read, and nothing waits for the rest."""
    bulk = CountedBulkReads(monkeypatch)
    wire = encode_frames([b"h", bytes(2 * BULK_READ)])
    threads_before = set(threading.enumerate())

    async def send_half(comm: Comm) -> None:
        assert isinstance(comm, tcp.TCPComm)
        comm._transport.write(wire[: len(wire) // 2])  # raw bytes: half a message
        try:
            await comm.read()  # until our side closes
        except CommClosedError:
            pass

    async def body(listener: Any) -> None:
        comm = await connect(listener.address)
        reading = asyncio.ensure_future(comm.read())
        deadline = time.monotonic() + 20
        while not bulk.started:
            assert time.monotonic() < deadline, "the bulk read did not start"
            await asyncio.sleep(0.01)
        await comm.close()
        with pytest.raises(CommClosedError):
            await reading

    with_listener(body, send_half)
    deadline = time.monotonic() + 20
    while any(t.name == "taskmill-bulk-read" for t in set(threading.enumerate()) - threads_before):
        assert time.monotonic() < deadline, "the bulk-read thread did not end"
        time.sleep(0.01)
