"""The big-graph target of issue 15: ``da.ones(N, chunks=1).sum()`` end to end,
taskmill against dask.distributed, side by side.

```
PYTHONPATH=. .venv/bin/python bench/big_array.py --chunks 100000 --repeat 3
PYTHONPATH=. .venv/bin/python bench/big_array.py --chunks 1000000 --repeat 1 --systems taskmill
```

Theory of operation
-------------------
Each repetition runs each system in a fresh interpreter (``--child SYSTEM``),
the order alternating between repetitions, on 2 worker processes x 1 thread:
``Executor(n_workers=2, threads_per_worker=1)`` or
``distributed.Client(n_workers=2, threads_per_worker=1)``.  After one warm-up
task the child times ``x.compute()`` of ``x = da.ones(N, chunks=1).sum()``
(the collection is made inside the timed span too) and checks the result is
``N``.  The rate is quoted per task of the collection's graph as dask counts
it (``len(x.__dask_graph__())``: 2,333,337 at N = 1,000,000, the issue's
figure); what the cluster really runs is fewer (dask fuses each ``ones``
chunk into its ``sum``: 1,333,337), also reported.

Phases (taskmill only, measured inside the same ``compute()`` call by timing
the module functions it goes through): ``build``: from the call to the
start of packing (dask's expression optimisation); ``graph``: materialising
the optimised graph (``dask_graph.graph_of``, dask's work); ``pack``: the rest
of packing (normalising, ordering, pickling each task), summed over the
slices; ``submit``: ``Session.submit_tasks`` (futures, queueing the
messages), summed; ``run``: from the last submission to the result.  Since
the graph goes out slice by slice as it is packed, the cluster already runs
during ``pack`` and ``submit``: ``run`` is only what is left after them.
Phases are wall seconds.

Responsiveness: a thread pings every 0.1 s, each with a deadline of 0.5 s,
(a) the client's event loop (a no-op callback scheduled on it, for taskmill
also the embedded scheduler's loop) and (b) the scheduler (taskmill:
``Executor.nthreads``, a request it answers; dask: ``identity``); the slowest
answer of each is reported (a ping still unanswered when the run ends counts
with its age).  CPU seconds: of the client process and of all its children
(the workers), from before the collection is made to the result.  The child
reports before closing its cluster, and again with ``close_s`` (the seconds
closing took) after; a failure to close is printed, the measurement kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PING_EVERY = 0.1
PING_DEADLINE = 0.5


class Pinger:
    """Pings ``probes`` (name -> blocking call) every ``PING_EVERY`` s from a
    thread each, and keeps the slowest answer per probe."""

    def __init__(self, probes: dict[str, Callable[[], Any]]) -> None:
        self.slowest = {name: 0.0 for name in probes}
        self._started: dict[str, float | None] = {name: None for name in probes}
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(name, probe), daemon=True)
                         for name, probe in probes.items()]
        for t in self._threads:
            t.start()

    def _run(self, name: str, probe: Callable[[], Any]) -> None:
        while not self._done.is_set():
            t = time.perf_counter()
            self._started[name] = t
            probe()
            self._started[name] = None
            self.slowest[name] = max(self.slowest[name], time.perf_counter() - t)
            self._done.wait(PING_EVERY)

    def stop(self) -> dict[str, float]:
        """Stop pinging; the slowest answer per probe (an unanswered one: its age)."""
        self._done.set()
        now = time.perf_counter()
        for name, started in self._started.items():
            if started is not None:
                self.slowest[name] = max(self.slowest[name], now - started)
        return dict(self.slowest)


def loop_ping(loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """A blocking probe: a no-op callback run by ``loop``."""
    def probe() -> None:
        done = threading.Event()
        loop.call_soon_threadsafe(done.set)
        done.wait(PING_DEADLINE * 20)
    return probe


def cpu_seconds() -> dict[str, float]:
    import psutil

    me = psutil.Process()
    kids = me.children(recursive=True)
    return {"client": sum(me.cpu_times()[:2]),
            "workers": sum(sum(p.cpu_times()[:2]) for p in kids if p.is_running())}


def child_taskmill(chunks: int) -> dict[str, float]:
    import dask.array as da

    from taskmill import Executor
    from taskmill.client import dask_graph, dask_integration
    from taskmill.client.session import Session

    marks: dict[str, float] = {}  # name-first: the first start; name: the total seconds

    def note(name: str, began: float) -> None:
        marks.setdefault(f"{name}-first", began)
        marks[name] = marks.get(name, 0.0) + time.perf_counter() - began
        marks[f"{name}-last"] = time.perf_counter()

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                note(name, began)
        return wrapper

    def timed_steps(name: str, fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            steps = fn(*args, **kwargs)
            while True:
                began = time.perf_counter()
                try:
                    item = next(steps)
                except StopIteration:
                    return
                finally:
                    note(name, began)
                yield item
        return wrapper

    if hasattr(dask_integration, "pack_slices"):  # packed and sent slice by slice
        dask_integration.pack_slices = timed_steps("pack", dask_integration.pack_slices)
    else:  # older code (for A/B runs): one piece
        dask_integration.pack_graph = timed("pack", dask_integration.pack_graph)  # type: ignore[attr-defined]
    dask_graph.graph_of = timed("graph", dask_graph.graph_of)  # type: ignore[assignment]
    Session.submit_tasks = timed("submit", Session.submit_tasks)  # type: ignore[method-assign]
    with Executor(n_workers=2, threads_per_worker=1) as e:
        e.submit(abs, -1).result()
        marks.clear()
        pinger = Pinger({"client_loop": loop_ping(e.session.loop), "scheduler": e.nthreads})
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        x = da.ones(chunks, chunks=1).sum()
        result = x.compute()
        end = time.perf_counter()
        cpu1 = cpu_seconds()
        pings = pinger.stop()
        values = {"result_ok": float(result == chunks), **record(x, end - t0, cpu0, cpu1, pings),
                  "build_s": marks["pack-first"] - t0, "graph_s": marks["graph"],
                  "pack_s": marks["pack"] - marks["graph"], "submit_s": marks["submit"],
                  "run_s": end - marks["submit-last"]}
        report(values)  # the measurement stands even if closing fails
        closing = time.perf_counter()
    return {**values, "close_s": time.perf_counter() - closing}


def child_dask(chunks: int) -> dict[str, float]:
    import dask.array as da
    from distributed import Client

    with Client(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        c.submit(abs, -1).result()
        pinger = Pinger({"client_loop": loop_ping(c.loop.asyncio_loop),  # type: ignore[attr-defined]
                         "scheduler": lambda: c.sync(c.scheduler.identity)})
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        x = da.ones(chunks, chunks=1).sum()
        result = x.compute()
        end = time.perf_counter()
        cpu1 = cpu_seconds()
        pings = pinger.stop()
        values = {"result_ok": float(result == chunks), **record(x, end - t0, cpu0, cpu1, pings)}
        report(values)  # the measurement stands even if closing fails
        closing = time.perf_counter()
    return {**values, "close_s": time.perf_counter() - closing}


def report(values: dict[str, float]) -> None:
    """A child's line for the driver (which takes the last one)."""
    print("@@BENCH " + json.dumps(values), flush=True)


