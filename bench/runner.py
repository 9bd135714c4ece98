"""One long-lived benchmark process per system.

``python -m bench.runner taskmill|dask|ppe`` starts a 2-worker, 1-thread-per-worker
local cluster of that system (``ppe``: the standard library's
``concurrent.futures.ProcessPoolExecutor(max_workers=2)``, for the workloads
where a pool fits: single calls and a map), warms it up, then reads JSON commands from stdin
(one a line) and answers on stdout with lines starting with ``@@BENCH ``.
Everything else it or its cluster prints is noise the driver logs.  Running
each system in its own process lets the driver put a timeout on every
measurement and kill a hung system without losing the rest of the run.

Only the public API of each system is used.
"""

from __future__ import annotations

import gc
import json
import os
import logging
import statistics
import sys
import time
import traceback

from bench import tasks

TAG = "@@BENCH "
_out = sys.stdout


def emit(obj: dict) -> None:
    _out.write(TAG + json.dumps(obj) + "\n")
    _out.flush()


# ---------------------------------------------------------------------------
# Systems: the same three operations on each (start, wait, close)
# ---------------------------------------------------------------------------

class System:
    name = "?"

    def __init__(self) -> None:
        self.client = None

    def wait(self, futures) -> None:
        raise NotImplementedError

    def map(self, func, iterable):
        """Submit ``func`` over ``iterable``; ``gather`` turns the handle into the results."""
        return self.client.map(func, iterable)

    def gather(self, handle) -> list:
        return self.client.gather(handle)

    def close(self) -> None:
        self.client.close()

    def workers(self) -> list[str]:
        return sorted(self.client.scheduler_info()["workers"])


class Taskmill(System):
    name = "taskmill"

    def start(self) -> None:
        from taskmill import Executor, wait

        self._wait = wait
        self.client = Executor(n_workers=2, threads_per_worker=1)

    def wait(self, futures) -> None:
        self._wait(futures)


class Dask(System):
    name = "dask"

    def start(self) -> None:
        from distributed import Client, wait

        self._wait = wait
        self.client = Client(n_workers=2, threads_per_worker=1, processes=True,
                             dashboard_address=None)

    def wait(self, futures) -> None:
        self._wait(futures)

    def close(self) -> None:
        cluster = self.client.cluster
        self.client.close()
        if cluster is not None:
            cluster.close()


class Pool(System):
    """The standard library's process pool: ``submit`` and ``map`` only."""

    name = "ppe"
    processes = 2

    def start(self) -> None:
        from concurrent.futures import ProcessPoolExecutor

        self.client = ProcessPoolExecutor(max_workers=self.processes)

    def wait(self, futures) -> None:
        from concurrent.futures import wait

        wait(futures)

    def map(self, func, iterable):
        return self.client.map(func, iterable)   # submits every call now; an iterator of results

    def gather(self, handle) -> list:
        return list(handle)

    def close(self) -> None:
        self.client.shutdown()

    def workers(self) -> list[str]:
        return [f"process {i}" for i in range(self.processes)]


SYSTEMS = {"taskmill": Taskmill, "dask": Dask, "ppe": Pool}

# Distinct argument values for every measurement, so no pure key of one
# repetition (or of the warm-up) can hit a result left over from another.
_offset = [10_000_000]


def fresh(n: int) -> int:
    start = _offset[0]
    _offset[0] += n + 1000
    return start


# ---------------------------------------------------------------------------
# Workloads: each returns {"value": number, ...extra}
# ---------------------------------------------------------------------------

def w_roundtrip(sys_: System, n: int) -> dict:
    c = sys_.client
    base = fresh(n)
    for i in range(20):                                   # warm this code path
        c.submit(tasks.inc, base + i).result()
    base = fresh(n)
    lat = []
    for i in range(n):
        t = time.perf_counter()
        r = c.submit(tasks.inc, base + i).result()
        lat.append(time.perf_counter() - t)
        assert r == base + i + 1, r
    lat_ms = sorted(x * 1e3 for x in lat)
    return {"value": statistics.median(lat_ms),
            "p90": lat_ms[int(0.9 * (len(lat_ms) - 1))],
            "mean": statistics.fmean(lat_ms)}


