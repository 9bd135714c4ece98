"""Two taskmill checkouts side by side: is a change faster?

``python bench/ab.py OLD_DIR NEW_DIR [--workload roundtrip|map|chain|fib]``
starts one long-lived process per checkout (each runs its own code: the
checkout is its working directory and ``PYTHONPATH``, which its worker
processes inherit), each with a 2-worker, 1-thread local cluster (``fib``:
1 worker, 1 thread, as in ``bench/run.py``), and then
alternates blocks of the workload between them (ABBA order).  Both clusters
stay up the whole time, so machine noise hits both alike.  It reports each
side's median and, per block, the ratio NEW/OLD: the median of those paired
ratios and in how many blocks NEW was lower; the same for the CPU time per
call or task of each side's processes (its own and its workers', user +
system), which a loaded machine moves less than wall time.

``fib`` is ``bench/run.py``'s pure fib(20) (a task per call, each submitting
its children through ``get_client()``, seceding while it gathers them and
rejoining), one recursion per block on one long-lived cluster: the function
(defined in the child, so both checkouts run the same code) takes a salt, new
each block, so no block reuses an earlier block's results.  On this shared machine a
change of a few percent shows in the paired ratio long before it shows in
absolute medians.

Make the old checkout with ``git worktree add --detach /tmp/old COMMIT``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

_CHILD = r"""
import json, sys, time
import psutil
from taskmill import Executor
from bench import tasks
from taskmill import get_client, rejoin, secede
def fib(n, salt):
    if n < 2:
        return n
    c = get_client()
    a = c.submit(fib, n - 1, salt)
    b = c.submit(fib, n - 2, salt)
    secede()
    x, y = c.gather([a, b])
    rejoin()
    return x + y
workload = sys.argv[1]
e = Executor(n_workers=1 if workload == "fib" else 2, threads_per_worker=1)
for i in range(50):
    e.submit(tasks.inc, 10**6 + i).result()
assert e.submit(fib, 6, -1).result() == 8  # warm-up: the worker's client, the code paths
time.sleep(2)  # let the workers' background imports finish
me = psutil.Process()
processes = [me, *me.children(recursive=True)]
def cpu():
    return sum(sum(p.cpu_times()[:2]) for p in processes)
print("ready", flush=True)
base = 2 * 10**6
for line in sys.stdin:
    n = int(line)
    samples = []
    cpu_before = cpu()
    if workload == "roundtrip":
        for i in range(n):
            t = time.perf_counter()
            assert e.submit(tasks.inc, base + i).result() == base + i + 1
            samples.append(time.perf_counter() - t)
    elif workload == "map":
        t = time.perf_counter()
        e.gather(e.map(tasks.inc, range(base, base + n)))
        samples.append(time.perf_counter() - t)
    elif workload == "fib":  # n recursions of fib(20), 21 tasks each
        for i in range(n):
            t = time.perf_counter()
            assert e.submit(fib, 20, base + i).result() == 6765
            samples.append(time.perf_counter() - t)
    else:  # chain
        t = time.perf_counter()
        f = e.submit(tasks.inc, base)
        for _ in range(n - 1):
            f = e.submit(tasks.inc, f)
        f.result()
        del f
        samples.append(time.perf_counter() - t)
    base += n + 1
    print(json.dumps({"samples": samples, "cpu": (cpu() - cpu_before) / n}), flush=True)
e.close()
"""

#: calls per block: many short calls, or one longer batch
PER_BLOCK = {"roundtrip": 200, "map": 5000, "chain": 2000, "fib": 5}


def start(checkout: str, workload: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=checkout)
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, workload], cwd=checkout, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        raise SystemExit(f"{checkout}: the benchmark process did not start (said {line!r})")
    return proc


def block(proc: subprocess.Popen[str], n: int) -> tuple[list[float], float]:
    """One block: its wall samples, and the CPU seconds per call or task of the side's processes."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{n}\n")
    proc.stdin.flush()
    got = json.loads(proc.stdout.readline())
    return list(got["samples"]), float(got["cpu"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--workload", choices=sorted(PER_BLOCK), default="roundtrip")
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--per-block", type=int, help="calls (roundtrip) or tasks per block")
    args = parser.parse_args(argv)
    per = args.per_block or PER_BLOCK[args.workload]
    sides = {"old": os.path.abspath(args.old), "new": os.path.abspath(args.new)}
    procs = {name: start(path, args.workload) for name, path in sides.items()}
    samples: dict[str, list[float]] = {name: [] for name in sides}
    medians: dict[str, list[float]] = {name: [] for name in sides}
    cpus: dict[str, list[float]] = {name: [] for name in sides}
    began = time.monotonic()
    try:
        for b in range(args.blocks):
            order = ["old", "new"] if b % 2 == 0 else ["new", "old"]
            for name in order:
                got, cpu = block(procs[name], per)
                samples[name] += got
                medians[name].append(statistics.median(got))
                cpus[name].append(cpu)
    finally:
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(60)
    per_call = args.workload in ("roundtrip", "fib")
    unit = {"roundtrip": "ms per call", "fib": "ms per fib(20) recursion (21 tasks)"}.get(
        args.workload, f"ms per block of {per} tasks")
    print(f"{args.workload}: {args.blocks} blocks, {time.monotonic() - began:.0f} s")
    for name, path in sides.items():
        print(f"  {name}: {path}: median {statistics.median(samples[name]) * 1e3:.3f} {unit}, "
              f"CPU {statistics.median(cpus[name]) * 1e6:.0f} us per "
              f"{'recursion' if args.workload == 'fib' else 'call' if per_call else 'task'}")
    for what, series in (("wall", medians), ("CPU", cpus)):
        ratios = [n / o for n, o in zip(series["new"], series["old"])]
        lower = sum(r < 1 for r in ratios)
        print(f"  new/old {what}, paired by block: median {statistics.median(ratios):.3f} "
              f"(new lower in {lower} of {len(ratios)} blocks)")


if __name__ == "__main__":
    main()
