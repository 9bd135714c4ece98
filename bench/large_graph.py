"""A very large dask graph on taskmill: submission time, completion time and
the scheduler's memory per task.

    .venv/bin/python bench/large_graph.py --tasks 1000000

The scheduler and two workers run as separate processes (``taskmill-scheduler``,
``taskmill-worker``) so the scheduler's resident memory can be measured on
its own, sampled every 50 ms.  The graph is ``tasks`` independent tiny tasks
feeding a tree reduction (fan-in 8), built as a plain dask graph dict.
While it runs, the scheduler must keep answering: the script pings it every
0.5 s and reports the slowest answer.
"""

from __future__ import annotations

import argparse
import operator
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

import psutil

from taskmill import Executor
from taskmill.client import dask_integration

BIN = os.path.dirname(sys.executable)


def build_graph(n: int) -> tuple[dict[Any, Any], Any]:
    graph: dict[Any, Any] = {("leaf", i): (operator.add, i, 1) for i in range(n)}
    level = list(graph)
    depth = 0
    while len(level) > 1:
        nxt = []
        for j in range(0, len(level), 8):
            key = ("sum", depth, j // 8)
            graph[key] = (sum, level[j:j + 8])
            nxt.append(key)
        level, depth = nxt, depth + 1
    return graph, level[0]


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([os.path.join(BIN, args[0]), *args[1:]], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def start_scheduler(*wrapper: str, output: IO[str] | None = None, extra: tuple[str, ...] = (),
                    env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """A ``taskmill-scheduler`` process on a free loopback port (no dashboard,
    warnings only, plus the options in ``extra``) and its address, found from
    its listening socket.  With ``wrapper`` (e.g. ``python -m cProfile -o FILE
    -m``) the scheduler runs as ``*wrapper taskmill.cli.scheduler_cli ...``; its
    output goes to ``output`` (a file; default: a pipe); ``env``: its
    environment (default: this process's)."""
    args = ("--port", "0", "--log-level", "WARNING", "--no-dashboard", *extra)
    command = ([*wrapper, "taskmill.cli.scheduler_cli", *args] if wrapper
               else [os.path.join(BIN, "taskmill-scheduler"), *args])
    proc = subprocess.Popen(command, stdout=output or subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    sched_ps = psutil.Process(proc.pid)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        for conn in sched_ps.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN:
                return proc, f"tcp://127.0.0.1:{conn.laddr.port}"
        time.sleep(0.1)
    proc.kill()
    said = proc.communicate()[0] if output is None else f"see {output.name}"
    raise RuntimeError(f"the scheduler did not start listening within 30 s: {said}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.tasks

    sched, address = start_scheduler()
    workers: list[subprocess.Popen[str]] = []
    try:
        sched_ps = psutil.Process(sched.pid)
        workers = [start("taskmill-worker", address, "--nthreads", "1", "--log-level", "WARNING")
                   for _ in range(2)]
        t0 = time.perf_counter()
        graph, root = build_graph(n)
        build = time.perf_counter() - t0
        with Executor(address) as e:
            while len(e.nthreads()) < 2:
                time.sleep(0.05)
            base_rss = sched_ps.memory_info().rss
            peak = [base_rss]
            slowest_ping = [0.0, 0.0]  # seconds, and when it started (since submission began)
            t1 = time.perf_counter()
            done = threading.Event()

            def watch() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], sched_ps.memory_info().rss)
                    done.wait(0.05)

            def ping() -> None:
                while not done.is_set():
                    t = time.perf_counter()
                    e.nthreads()
                    if time.perf_counter() - t > slowest_ping[0]:
                        slowest_ping[:] = [time.perf_counter() - t, t - t1]
                    done.wait(0.5)

            threading.Thread(target=watch, daemon=True).start()
            threading.Thread(target=ping, daemon=True).start()
            futures = dask_integration.submit_graph(e, graph, [root])
            submitted = time.perf_counter() - t1
            result = futures[0].result()
            total = time.perf_counter() - t1
            done.set()
        expected = sum(range(1, n + 1))
        ntasks = len(graph)
        print(f"tasks in graph:          {ntasks:,}")
        print(f"result correct:          {result == expected}")
        print(f"graph built (dict):      {build:.1f} s")
        print(f"submission (pack+send):  {submitted:.1f} s  ({submitted / ntasks * 1e6:.0f} us/task)")
        print(f"submit to result:        {total:.1f} s  ({ntasks / total:,.0f} tasks/s)")
        print(f"scheduler RSS growth:    {(peak[0] - base_rss) / 2**20:,.0f} MiB "
              f"({(peak[0] - base_rss) / ntasks:,.0f} bytes/task)")
        print(f"slowest scheduler ping:  {slowest_ping[0] * 1e3:.0f} ms, sent {slowest_ping[1]:.1f} s "
              f"after submission began ({'during' if slowest_ping[1] < submitted else 'after'} "
              "submission)")
    finally:
        for p in [*workers, sched]:
            p.send_signal(signal.SIGTERM)
        for p in [*workers, sched]:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
