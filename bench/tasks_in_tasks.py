"""Tasks that launch tasks: recursive Fibonacci through get_client + secede/rejoin.

Each repetition runs in a fresh interpreter with its own cluster of **1 worker
process with 1 thread** (``script``): every task submits its two children
through the worker's client, secedes while it gathers them and rejoins, so
the recursion only completes because seceded tasks free their thread.  The
cluster is warmed up (the worker has imported numpy and dask, which taskmill's
workers do in the background after they start, and a small impure recursion
made its client and ran the code paths), then one root call is timed to its
result.

* ``fib``: ``pure=True`` (both systems' default), so equal calls share one
  task: fib(N) is N+1 tasks, each waiting on the previous two levels; it
  measures the latency of a task that submits, secedes, gathers and rejoins.
* ``fib_impure``: ``pure=False``, every call its own task (fib(N) makes
  ``calls(N)`` of them; about half wait seceded at once): throughput.
"""

from __future__ import annotations

SYSTEM_IMPORT = {
    "taskmill": "from taskmill import Executor as Client",
    "dask": "from distributed import Client",
}
CONSTRUCTOR = {
    "taskmill": "Client(n_workers=1, threads_per_worker=1)",
    "dask": "Client(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None)",
}
CLOSE = {
    "taskmill": "c.close()",
    "dask": "cl = c.cluster; c.close(); cl.close()",
}


def fib(n: int, system: str, pure: bool) -> int:
    """fib(n), each call a task that submits its two children and gathers them seceded."""
    if n < 2:
        return n
    if system == "taskmill":
        from taskmill import get_client, rejoin, secede
    else:
        from distributed import get_client, rejoin, secede
    c = get_client()
    a = c.submit(fib, n - 1, system, pure, pure=pure)
    b = c.submit(fib, n - 2, system, pure, pure=pure)
    secede()
    x, y = c.gather([a, b])
    rejoin()
    return x + y


def calls(n: int) -> int:
    """How many calls (tasks) the naive recursion of fib(n) makes."""
    a, b = 1, 1  # calls(0), calls(1)
    for _ in range(n - 1):
        a, b = b, a + b + 1
    return b if n >= 1 else a


def fib_value(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


SCRIPT = r"""
import json, time
{import_line}
from bench.tasks_in_tasks import calls, fib, fib_value

if __name__ == "__main__":
    c = {constructor}
    for module in ("numpy", "dask"):  # what a worker may still be importing in the background
        c.run(__import__, module)
    assert c.submit(fib, 6, {system!r}, False, pure=False).result() == 8   # warm-up, other keys
    t = time.perf_counter()
    r = c.submit(fib, {n}, {system!r}, {pure}, pure={pure}).result()
    dt = time.perf_counter() - t
    assert r == fib_value({n}), r
    tasks = {n} + 1 if {pure} else calls({n})
    {close}
    print("@@BENCH " + json.dumps({{"value": tasks / dt, "seconds": dt, "tasks": tasks}}), flush=True)
"""


def script(system: str, workload: str, n: int) -> str:
    """The fresh-interpreter script of one repetition of ``workload`` (fib or fib_impure)."""
    return SCRIPT.format(import_line=SYSTEM_IMPORT[system], constructor=CONSTRUCTOR[system],
                         close=CLOSE[system], system=system, n=n, pure=workload == "fib")
