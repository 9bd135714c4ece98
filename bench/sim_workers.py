"""The scheduler alone at scale: its CPU and memory per task, driven by simulated workers.

    PYTHONPATH=. .venv/bin/python bench/sim_workers.py                 # full: N = 10, 100, 1,000 workers
                                                                       # x 10k, 100k, 1M tasks x map, tree
    PYTHONPATH=. .venv/bin/python bench/sim_workers.py --quick         # under a minute: 10 and 100 workers, 10k tasks
    PYTHONPATH=. .venv/bin/python bench/sim_workers.py --workers 1000 --tasks 1000000 --workloads map --repeat 3
    PYTHONPATH=. .venv/bin/python bench/sim_workers.py --workers 1000 --tasks 100000 --workloads map \\
        --repeat 1 --profile /tmp/sched.prof                           # + the scheduler's cProfile top 30
    PYTHONPATH=. .venv/bin/python bench/sim_workers.py --workers 1000 --tasks 100000 --workloads map \
        --repeat 1 --memory-profile /tmp/sched-memory.txt              # + where its memory per task goes
    PYTHONPATH=. .venv/bin/python bench/sim_workers.py --workers 1000 --tasks 1000000 --workloads map \
        --gc-report /tmp/sched-gc.json                                 # + its garbage collections' time

What
----
The real scheduler process (``taskmill-scheduler``, started fresh for each
measurement) is driven over TCP by N simulated workers
(``bench/sim_fleet.py``, up to ``--per-process`` of them per process, each on
its own connection): they register, answer every ``compute-task`` at once with
``task-finished`` without running anything and heartbeat every second like a
real worker.  So all the time the run takes is the scheduler's, the client's
and the wire's, and the scheduler's own share is measured from outside.

A client in this process submits one of two workloads:

* ``map``: ``Executor.map(inc, range(...))`` in batches of ``--batch`` calls
  (100,000), all independent, then ``wait`` on all of them;
* ``tree``: a tree reduction as a dask graph (``bench/large_graph.py``'s:
  leaves, then sums of 8 up to one root), with 7/8 of ``--tasks`` leaves, so
  the graph holds about ``--tasks`` tasks; submitted in one go, then ``wait``
  on the root.

What each figure means
----------------------
* ``cpu us/task``: the scheduler process's CPU time (user + system, psutil)
  from just before the first submission to the moment ``wait`` returns,
  divided by the tasks in the workload.  Includes everything the scheduler did
  meanwhile: receiving the graph, placing, ``compute-task``/``task-finished``,
  heartbeats.  Target (issue 15): <= 30 us with 1,000 workers.
* ``held B/task``: the scheduler's RSS when ``wait`` returns (every result
  still wanted by the client, so every task still known) minus its RSS before
  submission, divided by the tasks.  ``peak B/task``: the same with the
  highest RSS sampled (every 50 ms) during the run.  Target: <= 1 KB.
* ``idle cpu %``: the scheduler's CPU use during the second before the
  submission, with every worker registered: the fixed cost of N workers'
  heartbeats, which the per-task figures include for the run's duration.
* ``wall s`` and ``tasks/s``: first submission to ``wait``'s return; the
  client, the fleet and the scheduler share this machine's cores, so these
  say more about the machine than about the scheduler.
* ``gc_us_per_task`` (with ``--gc-report``, in the JSON lines and ``--json``):
  the scheduler's time in garbage collections during the run, per task, and
  ``gc_collections``/``gc_seconds`` per generation.
* ``flat``: per workload and worker count, the largest size's ``cpu
  us/task`` over the smallest's (target: <= 1.5).

Each configuration runs ``--repeat`` times (3; fresh scheduler and fleet
each time) and the tables quote the median; ``--json PATH`` keeps every run.
If the scheduler crashes or hangs (a fleet loses its stream, ``wait`` exceeds
``--timeout``), the run stops and says which configuration, with the command
that reproduces it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psutil

from taskmill import Executor, wait
from taskmill.client import dask_integration

from bench.large_graph import build_graph, start_scheduler
from bench.tasks import inc

HERE = os.path.dirname(os.path.abspath(__file__))
FLEET = os.path.join(HERE, "sim_fleet.py")
MEMORY_PROBE = os.path.join(HERE, "sched_memory_probe.py")
GC_PROBE = os.path.join(HERE, "sched_gc_probe.py")
WORKLOADS = ("map", "tree")


class SchedulerFailed(RuntimeError):
    """The scheduler crashed, hung or refused the fleet during a measurement."""


@contextmanager
def cluster(workers: int, per_process: int, profile: str | None = None,
            memory_profile: str | None = None, gc_report: str | None = None
            ) -> Iterator[tuple[str, psutil.Process]]:
    """A fresh scheduler (under cProfile into ``profile``, with
    ``sched_memory_probe`` reporting into ``memory_profile`` or
    ``sched_gc_probe`` into ``gc_report``, when given: one probe at most, both
    answer SIGUSR1) and ``workers`` simulated workers registered with it;
    yields the scheduler's address and process, and stops them all on exit."""
    if memory_profile and gc_report:
        raise ValueError("memory_profile and gc_report cannot be asked for in the same run "
                         "(both probes answer SIGUSR1): run them one after the other")
    log = tempfile.NamedTemporaryFile("w+", prefix="sim-workers-scheduler-", suffix=".log",
                                      delete=False)
    wrapper = (sys.executable, "-m", "cProfile", "-o", profile, "-m") if profile else ()
    extra: tuple[str, ...] = ()
    env: dict[str, str] | None = None
    if memory_profile:
        extra = ("--preload", MEMORY_PROBE)
        env = {**os.environ, "SIM_MEMORY_REPORT": memory_profile}
    elif gc_report:
        extra = ("--preload", GC_PROBE)
        env = {**os.environ, "SIM_GC_REPORT": gc_report}
    sched, address = start_scheduler(*wrapper, output=log, extra=extra, env=env)
    fleets: list[subprocess.Popen[str]] = []
    try:
        for first in range(0, workers, per_process):
            count = min(per_process, workers - first)
            fleets.append(subprocess.Popen(
                [sys.executable, FLEET, address, "--workers", str(count), "--first", str(first)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        with Executor(address) as e:
            deadline = time.monotonic() + 60 + workers / 20
            while len(e.nthreads()) < workers:
                check_alive(sched, fleets, log.name)
                if time.monotonic() > deadline:
                    raise SchedulerFailed(f"only {len(e.nthreads())} of {workers} simulated "
                                          "workers registered within the deadline")
                time.sleep(0.05)
        yield address, psutil.Process(sched.pid)
        check_alive(sched, fleets, log.name)
    finally:
        for proc in [*fleets, sched]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*fleets, sched]:
            try:
                proc.wait(60 if profile else 15)  # cProfile writes its file on the way out
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        os.unlink(log.name)


def check_alive(sched: subprocess.Popen[str], fleets: list[subprocess.Popen[str]],
                log: str) -> None:
    """Raise :class:`SchedulerFailed` when the scheduler or a fleet has exited."""
    if sched.poll() is not None:
        with open(log) as f:
            raise SchedulerFailed(f"the scheduler exited with status {sched.returncode}: "
                                  f"{f.read()[-2000:]}")
    for fleet in fleets:
        if fleet.poll() is not None:
            assert fleet.stderr is not None
            raise SchedulerFailed(f"a fleet of simulated workers exited with status "
                                  f"{fleet.returncode}: {fleet.stderr.read()[-2000:]}")


def submit_map(e: Executor, tasks: int, batch: int) -> tuple[list[Any], int]:
    """``tasks`` independent calls, in batches of ``batch``."""
    futures: list[Any] = []
    for start in range(0, tasks, batch):
        futures += e.map(inc, range(start, min(tasks, start + batch)))
    return futures, tasks


def submit_tree(e: Executor, tasks: int, batch: int) -> tuple[list[Any], int]:
    """A tree reduction of about ``tasks`` tasks (fan-in 8), in one graph."""
    graph, root = build_graph(max(1, round(tasks * 7 / 8)))
    return dask_integration.submit_graph(e, graph, [root]), len(graph)


SUBMIT: dict[str, Callable[[Executor, int, int], tuple[list[Any], int]]] = {
    "map": submit_map, "tree": submit_tree}


def ask_probe(sched: psutil.Process, path: str, timeout: float = 300) -> None:
    """Have the scheduler's probe (a preload answering SIGUSR1) write its report into ``path``."""
    if os.path.exists(path):
        os.unlink(path)
    sched.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SchedulerFailed(f"the scheduler wrote no memory report into {path} "
                                  f"within {timeout:g} s")
        time.sleep(0.1)


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def measure(workers: int, tasks: int, workload: str, *, batch: int = 100_000,
            per_process: int = 500, timeout: float = 1800, profile: str | None = None,
            memory_profile: str | None = None, gc_report: str | None = None) -> dict[str, Any]:
    """One run of ``workload`` at ``tasks`` tasks on ``workers`` simulated
    workers; the figures described in the module docstring.  With
    ``memory_profile``, the scheduler's top allocation sites while every task
    is held are written there (``bench/sched_memory_probe.py``); with
    ``gc_report``, its garbage collections during the run
    (``bench/sched_gc_probe.py``) are written there and added to the figures."""
    if workload not in SUBMIT:
        raise ValueError(f"unknown workload {workload!r}: choose from {', '.join(SUBMIT)}")
    if workers < 1 or tasks < 1 or batch < 1 or per_process < 1:
        raise ValueError("workers, tasks, batch and per_process must all be at least 1, got "
                         f"{workers}, {tasks}, {batch}, {per_process}")
    with cluster(workers, per_process, profile, memory_profile, gc_report) as (address, sched), \
            Executor(address) as e:
        idle0 = cpu_seconds(sched)
        time.sleep(1.0)  # a measurement window, not a synchronisation
        idle = cpu_seconds(sched) - idle0
        rss0 = sched.memory_info().rss
        peak = [rss0]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], sched.memory_info().rss)
                done.wait(0.05)

        if gc_report:
            ask_probe(sched, gc_report)  # its counts start now
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        cpu0, t0 = cpu_seconds(sched), time.perf_counter()
        try:
            futures, ntasks = SUBMIT[workload](e, tasks, batch)
            finished, pending = wait(futures, timeout=timeout)
        finally:
            done.set()
            sampler.join()
        wall, cpu = time.perf_counter() - t0, cpu_seconds(sched) - cpu0
        rss = sched.memory_info().rss
        if pending:
            raise SchedulerFailed(f"{len(pending):,} of {len(futures):,} futures still pending "
                                  f"after {timeout:g} s")
        if memory_profile:
            ask_probe(sched, memory_profile)
        collections = None
        if gc_report:
            ask_probe(sched, gc_report)
            with open(gc_report) as f:
                collections = json.load(f)
        del futures, finished
    run = {"workers": workers, "workload": workload, "tasks": ntasks,
           "cpu_us_per_task": cpu / ntasks * 1e6, "held_bytes_per_task": (rss - rss0) / ntasks,
           "peak_bytes_per_task": (max(peak[0], rss) - rss0) / ntasks,
           "idle_cpu_percent": idle * 100, "wall_s": wall, "tasks_per_s": ntasks / wall}
    if collections is not None:
        run["gc_us_per_task"] = sum(collections["seconds"]) / ntasks * 1e6
        run["gc_collections"] = collections["collections"]
        run["gc_seconds"] = collections["seconds"]
    return run


