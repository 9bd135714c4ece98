#!/usr/bin/env python
"""Where one round trip's CPU goes: thread CPU clocks per stage, taskmill beside the pool.

    .venv/bin/python bench/trace_roundtrip.py                 # 4 blocks of 2,000 calls each
    .venv/bin/python bench/trace_roundtrip.py --calls 1000 --blocks 5
    .venv/bin/python bench/trace_roundtrip.py --map --calls 5000   # one gather(map(...)) per block

Runs ``submit(inc, i).result()`` on ``Executor(n_workers=2, threads_per_worker=1)``
and reports, per thread of every process (the user's thread, the client's
loop, which also runs the embedded scheduler, each worker's loop and task
thread), the CPU time per call: the thread's whole CPU clock over the block
(``psutil``, user + system), split into stages.  A stage is a function of the
per-task path wrapped (for the block only) so that it adds
``time.thread_time()`` deltas to its thread's account, exclusive of the
stages nested in it; what no stage covers is the thread's ``rest`` (the event
loop itself, reading and framing sockets, waking up).  Wrapping costs about
1 us per stage call, counted in the stages.  The workers are instrumented
through ``Executor.run``.

With ``--map`` a block is one ``gather(map(inc, range(N)))`` instead (the
pool's: ``list(pool.map(inc, range(N)))``), and the figures are per task.

The same calls on ``concurrent.futures.ProcessPoolExecutor(2)`` (no stages:
its threads' and processes' CPU only) alternate with taskmill's, block by
block (ABBA), both kept up throughout: a loaded machine inflates CPU times
too (caches, shared cores), so only figures of one run compare.  Wall times
are printed too.  Medians over the blocks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import tasks  # noqa: E402

#: (module, attribute path, stage name) wrapped in the client's process
CLIENT_STAGES = [
    ("taskmill.client.executor", "Executor.submit", "submit: pack the call, make the Future, queue"),
    ("taskmill.client.future", "Future.result", "result: wait and unpickle"),
    ("taskmill.client.executor", "Executor.map", "map: pack the calls, make the Futures, queue"),
    ("taskmill.client.executor", "Executor.gather", "gather: wait and unpickle"),
    ("taskmill.client.session", "Session.release_future", "release the key (Future collected)"),
    ("taskmill.client.session", "Session._flush_outbox", "client outbox to the scheduler"),
    ("taskmill.server.scheduler", "Scheduler._client_events", "scheduler: client messages to events"),
    ("taskmill.server.scheduler", "Scheduler._worker_events", "scheduler: worker messages to events"),
    ("taskmill.core.scheduler.state", "SchedulerState.handle", "scheduler state machine"),
    ("taskmill.server.scheduler", "Scheduler._handle", "scheduler shell: route the commands"),
    ("taskmill.comm.batched", "BatchedSend.send", "encode and write (batched stream)"),
    ("taskmill.client.session", "Session._on_reports", "client: scheduler reports, complete Futures"),
    ("taskmill.comm.tcp", "loads", "decode a received batch (msgpack)"),
]
#: the same in each worker process
WORKER_STAGES = [
    ("taskmill.comm.tcp", "loads", "decode a received batch (msgpack)"),
    ("taskmill.server.worker", "arrived", "worker: scheduler messages to events"),
    ("taskmill.core.worker.state", "WorkerState.handle", "worker state machine"),
    ("taskmill.server.worker", "Worker._handle", "worker shell: dispatch"),
    ("taskmill.server.task_runner", "TaskRunner.submit", "hand the call to the task thread"),
    ("taskmill.server.task_runner", "TaskRunner._deliver", "outcome on the loop: store the value"),
    ("taskmill.comm.batched", "BatchedSend.send", "encode and write (batched stream)"),
    ("taskmill.server.task_runner", "TaskRunner._run", "task thread: unpickle, call, post outcome"),
    ("taskmill.server.task_runner", "small_result", "task thread: pickle the small result"),
]


class Stages:
    """Per-thread CPU accounts of wrapped functions (exclusive of nested stages)."""

    def __init__(self) -> None:
        self.cpu: dict[tuple[str, str], float] = defaultdict(float)
        self.calls: dict[tuple[str, str], int] = defaultdict(int)
        self._local = threading.local()
        self._undo: list[Callable[[], None]] = []

    def _wrap(self, fn: Callable[..., Any], stage: str) -> Callable[..., Any]:
        local, cpu, calls, clock = self._local, self.cpu, self.calls, time.thread_time

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            stack = local.__dict__.setdefault("stack", [])
            stack.append(0.0)
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = clock() - t0
                nested = stack.pop()
                key = (threading.current_thread().name, stage)
                cpu[key] += spent - nested
                calls[key] += 1
                if stack:
                    stack[-1] += spent

        return wrapper

    def install(self, targets: list[tuple[str, str, str]]) -> None:
        import importlib

        for module_name, path, stage in targets:
            owner: Any = importlib.import_module(module_name)
            *parents, attr = path.split(".")
            for p in parents:
                owner = getattr(owner, p)
            original = owner.__dict__[attr]
            setattr(owner, attr, self._wrap(original, stage))
            self._undo.append(lambda o=owner, a=attr, f=original: setattr(o, a, f))

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def take(self) -> dict[tuple[str, str], tuple[float, int]]:
        out = {k: (v, self.calls[k]) for k, v in self.cpu.items()}
        self.cpu.clear()
        self.calls.clear()
        return out


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of every live thread of this process, by name."""
    import psutil

    names = {t.native_id: t.name for t in threading.enumerate()}
    return {names.get(t.id, f"thread {t.id}"): t.user_time + t.system_time
            for t in psutil.Process().threads()}


