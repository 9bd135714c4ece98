"""Bad input gets a clear error and harms nothing else."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Iterator

import msgpack
import pytest

from taskmill import Executor, Security
from taskmill.comm import connect, parse_address
from taskmill.protocol import SerializationError
from taskmill.protocol.vocabulary import (
    ClientRegistered,
    CloseClient,
    FreeKeys,
    HasWhat,
    KeyLost,
    RegisterClient,
    WantKeys,
    decode,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def inprocess_executor() -> Iterator[Executor]:
    """An in-process cluster without a token (``Security()``), so that bad input
    from a peer allowed to connect reaches the parsers; a stranger's is refused
    at the handshake before (tests/comm/test_auth.py)."""
    with Executor(n_workers=2, threads_per_worker=1, processes=False, security=Security()) as e:
        yield e


def inc(x: int) -> int:
    return x + 1


def _raw_send(address: str, payload: bytes) -> bytes:
    _, host, port = parse_address(address)
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def _frame(header: bytes) -> bytes:
    return struct.pack("<Q", 1) + struct.pack("<Q", len(header)) + header


@pytest.mark.parametrize("payload", [
    b"\xff" * 64,                                   # garbage
    struct.pack("<Q", 1) + struct.pack("<Q", 1 << 60),  # absurd frame length
    struct.pack("<Q", 1) + struct.pack("<Q", 100) + b"short",  # truncated
    _frame(b"\xc1"),                                # not msgpack
])
def test_garbage_on_the_wire_closes_only_that_connection(inprocess_executor: Executor,
                                                          payload: bytes) -> None:
    e = inprocess_executor
    _raw_send(e.scheduler_address, payload)
    for worker in e.nthreads():
        _raw_send(worker, payload)
    assert e.submit(inc, 1).result() == 2
    assert e.gather(e.map(inc, range(10), pure=False)) == list(range(1, 11))


def test_unknown_op_gets_an_error_reply(inprocess_executor: Executor) -> None:
    e = inprocess_executor
    reply = _raw_send(e.scheduler_address, _frame(msgpack.packb({"op": "no-such-op", "reply": True})))
    assert b"no-such-op" in reply
    assert e.submit(inc, 2).result() == 3


def test_unpicklable_function_fails_at_submit_naming_it(inprocess_executor: Executor) -> None:
    lock = threading.Lock()

    def uses_lock() -> bool:
        return lock.locked()

    with pytest.raises(SerializationError, match="lock"):
        inprocess_executor.submit(uses_lock)


def test_unpicklable_result_raises_on_gather(inprocess_executor: Executor) -> None:
    f = inprocess_executor.submit(threading.Lock, pure=False)
    with pytest.raises(TypeError, match="lock"):
        f.result(timeout=20)


def test_exception_that_cannot_be_unpickled_still_arrives(inprocess_executor: Executor) -> None:
    class Strange(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(f"strange {a} {b}")

    def boom() -> None:
        raise Strange(1, 2)

    f = inprocess_executor.submit(boom, pure=False)
    with pytest.raises(Exception, match="strange 1 2"):
        f.result(timeout=20)


def test_a_message_off_its_stream_route_is_refused_and_the_scheduler_serves_on(
        inprocess_executor: Executor) -> None:
    """A request op, or a message of the scheduler's own, sent on a client's
    stream is malformed there: logged and skipped, never handed to the state
    machine (where it would be a bug and, under tests, close the scheduler)."""
    e = inprocess_executor

    async def intrude() -> None:
        comm = await connect(e.scheduler_address)
        request = RegisterClient("client-intruder").to_wire()
        request["reply"] = False
        await comm.write(request)
        assert isinstance(decode(await comm.read()), ClientRegistered)
        await comm.write([HasWhat().to_wire()])
        await comm.write([FreeKeys("s", "tcp://w:1", ("k",)).to_wire()])
        # a well-formed message after them: its answer shows they were read and skipped
        await comm.write([WantKeys("", "", ("no-such-key",)).to_wire()])
        (report,) = await asyncio.wait_for(comm.read(), 10)
        assert isinstance(decode(report, client="", stimulus_id=""), KeyLost)
        await comm.write([CloseClient().to_wire()])
        await comm.close()

    asyncio.run(intrude())
    assert e.submit(inc, 3).result() == 4
    assert e.cluster.scheduler.errors == []