def record(x: Any, seconds: float, cpu0: dict[str, float], cpu1: dict[str, float],
           pings: dict[str, float]) -> dict[str, float]:
    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr

    graph_tasks = len(x.__dask_graph__())
    run_tasks = len(FinalizeCompute(collections_to_expr([x], True)).optimize().__dask_graph__())
    return {"seconds": seconds, "graph_tasks": graph_tasks, "tasks_per_s": graph_tasks / seconds,
            "run_tasks": run_tasks,
            "client_cpu_us_per_task": (cpu1["client"] - cpu0["client"]) / graph_tasks * 1e6,
            "workers_cpu_us_per_task": (cpu1["workers"] - cpu0["workers"]) / graph_tasks * 1e6,
            "slowest_client_loop_ping_s": pings["client_loop"],
            "slowest_scheduler_ping_s": pings["scheduler"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000, help="N of da.ones(N, chunks=1)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--systems", default="taskmill,dask")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per repetition")
    parser.add_argument("--child", choices=["taskmill", "dask"], help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.chunks < 1:
        parser.error(f"--chunks must be at least 1, not {options.chunks}")
    if options.child:
        run = child_taskmill if options.child == "taskmill" else child_dask
        report(run(options.chunks))
        return
    systems = options.systems.split(",")
    unknown = set(systems) - {"taskmill", "dask"}
    if unknown:
        parser.error(f"--systems: unknown {sorted(unknown)}; choose among taskmill, dask")
    values: dict[str, list[dict[str, float]]] = {s: [] for s in systems}
    for rep in range(options.repeat):
        for system in systems if rep % 2 == 0 else list(reversed(systems)):
            done = subprocess.run([sys.executable, "-m", "bench.big_array", "--child", system,
                                   "--chunks", str(options.chunks)], cwd=ROOT, capture_output=True,
                                  text=True, timeout=options.timeout)
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("@@BENCH ")]
            if not lines:
                raise RuntimeError(f"{system} failed:\n{done.stderr[-3000:]}")
            if done.returncode:
                print(f"{system} measured, then failed (exit {done.returncode}): "
                      f"{done.stderr[-1500:]}", flush=True)
            values[system].append(json.loads(lines[-1][len("@@BENCH "):]))
            print(f"repetition {rep + 1}: {system}: {json.dumps(values[system][-1])}", flush=True)
    names = list(dict.fromkeys(n for s in systems for v in values[s] for n in v))
    print(f"\nda.ones({options.chunks:,}, chunks=1).sum(), medians of {options.repeat}\n")
    print(f"| measure | {' | '.join(systems)} |\n|---|{'---|' * len(systems)}")
    for name in names:
        cells = [f"{statistics.median(v[name] for v in values[s] if name in v):,.4g}"
                 if any(name in v for v in values[s]) else "-" for s in systems]
        print(f"| {name} | {' | '.join(cells)} |")
    print("\nall values: " + json.dumps(values))


if __name__ == "__main__":
    main()