_worker_stages: Stages | None = None


def worker_install() -> int:
    """(Run on each worker through ``Executor.run``.)"""
    global _worker_stages
    _worker_stages = Stages()
    _worker_stages.install(WORKER_STAGES)
    return os.getpid()


def worker_take() -> tuple[dict[str, float], dict[tuple[str, str], tuple[float, int]]]:
    assert _worker_stages is not None
    return thread_cpu(), _worker_stages.take()


def worker_uninstall() -> None:
    assert _worker_stages is not None
    _worker_stages.uninstall()


def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


class TaskmillSide:
    """The Executor, with its stages wrapped (client and workers) while it lives."""

    name = "taskmill"

    def __init__(self, e: Any, map_: bool) -> None:
        from bench import trace_roundtrip as this  # by reference: the workers import it (not __main__)

        self.e, self.this, self.map = e, this, map_
        for i in range(200):
            e.submit(tasks.inc, -i - 1).result()
        self.stages = Stages()
        e.run(this.worker_install)
        self.stages.install(CLIENT_STAGES)
        self.base = 10**7

    def block(self, calls: int) -> dict[str, Any]:
        e, this = self.e, self.this
        before = thread_cpu()
        w_before = e.run(this.worker_take)
        self.stages.take()
        t = time.perf_counter()
        if self.map:
            e.gather(e.map(tasks.inc, range(self.base, self.base + calls)))
        else:
            for i in range(calls):
                e.submit(tasks.inc, self.base + i).result()
        wall = time.perf_counter() - t
        self.base += calls
        own = self.stages.take()
        threads = {("client", k): v for k, v in diff(thread_cpu(), before).items()}
        acc = {("client",) + k: v for k, v in own.items()}
        for n, (w, (cpu, st)) in enumerate(sorted(e.run(this.worker_take).items())):
            label = f"worker {n + 1}"
            threads.update({(label, k): v for k, v in diff(cpu, w_before[w][0]).items()})
            acc.update({(label,) + k: v for k, v in st.items()})
        return {"wall": wall, "threads": threads, "stages": acc}

    def close(self) -> None:
        self.stages.uninstall()
        self.e.run(self.this.worker_uninstall)


