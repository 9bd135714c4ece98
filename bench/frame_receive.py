"""What receiving one large message costs: taskmill's comms alone, checkouts side by side.

```
.venv/bin/python bench/frame_receive.py /tmp/old .             # 6 repetitions, 200 MB
.venv/bin/python bench/frame_receive.py /tmp/old . --repeat 10 --mb 50
```

Theory of operation
-------------------
The cold-transfer workloads (``cold_transfers.py``) time whole clusters, whose
wall times drown in a shared machine's noise.  This one isolates the receive
path of ``taskmill.comm`` and measures it with the receiving process's own
CPU clock (``getrusage``, microseconds), which preemption does not inflate.

Per repetition and checkout: a sender process listens (``taskmill.comm.listen``
on 127.0.0.1, so the loopback shortcut is used as between local workers) and
answers each request with one pickled float64 array of ``--mb`` MB; a *fresh*
receiver process imports numpy, connects and fetches it three times (``first``, ``2nd``,
``3rd``), each time timing the request to the deserialized array (wall and
its CPU, user and system) and getting the sender's CPU for the write.  The
first fetch is the receiver's first large frame ever; the later ones show
what the memory freed by the earlier ones is worth.  With ``--busy`` a thread
of the receiver computes in pure Python throughout (a worker running a task,
or importing modules, while data arrives): the event loop then waits for the
GIL after every read of the socket.  Checkouts alternate
(ABBA); each runs its own code (it is the working directory and
``PYTHONPATH`` of both processes).  Prints medians per checkout and fetch,
and every receiver CPU value.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

FETCHES = ("first", "2nd", "3rd")


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_stime


async def _serve(nbytes: int) -> None:
    import numpy as np

    from taskmill.comm import listen
    from taskmill.protocol import serialize

    array = np.random.default_rng(0).random(nbytes // 8)

    async def handle(comm: Any) -> None:
        while True:
            try:
                await comm.read()
            except Exception:  # the receiver is done
                return
            before = _cpu()[0]
            await comm.write({"data": serialize(array)})
            await comm.write({"cpu": _cpu()[0] - before})

    listener = await listen("tcp://127.0.0.1:0", handle)
    print(listener.address, flush=True)
    await asyncio.Event().wait()  # until killed


def _compute(done: threading.Event) -> None:
    while not done.is_set():
        sum(range(1000))  # pure Python: holds the GIL but for the interpreter's switches


async def _fetch(address: str, busy: bool) -> None:
    import numpy  # noqa: F401  (an import is not a transfer)

    from taskmill.comm import connect

    done = threading.Event()
    if busy:  # a worker running a task, or importing, while its data arrives
        threading.Thread(target=_compute, args=(done,), daemon=True).start()
    comm = await connect(address)
    results = []
    for _ in FETCHES:
        (cpu, sys_cpu), began = _cpu(), time.perf_counter()
        await comm.write({"op": "get"})
        value = (await comm.read())["data"].deserialize()
        wall = time.perf_counter() - began
        cpu_after, sys_after = _cpu()
        sender = (await comm.read())["cpu"]
        results.append({"wall_ms": 1e3 * wall, "cpu_ms": 1e3 * (cpu_after - cpu),
                        "sys_ms": 1e3 * (sys_after - sys_cpu), "sender_cpu_ms": 1e3 * sender,
                        "nbytes": value.nbytes})
        del value
    await comm.close()
    done.set()
    print(json.dumps(results), flush=True)


def _one(checkout: str, nbytes: int, busy: bool) -> list[dict[str, float]]:
    env = dict(os.environ, PYTHONPATH=checkout)
    me = os.path.abspath(__file__)
    sender = subprocess.Popen([sys.executable, me, "--serve", str(nbytes)], cwd=checkout, env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert sender.stdout is not None
        address = sender.stdout.readline().strip()
        if not address:
            raise RuntimeError(f"the sender of {checkout} did not start")
        done = subprocess.run([sys.executable, me, "--fetch", address] + ["--busy"] * busy,
                              cwd=checkout, env=env,
                              capture_output=True, text=True, timeout=300)
        if done.returncode:
            raise RuntimeError(f"the receiver of {checkout} failed:\n{done.stderr[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
    finally:
        sender.kill()
        sender.wait()


def main() -> None:
    """Alternate the checkouts, print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="*", help="taskmill checkouts to compare")
    parser.add_argument("--repeat", type=int, default=6)
    parser.add_argument("--mb", type=int, default=200, help="array size in MB (10^6 bytes)")
    parser.add_argument("--busy", action="store_true",
                        help="a thread of the receiver computes in pure Python meanwhile")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--fetch", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        from taskmill.comm import run

        run(_serve(options.serve))
        return
    if options.fetch:
        from taskmill.comm import run

        run(_fetch(options.fetch, options.busy))
        return
    if not options.checkouts:
        parser.error("name at least one taskmill checkout (a directory), e.g. /tmp/old .")
    checkouts = [os.path.abspath(c) for c in options.checkouts]
    runs: dict[str, list[list[dict[str, float]]]] = {c: [] for c in checkouts}
    for rep in range(options.repeat):
        for checkout in checkouts if rep % 2 == 0 else checkouts[::-1]:
            runs[checkout].append(_one(checkout, options.mb * 1_000_000, options.busy))
    print(f"| checkout | fetch of {options.mb} MB | wall ms | receiver CPU ms | of which system | "
          "sender CPU ms | every receiver CPU ms |\n|---|---|---|---|---|---|---|")
    for checkout, results in runs.items():
        for i, fetch in enumerate(FETCHES):
            def median(key: str) -> float:
                return statistics.median(r[i][key] for r in results)
            every = ", ".join(f"{r[i]['cpu_ms']:.0f}" for r in results)
            print(f"| {checkout} | {fetch} | {median('wall_ms'):.0f} | {median('cpu_ms'):.1f} | "
                  f"{median('sys_ms'):.1f} | {median('sender_cpu_ms'):.1f} | {every} |")


if __name__ == "__main__":
    main()
