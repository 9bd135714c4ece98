"""TCP and inproc comms: round trips, large payloads, bad peers, connect errors."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from taskmill.comm import Comm, CommClosedError, connect, listen, run
from taskmill.protocol import FrameLimits, ProtocolError, Serialized, serialize

pytestmark = pytest.mark.timeout(30)

SCHEMES = ["tcp://127.0.0.1:0", "inproc://"]


async def echo(comm: Comm) -> None:
    """Reply to every message with the message itself, until closed."""
    while True:
        await comm.write(await comm.read())


def run_with_listener(
    address: str, handler: Callable[[Comm], Awaitable[None]], body: Callable[[Any], Awaitable[Any]]
) -> Any:
    async def main() -> Any:
        listener = await listen(address, handler)
        try:
            return await body(listener)
        finally:
            await listener.stop()

    return run(main())


@pytest.mark.parametrize("address", SCHEMES)
def test_round_trip_semantics(address: str) -> None:
    async def body(listener: Any) -> None:
        comm = await connect(listener.address)
        assert comm.peer_address == listener.address
        payload = serialize({"nested": (1, 2)})
        n = await comm.write({"t": (1, (2,)), "b": b"x", "p": payload, "k": {("a", 1): 2}})
        assert n > 0
        out = await comm.read()
        assert out["t"] == [1, [2]] and out["b"] == b"x" and out["k"] == {("a", 1): 2}
        assert isinstance(out["p"], Serialized)
        assert out["p"].deserialize() == {"nested": (1, 2)}
        with pytest.raises(TypeError, match="cannot encode"):
            await comm.write({"bad": object()})
        await comm.write("still fine")
        assert await comm.read() == "still fine"
        await comm.close()
        await comm.close()  # twice is fine
        assert comm.closed()
        with pytest.raises(CommClosedError):
            await comm.read()
        with pytest.raises(CommClosedError):
            await comm.write("x")

    run_with_listener(address, echo, body)


@pytest.mark.parametrize("address", SCHEMES)
def test_100_mb_payload(address: str) -> None:
    arr = np.random.default_rng(0).integers(0, 255, size=100 * 2**20, dtype="u1")

    async def body(listener: Any) -> None:
        comm = await connect(listener.address)
        await comm.write({"data": serialize(arr)})
        out = (await comm.read())["data"].deserialize()
        assert out.nbytes == arr.nbytes and np.array_equal(out, arr)
        assert out.flags.writeable
        await comm.close()

    run_with_listener(address, echo, body)


def test_many_small_messages_in_flight_keep_order() -> None:
    async def body(listener: Any) -> None:
        comm = await connect(listener.address)
        for i in range(3000):
            await comm.write(i)
        assert [await comm.read() for _ in range(3000)] == list(range(3000))
        await comm.close()

    run_with_listener("tcp://127.0.0.1:0", echo, body)


@pytest.mark.parametrize(
    "garbage, reason",
    [
        (struct.pack("<Q", 10**9), "frames, more than the limit"),
        (struct.pack("<2Q", 1, 2**62), "exceeds the limit"),
        (struct.pack("<2Q", 1, 1) + b"\xc1", "malformed message"),
        (struct.pack("<2Q", 1, 100) + b"cut short", "closed mid-message"),
    ],
)
def test_bad_stream_closes_only_that_connection(
    garbage: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[str] = []

    async def handler(comm: Comm) -> None:
        try:
            await echo(comm)
        except CommClosedError as exc:
            errors.append(str(exc))
            raise

    async def body(listener: Any) -> str:
        good = await connect(listener.address)
        host, port = listener.address[len("tcp://") :].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        bad_local = "tcp://%s:%d" % writer.get_extra_info("sockname")
        writer.write(garbage)
        if "mid-message" in reason:
            writer.write_eof()
        data = await reader.read()  # to the end: the server closed this connection
        assert data == b"" or b"hello" in data  # at most its greeting came first
        writer.close()
        await good.write("still served")
        assert await good.read() == "still served"
        await good.close()
        return bad_local

    with caplog.at_level(logging.WARNING, logger="taskmill.comm"):
        bad_local = run_with_listener("tcp://127.0.0.1:0", handler, body)
    # the garbage may arrive before the listener's greeting is out: then the
    # greeting fails and the handler never runs; either way the reason is logged
    assert all(reason in e and bad_local in e for e in errors if bad_local in e), errors
    assert any(
        bad_local in r.getMessage() and reason in r.getMessage() for r in caplog.records
    ), caplog.text


def test_per_comm_limits_refuse_oversize_messages() -> None:
    async def main() -> None:
        limits = FrameLimits(max_message_bytes=10_000)
        listener = await listen("tcp://127.0.0.1:0", echo, limits=limits)
        comm = await connect(listener.address)
        await comm.write(b"x" * 5_000)
        assert await comm.read() == b"x" * 5_000
        await comm.write(b"x" * 20_000)  # our limit is the default, theirs is not
        with pytest.raises(CommClosedError, match="connection closed by peer"):
            await comm.read()
        small = await connect(listener.address, limits=limits)
        with pytest.raises(ProtocolError, match="exceeds the limit of 10000"):
            await small.write(b"x" * 20_000)
        await small.write("ok")  # nothing was sent: the comm still works
        assert await small.read() == "ok"
        await listener.stop()

    run(main())


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connect_to_dead_port_names_address_and_respects_timeout() -> None:
    address = f"tcp://127.0.0.1:{_dead_port()}"

    async def main() -> None:
        start = time.monotonic()
        with pytest.raises(OSError) as info:
            await connect(address.removeprefix("tcp://"), timeout=0.3)
        assert time.monotonic() - start < 2
        assert isinstance(info.value, TimeoutError)
        assert str(info.value).startswith(f"could not connect to {address} within 0.3s: ")
        assert "refused" in str(info.value)

    run(main())


def test_connect_retries_until_the_listener_appears() -> None:
    async def main() -> None:
        address = "inproc://late-listener"
        attempt = asyncio.ensure_future(connect(address, timeout=5))
        await asyncio.sleep(0.05)  # let a few attempts be refused
        assert not attempt.done()
        listener = await listen(address, echo)
        comm = await attempt
        await comm.write(1)
        assert await comm.read() == 1
        await listener.stop()

    run(main())


def test_listener_reports_real_port_and_stop_closes_comms() -> None:
    async def main() -> None:
        listener = await listen("tcp://127.0.0.1:0", echo)
        assert not listener.address.endswith(":0")
        comm = await connect(listener.address)
        await comm.write(1)
        await comm.read()
        await listener.stop()
        with pytest.raises(CommClosedError):
            await comm.read()
        with pytest.raises(OSError):
            await connect(listener.address, timeout=0.1)

    run(main())


def test_inproc_across_threads_and_loops() -> None:
    ready = threading.Event()
    stop: list[Callable[[], object]] = []
    address: list[str] = []

    def server_thread() -> None:
        async def main() -> None:
            done = asyncio.Event()
            loop = asyncio.get_running_loop()
            stop.append(lambda: loop.call_soon_threadsafe(done.set))
            listener = await listen("inproc://", echo)
            address.append(listener.address)
            ready.set()
            await done.wait()
            await listener.stop()

        run(main())

    thread = threading.Thread(target=server_thread)
    thread.start()
    try:
        assert ready.wait(10)

        async def client() -> None:
            comm = await connect(address[0])
            for i in range(100):
                await comm.write({"i": (i,)})
                assert await comm.read() == {"i": [i]}
            await comm.close()

        run(client())
    finally:
        stop[0]()
        thread.join(10)
    assert not thread.is_alive()


def test_bad_addresses_raise_value_error() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="expected 'tcp://host:port'"):
            await connect("no-port-here")

    run(main())


def _family(comm: Comm) -> int:
    return comm._transport.get_extra_info("socket").family  # type: ignore[attr-defined]


@pytest.mark.parametrize("listen_on", ["tcp://127.0.0.1:0", "tcp://0.0.0.0:0"])
def test_loopback_connections_take_the_unix_shortcut_and_tcp_still_works(listen_on: str) -> None:
    async def body(listener: Any) -> None:
        port = int(listener.address.rsplit(":", 1)[1])
        address = f"tcp://127.0.0.1:{port}"
        comm = await connect(address)
        assert _family(comm) == socket.AF_UNIX
        assert comm.peer_address == address
        await comm.write({"via": "shortcut"})
        assert await comm.read() == {"via": "shortcut"}
        await comm.close()
        # a plain TCP client (another machine's view) reaches the same listener
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        count, length = struct.unpack("<2Q", await reader.readexactly(16))  # the greeting
        assert count == 1 and b"hello" in await reader.readexactly(length)
        writer.write(struct.pack("<2Q", 1, 1) + b"\xc0")  # one frame: msgpack None
        await writer.drain()
        header = await reader.readexactly(16)
        assert struct.unpack("<2Q", header) == (1, 1)
        assert await reader.readexactly(1) == b"\xc0"
        writer.close()

    run_with_listener(listen_on, echo, body)


def test_loopback_without_a_shortcut_uses_tcp() -> None:
    async def body(listener: Any) -> None:
        listener._shortcut.close()  # as if the name could not be bound
        await listener._shortcut.wait_closed()
        comm = await connect(listener.address)
        assert _family(comm) == socket.AF_INET
        await comm.write("over TCP")
        assert await comm.read() == "over TCP"
        await comm.close()

    run_with_listener("tcp://127.0.0.1:0", echo, body)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to be another user")
def test_a_shortcut_name_taken_by_another_user_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    """Anyone may bind an abstract name; only our own user's is trusted."""
    port = _free_port()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the squatter: another user holding the shortcut name first
        try:
            os.setuid(65534)
            squat = socket.socket(socket.AF_UNIX)
            squat.bind(f"\0taskmill-tcp/127.0.0.1:{port}")
            squat.listen()
            os.write(ready_w, b"x")
            time.sleep(30)
        finally:
            os._exit(0)

    async def body(listener: Any) -> None:
        with caplog.at_level(logging.WARNING, logger="taskmill.comm.tcp"):
            comm = await connect(listener.address)
        assert _family(comm) == socket.AF_INET
        assert "belongs to uid 65534" in caplog.text
        await comm.write("the real server")
        assert await comm.read() == "the real server"
        await comm.close()

    try:
        assert os.read(ready_r, 1) == b"x"
        run_with_listener(f"tcp://127.0.0.1:{port}", echo, body)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(ready_r)
        os.close(ready_w)