class PoolSide:
    """``ProcessPoolExecutor(2)``: its threads' and processes' CPU, no stages."""

    name = "ProcessPoolExecutor(2)"

    def __init__(self, pool: Any, map_: bool, others: set[int]) -> None:
        import psutil

        self.pool, self.map = pool, map_
        for i in range(200):
            pool.submit(tasks.inc, i).result()
        self.kids = [p for p in psutil.Process().children() if p.pid not in others]

    def _snap(self) -> dict[tuple[str, str], float]:
        cpu = {("parent", k): v for k, v in thread_cpu().items() if not k.startswith("taskmill")}
        for n, k in enumerate(self.kids):
            cpu[(f"process {n + 1}", "all threads")] = sum(k.cpu_times()[:2])
        return cpu

    def block(self, calls: int) -> dict[str, Any]:
        before = self._snap()
        t = time.perf_counter()
        if self.map:
            list(self.pool.map(tasks.inc, range(calls)))
        else:
            for i in range(calls):
                self.pool.submit(tasks.inc, i).result()
        wall = time.perf_counter() - t
        return {"wall": wall, "threads": diff(self._snap(), before), "stages": {}}

    def close(self) -> None:
        pass


def run_blocks(calls: int, blocks: int, map_: bool) -> dict[str, list[dict[str, Any]]]:
    """Blocks of both systems, alternating (ABBA), both kept up throughout."""
    from concurrent.futures import ProcessPoolExecutor

    import psutil

    from taskmill import Executor

    with Executor(n_workers=2, threads_per_worker=1) as e:
        workers = {p.pid for p in psutil.Process().children()}  # not the pool's
        with ProcessPoolExecutor(2) as pool:
            return alternate([TaskmillSide(e, map_), PoolSide(pool, map_, workers)], calls, blocks)


def alternate(sides: list[Any], calls: int, blocks: int) -> dict[str, list[dict[str, Any]]]:
    """``blocks`` blocks of each side, the order reversed every other block."""
    out: dict[str, list[dict[str, Any]]] = {s.name: [] for s in sides}
    try:
        for b in range(blocks):
            for side in sides if b % 2 == 0 else sides[::-1]:
                out[side.name].append(side.block(calls))
    finally:
        for side in sides:
            side.close()
    return out


def report(name: str, blocks: list[dict[str, Any]], calls: int) -> None:
    def med(values: list[float]) -> float:
        return statistics.median(values) * 1e6 / calls

    threads = sorted({k for b in blocks for k in b["threads"]})
    per_thread = {k: med([b["threads"].get(k, 0.0) for b in blocks]) for k in threads}
    total = med([sum(b["threads"].values()) for b in blocks])
    print(f"\n== {name}: {calls:,} calls x {len(blocks)} blocks; wall per call {med([b['wall'] for b in blocks]):.0f} us "
          f"(median of blocks), CPU per call {total:.0f} us (all threads, all processes)")
    print(f"{'process / thread / stage':<72} {'CPU us/call':>11} {'calls/call':>10}")
    for proc, thread in threads:
        cpu = per_thread[(proc, thread)]
        if cpu < 1:
            continue
        print(f"{proc + ' / ' + thread:<72} {cpu:>11.1f}")
        stages = sorted({k[2] for b in blocks for k in b["stages"] if k[:2] == (proc, thread)})
        covered = 0.0
        for s in stages:
            v = med([b["stages"].get((proc, thread, s), (0.0, 0))[0] for b in blocks])
            n = statistics.median(b["stages"].get((proc, thread, s), (0.0, 0))[1] for b in blocks) / calls
            covered += v
            if v < 0.05 and n == 0:
                continue  # a thread this stage did not run on in these blocks
            print(f"    {s:<68} {v:>11.1f} {n:>10.2f}")
        if stages:
            print(f"    {'rest (event loop, sockets, wake-ups)':<68} {cpu - covered:>11.1f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=2000,
                   help="round trips (with --map: tasks) per block (default 2,000)")
    p.add_argument("--map", action="store_true", help="a block is one map of --calls tasks, gathered")
    p.add_argument("--blocks", type=int, default=4, help="blocks per system (default 4)")
    args = p.parse_args(argv)
    if args.calls < 1 or args.blocks < 1:
        p.error("--calls and --blocks must be at least 1")
    for name, blocks in run_blocks(args.calls, args.blocks, args.map).items():
        report(name, blocks, args.calls)


if __name__ == "__main__":
    main()
