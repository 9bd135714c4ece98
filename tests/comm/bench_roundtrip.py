"""Measure a small request/reply round trip over loopback TCP (and inproc).

Run: ``.venv/bin/python tests/comm/bench_roundtrip.py``.  Not collected by
pytest (no ``test_`` prefix).  Reports the best and the median of 15 batches
of 1,000 round trips, so that noise from other processes on the machine shows
as a gap between the two instead of hiding the real cost.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time
from collections.abc import Awaitable, Callable

from taskmill.comm import Comm, ConnectionPool, connect, handle_comm, listen
from taskmill.comm.eventloop import run

BATCHES, BATCH = 15, 1000


async def _echo(comm: Comm) -> None:
    await handle_comm(comm, {"echo": lambda comm, x: x})


async def _timed(step: Callable[[], Awaitable[object]]) -> str:
    for _ in range(200):
        await step()
    per_batch = []
    for _ in range(BATCHES):
        start = time.perf_counter()
        for _ in range(BATCH):
            await step()
        per_batch.append((time.perf_counter() - start) / BATCH * 1e6)
    return f"best {min(per_batch):6.1f} us, median {statistics.median(per_batch):6.1f} us"


async def measure(address: str) -> None:
    """Print the cost of one raw comm round trip and of one ``RPC.call``."""
    comm = await connect(address)
    msg = {"op": "echo", "x": 1}

    async def raw() -> object:
        await comm.write(msg)
        return await comm.read()

    pool = ConnectionPool()
    rpc = pool.rpc(address)
    print(f"  comm write+read: {await _timed(raw)}")
    print(f"  rpc.call:        {await _timed(lambda: rpc.call('echo', x=1))}")
    await comm.close()
    await pool.close()


def _serve(queue: multiprocessing.Queue[str]) -> None:
    async def main() -> None:
        listener = await listen("tcp://127.0.0.1:0", _echo)
        queue.put(listener.address)
        await asyncio.Event().wait()

    run(main())


def main() -> None:
    queue: multiprocessing.Queue[str] = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve, args=(queue,), daemon=True)
    server.start()
    print("uvloop, server in another process (tcp):")
    run(measure(queue.get()))
    server.terminate()

    async def same_process(address: str) -> None:
        listener = await listen(address, _echo)
        await measure(listener.address)
        await listener.stop()

    for scheme in ["tcp://127.0.0.1:0", "inproc://"]:
        print(f"uvloop, client and server on one loop ({scheme}):")
        run(same_process(scheme))
    print("asyncio, client and server on one loop (tcp):")
    asyncio.run(same_process("tcp://127.0.0.1:0"))


if __name__ == "__main__":
    main()