FIGURES = ("cpu_us_per_task", "held_bytes_per_task", "peak_bytes_per_task", "idle_cpu_percent",
           "wall_s", "tasks_per_s")


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs of one configuration, each figure their median."""
    row = {k: runs[0][k] for k in ("workers", "workload", "tasks")}
    row.update({k: statistics.median(r[k] for r in runs) for k in FIGURES})
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    """The medians as a Markdown table, plus the flatness of cpu us/task per
    workload and worker count (largest size over smallest)."""
    lines = ["| workers | workload | tasks | cpu us/task | held B/task | peak B/task | "
             "idle cpu % | wall s | tasks/s |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['workers']:,} | {r['workload']} | {r['tasks']:,} | "
                     f"{r['cpu_us_per_task']:.1f} | {r['held_bytes_per_task']:,.0f} | "
                     f"{r['peak_bytes_per_task']:,.0f} | {r['idle_cpu_percent']:.1f} | "
                     f"{r['wall_s']:.1f} | {r['tasks_per_s']:,.0f} |")
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["workers"], r["workload"]), []).append(r)
    flat = [f"- {w:,} workers, {wl}: cpu us/task at {g[-1]['tasks']:,} tasks over "
            f"{g[0]['tasks']:,}: {g[-1]['cpu_us_per_task'] / g[0]['cpu_us_per_task']:.2f}x"
            for (w, wl), g in groups.items() if len(g) > 1]
    return "\n".join(lines + ([""] + flat if flat else []))


def print_profile(path: str, top: int = 30) -> None:
    """The scheduler profile's ``top`` functions by own time, then by cumulative time."""
    import pstats

    stats = pstats.Stats(path)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="10 and 100 workers, 10,000 tasks, both workloads, once (< 1 min)")
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")],
                        default=[10, 100, 1000], help="comma-separated worker counts")
    parser.add_argument("--tasks", type=lambda s: [int(x) for x in s.split(",")],
                        default=[10_000, 100_000, 1_000_000], help="comma-separated sizes")
    parser.add_argument("--workloads", type=lambda s: s.split(","), default=list(WORKLOADS),
                        help="comma-separated: map, tree")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100_000, help="map calls per batch")
    parser.add_argument("--per-process", type=int, default=500,
                        help="simulated workers per fleet process")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    parser.add_argument("--profile", metavar="PATH",
                        help="run the scheduler under cProfile (one configuration) into PATH")
    parser.add_argument("--memory-profile", metavar="PATH",
                        help="trace the scheduler's allocations (one configuration; slow) and "
                             "write its top allocation sites, every task held, into PATH")
    parser.add_argument("--gc-report", metavar="PATH",
                        help="time the scheduler's garbage collections during each run "
                             "(bench/sched_gc_probe.py; adds gc_us_per_task to the figures)")
    parser.add_argument("--json", metavar="PATH", help="write every run's figures there")
    args = parser.parse_args()
    if args.quick:
        args.workers, args.tasks, args.repeat = [10, 100], [10_000], 1
    for name in args.workloads:
        if name not in SUBMIT:
            parser.error(f"--workloads: unknown {name!r}; choose from {', '.join(SUBMIT)}")
    configs = [(w, wl, n) for w in args.workers for wl in args.workloads for n in args.tasks]
    if (args.profile or args.memory_profile) and (len(configs) != 1 or args.repeat != 1):
        parser.error("--profile and --memory-profile take exactly one configuration "
                     "and --repeat 1")
    rows, every = [], []
    for workers, workload, tasks in configs:
        runs = []
        for i in range(args.repeat):
            try:
                run = measure(workers, tasks, workload, batch=args.batch,
                              per_process=args.per_process, timeout=args.timeout,
                              profile=args.profile, memory_profile=args.memory_profile,
                              gc_report=args.gc_report)
            except SchedulerFailed as exc:
                sys.exit(f"FAILED at {workers} workers, {workload}, {tasks:,} tasks (run {i + 1}): "
                         f"{exc}\nreproduce: PYTHONPATH=. {sys.executable} bench/sim_workers.py "
                         f"--workers {workers} --workloads {workload} --tasks {tasks} --repeat 1")
            print(json.dumps(run), flush=True)
            runs.append(run)
        every += runs
        rows.append(median_row(runs))
    print()
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(every, f, indent=1)
    if args.profile:
        print_profile(args.profile)
    if args.memory_profile:
        with open(args.memory_profile) as f:
            print(f.read())


if __name__ == "__main__":
    main()
