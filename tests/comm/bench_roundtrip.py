"""Measure a small request/reply round trip over loopback TCP (and inproc).

Run: ``.venv/bin/python tests/comm/bench_roundtrip.py [N]``.  Not collected by
pytest (no ``test_`` prefix).
"""

from __future__ import annotations

import asyncio
import sys
import time

from taskmill.comm import ConnectionPool, Comm, connect, handle_comm, listen
from taskmill.comm.eventloop import run


async def _echo(comm: Comm) -> None:
    await handle_comm(comm, {"echo": lambda comm, x: x})


async def measure(address: str, n: int) -> tuple[float, float]:
    """Median-ish microseconds per raw comm round trip and per RPC call."""
    listener = await listen(address, _echo)
    comm = await connect(listener.address)
    msg = {"op": "echo", "x": 1}
    for _ in range(200):
        await comm.write(msg)
        await comm.read()
    start = time.perf_counter()
    for _ in range(n):
        await comm.write(msg)
        await comm.read()
    raw = (time.perf_counter() - start) / n * 1e6
    await comm.close()
    pool = ConnectionPool()
    rpc = pool.rpc(listener.address)
    for _ in range(200):
        await rpc.call("echo", x=1)
    start = time.perf_counter()
    for _ in range(n):
        await rpc.call("echo", x=1)
    call = (time.perf_counter() - start) / n * 1e6
    await pool.close()
    await listener.stop()
    return raw, call


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    for name, runner in [("uvloop", run), ("asyncio", asyncio.run)]:
        for address in ["tcp://127.0.0.1:0", "inproc://"]:
            raw, call = runner(measure(address, n))
            print(f"{name:8} {address:20} comm round trip {raw:6.1f} us   rpc.call {call:6.1f} us")


if __name__ == "__main__":
    main()
