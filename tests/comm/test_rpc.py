"""Request/reply: handle_comm on the server side, ConnectionPool/RPC on the client side."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from taskmill import timeouts
from taskmill.comm import Comm, CommClosedError, ConnectionPool, connect, handle_comm, listen, run
from taskmill.protocol import RemoteTraceback, Serialized, serialize

pytestmark = pytest.mark.timeout(30)


class CustomError(Exception):
    pass


class Server:
    """A listener whose handlers record which comm served them."""

    def __init__(self) -> None:
        self.comms: set[Comm] = set()
        self.release = asyncio.Event()
        self.streamed: list[Any] = []
        self.handlers: dict[str, Callable[..., Any]] = {
            "add": self.add,
            "slow": self.slow,
            "fail": self.fail,
            "unencodable": lambda comm: object(),
            "stream": self.stream,
            "record": lambda comm, x: self.streamed.append(x),
            "array": self.array,
        }
        self.sent: list[weakref.ref[Any]] = []

    def array(self, comm: Comm) -> Serialized:
        value = np.ones(1000)
        self.sent.append(weakref.ref(value))
        return serialize(value)

    def add(self, comm: Comm, x: int, y: int = 0) -> int:
        self.comms.add(comm)
        return x + y

    async def slow(self, comm: Comm) -> str:
        self.comms.add(comm)
        await self.release.wait()
        return "done"

    def fail(self, comm: Comm) -> None:
        raise CustomError("it broke")

    async def stream(self, comm: Comm) -> None:
        """Take the comm over: read lists of messages until it closes."""
        try:
            while True:
                self.streamed.extend(await comm.read())
        except CommClosedError:
            return

    async def serve(self, comm: Comm) -> None:
        await handle_comm(comm, self.handlers)


async def start() -> tuple[Server, Any]:
    server = Server()
    listener = await listen("tcp://127.0.0.1:0", server.serve)
    return server, listener


def test_call_and_connection_reuse() -> None:
    async def main() -> None:
        server, listener = await start()
        pool = ConnectionPool()
        rpc = pool.rpc(listener.address)
        assert await rpc.call("add", x=1, y=2) == 3
        assert await rpc.call("add", x=5) == 5
        assert len(server.comms) == 1  # sequential calls reuse one connection
        assert pool.open == 1 and pool.active == 0
        results = await asyncio.gather(*(rpc.call("add", x=i) for i in range(5)))
        assert results == list(range(5))
        assert pool.open == 5 == len(server.comms)  # concurrent calls need their own
        await pool.close()
        await listener.stop()

    run(main())


def test_a_reply_is_not_kept_once_sent() -> None:
    async def main() -> None:
        server, listener = await start()
        comm = await connect(listener.address)
        await comm.write({"op": "array"})
        reply = await comm.read()
        assert reply["result"].deserialize().sum() == 1000
        deadline = time.monotonic() + 10  # no further request comes on this connection
        while server.sent[0]() is not None:
            assert time.monotonic() < deadline, "the server still holds the reply it sent"
            await asyncio.sleep(0.01)
        await comm.close()
        await listener.stop()

    run(main())


def test_remote_exception_keeps_type_and_traceback() -> None:
    async def main() -> None:
        _, listener = await start()
        pool = ConnectionPool()
        rpc = pool.rpc(listener.address)
        with pytest.raises(CustomError, match="it broke") as info:
            await rpc.call("fail")
        assert isinstance(info.value.__cause__, RemoteTraceback)
        assert 'raise CustomError("it broke")' in str(info.value.__cause__)
        assert await rpc.call("add", x=1) == 1  # the server keeps serving
        with pytest.raises(TypeError, match="cannot encode object object"):
            await rpc.call("unencodable")
        with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
            await rpc.call("add", x=1, z=3)
        await pool.close()
        await listener.stop()

    run(main())


def test_unknown_op_gets_an_error_reply_and_serving_continues() -> None:
    async def main() -> None:
        _, listener = await start()
        comm = await connect(listener.address)
        await comm.write({"op": "nope"})
        reply = await comm.read()
        assert reply["status"] == "error" and reply["text"] == "unknown operation 'nope'"
        await comm.write({"no-op": 1})
        assert "no 'op'" in (await comm.read())["text"]
        await comm.write({"op": "add", "x": 2, "reply": False})  # no reply expected
        await comm.write({"op": "add", "x": 3})
        assert await comm.read() == {"status": "OK", "result": 3}
        await comm.close()
        await listener.stop()

    run(main())


def test_non_dict_request_gets_error_and_close(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        _, listener = await start()
        comm = await connect(listener.address)
        await comm.write(["not", "a", "request"])
        reply = await comm.read()
        assert reply["status"] == "error" and "expected a request dict" in reply["text"]
        with pytest.raises(CommClosedError):
            await comm.read()
        await listener.stop()

    with caplog.at_level(logging.WARNING, logger="taskmill.comm"):
        run(main())
    assert "expected a request dict, got list" in caplog.text


def test_timeout_names_op_and_address_and_drops_the_comm(set_options: Any) -> None:
    set_options({"comm.timeouts.request": 0.05})

    async def main() -> None:
        server, listener = await start()
        pool = ConnectionPool()
        rpc = pool.rpc(listener.address)
        with pytest.raises(asyncio.TimeoutError, match=f"no reply to 'slow' from {listener.address} within 0.05s$"):
            await rpc.call("slow", timeout=0.05)
        assert pool.open == 0  # the comm with a pending reply is never reused
        # a configurable timeout names the variable that sets it
        with pytest.raises(asyncio.TimeoutError, match=r"within 0.05s \(set TASKMILL_REQUEST_TIMEOUT"):
            await rpc.call("slow", timeout=timeouts.REQUEST)
        assert await rpc.call("add", x=1, timeout=5) == 1
        assert len(server.comms) == 3
        server.release.set()
        await pool.close()
        await listener.stop()

    run(main())


def test_broken_connections_are_not_reused() -> None:
    async def main() -> None:
        server, listener = await start()
        pool = ConnectionPool()
        address = listener.address
        comm = await pool.connect(address)
        comm.abort()
        pool.reuse(address, comm)
        assert pool.open == 0
        assert await pool.rpc(address).call("add", x=1) == 1
        await listener.stop()  # closes the server side of the idle comm
        server2 = Server()
        listener2 = await listen(address, server2.serve)  # same port
        for _ in range(100):  # let the close reach the idle comm
            if pool.open == 0 or all(c.closed() for c in pool._idle[address]):
                break
            await asyncio.sleep(0.01)
        assert await pool.rpc(address).call("add", x=2) == 2
        await pool.close()
        await listener2.stop()

    run(main())


def test_pool_limit_waits_for_a_free_comm() -> None:
    async def main() -> None:
        server, listener = await start()
        pool = ConnectionPool(limit=2)
        rpc = pool.rpc(listener.address)
        calls = [asyncio.ensure_future(rpc.call("slow")) for _ in range(4)]
        while len(server.comms) < 2:
            await asyncio.sleep(0.005)
        assert pool.open == 2
        server.release.set()
        assert await asyncio.gather(*calls) == ["done"] * 4
        assert len(server.comms) == 2 and pool.open == 2
        await pool.close()
        with pytest.raises(CommClosedError):
            await pool.connect(listener.address)
        await listener.stop()

    run(main())


def test_handler_may_take_over_the_comm_for_a_stream() -> None:
    async def main() -> None:
        server, listener = await start()
        comm = await connect(listener.address)
        await comm.write({"op": "stream", "reply": False})
        await comm.write([1, 2])
        await comm.write([3])
        await comm.close()
        rpc = ConnectionPool().rpc(listener.address)
        while len(server.streamed) < 3:
            await rpc.call("add", x=0)  # round trips let the stream drain
        assert server.streamed == [1, 2, 3]
        await listener.stop()

    run(main())