def w_map(sys_: System, n: int) -> dict:
    base = fresh(n)
    t = time.perf_counter()
    futs = sys_.map(tasks.inc, range(base, base + n))
    t_submit = time.perf_counter() - t
    res = sys_.gather(futs)
    dt = time.perf_counter() - t
    assert len(res) == n and res[0] == base + 1 and res[-1] == base + n, (res[:3], res[-3:])
    del futs, res
    return {"value": n / dt, "seconds": dt, "submit_seconds": t_submit}


def w_chain(sys_: System, n: int) -> dict:
    c = sys_.client
    base = fresh(n)
    t = time.perf_counter()
    f = c.submit(tasks.inc, base, pure=False)
    for _ in range(n - 1):
        f = c.submit(tasks.inc, f, pure=False)
    t_submit = time.perf_counter() - t
    r = f.result()
    dt = time.perf_counter() - t
    assert r == base + n, (r, base + n)
    del f
    return {"value": n / dt, "seconds": dt, "submit_seconds": t_submit}


def w_transfer(sys_: System, nbytes: int) -> dict:
    c = sys_.client
    ws = sys_.workers()
    assert len(ws) >= 2, ws
    a, b = ws[0], ws[1]
    seed = fresh(1)
    x = c.submit(tasks.make_array, nbytes, seed, workers=[a], allow_other_workers=False, pure=False)
    sys_.wait([x])                                        # array exists on A; untimed
    t = time.perf_counter()
    y = c.submit(tasks.nbytes_of, x, workers=[b], allow_other_workers=False, pure=False)
    got = y.result()
    dt = time.perf_counter() - t
    assert got == (nbytes // 8) * 8, got
    where = c.who_has([y])
    placed = sorted({w for ws_ in where.values() for w in ws_})
    del x, y
    return {"value": nbytes / 1e6 / dt, "seconds": dt, "from": a, "to": b, "y_on": placed}


WORKLOADS = {"roundtrip": w_roundtrip, "map": w_map, "chain": w_chain, "transfer": w_transfer}


def warm_up(sys_: System) -> None:
    c = sys_.client
    for i in range(10):
        c.submit(tasks.inc, -i - 1).result()
    sys_.gather(sys_.map(tasks.inc, range(-1000, -800)))
    if isinstance(sys_, Pool):     # no chains of futures nor data placement in a pool
        return
    f = c.submit(tasks.inc, -5000, pure=False)
    for _ in range(50):
        f = c.submit(tasks.inc, f, pure=False)
    f.result()
    del f
    # open worker-to-worker connections both ways with a small array
    ws = sys_.workers()
    for a, b in ((ws[0], ws[1]), (ws[1], ws[0])):
        x = c.submit(tasks.make_array, 1 << 20, 1, workers=[a], allow_other_workers=False, pure=False)
        c.submit(tasks.nbytes_of, x, workers=[b], allow_other_workers=False, pure=False).result()
        del x


def settle() -> None:
    gc.collect()
    time.sleep(0.3)      # let releases reach the cluster before the next measurement


def main() -> None:
    global _out
    # Keep fd 1 for the protocol only: whatever this process or the worker
    # processes it starts print goes to stderr instead.
    _out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    name = sys.argv[1]
    logging.getLogger("distributed").setLevel(logging.ERROR)
    sys_ = SYSTEMS[name]()
    try:
        t = time.perf_counter()
        sys_.start()
        started = time.perf_counter() - t
        warm_up(sys_)
        emit({"ready": True, "start_seconds": started, "workers": sys_.workers()})
    except BaseException:
        emit({"ready": False, "error": traceback.format_exc()})
        raise
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "close":
            break
        try:
            out = WORKLOADS[cmd["workload"]](sys_, cmd["size"])
            out["ok"] = True
        except BaseException:
            out = {"ok": False, "error": traceback.format_exc()}
        settle()
        emit(out)
    t = time.perf_counter()
    try:
        sys_.close()
        emit({"closed": True, "close_seconds": time.perf_counter() - t})
    except BaseException:
        emit({"closed": False, "error": traceback.format_exc()})


if __name__ == "__main__":
    main()
