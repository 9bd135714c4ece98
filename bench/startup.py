"""Scripts timed in a fresh interpreter: ``import`` cost and cluster start-up.

Each script prints one line ``@@BENCH {json}``; times are taken inside the
child with ``time.perf_counter`` (the driver adds the whole process's wall
time as ``process_ms``).
"""

IMPORT = {
    "taskmill": "taskmill",
    "dask": "distributed",
}

IMPORT_SCRIPT = r"""
import json, sys, time
t = time.perf_counter()
import {module}
dt = time.perf_counter() - t
heavy = [m for m in ("numpy", "pandas", "dask", "distributed", "tornado") if m in sys.modules]
print("@@BENCH " + json.dumps({{"value": dt * 1e3, "also_imported": heavy}}), flush=True)
"""

START_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
{import_line}
from bench.tasks import inc

if __name__ == "__main__":
    t1 = time.perf_counter()
    c = {constructor}
    r = c.submit(inc, 1).result()
    t2 = time.perf_counter()
    assert r == 2, r
    {close}
    t3 = time.perf_counter()
    print("@@BENCH " + json.dumps({{"value": t2 - t1, "import_seconds": t1 - t0,
                                    "close_seconds": t3 - t2}}), flush=True)
"""

START = {
    "taskmill": dict(
        import_line="from taskmill import Executor",
        constructor="Executor(n_workers=2, threads_per_worker=1)",
        close="c.close()",
    ),
    "dask": dict(
        import_line="from distributed import Client",
        constructor="Client(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)",
        close="cl = c.cluster; c.close(); cl.close()",
    ),
}


def import_script(system: str) -> str:
    return IMPORT_SCRIPT.format(module=IMPORT[system])


def start_script(system: str) -> str:
    return START_SCRIPT.format(**START[system])
