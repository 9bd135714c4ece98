"""Cold transfers: the first 200 MB moved in a fresh cluster (issue 15, item 1).

```
.venv/bin/python bench/cold_transfers.py                 # 3 repetitions, 200 MB, against dask
.venv/bin/python bench/cold_transfers.py --repeat 5 --mb 20
.venv/bin/python bench/cold_transfers.py --checkouts /tmp/old .   # old code against new
.venv/bin/python bench/run.py --only cold_w2w,cold_scatter,cold_gather
```

Theory of operation
-------------------
A transfer is "cold" when it is the first one its processes make: nothing of
the receive path has run yet (no buffer of that size was ever mapped, no
large-message code was ever executed), and, between workers, no connection to
the peer exists.  Users feel this one, not the tenth, so each measurement gets
a cluster of its own: every repetition of every workload is a fresh
interpreter (``script`` kind in ``bench/run.py``) starting
``Executor(n_workers=2, threads_per_worker=1)`` or dask.distributed's
``Client(n_workers=2, threads_per_worker=1, processes=True)``.

Untimed preparation, identical for both systems: both workers and the client
import numpy (an import is not a transfer), one tiny task runs on each worker
(the scheduler-worker and client-scheduler paths are warm), and the array to
move is made (on worker A by a task, or in the client for ``scatter``).  Then
one call is timed, from the call to its return:

* ``cold_w2w``: ``submit(nbytes_of, x, workers=[B])`` on the array ``x`` made
  on worker A, to its result (includes one task round trip, like
  ``transfer``);
* ``cold_scatter``: ``scatter(array, workers=[A])``, which returns once the
  worker holds the data;
* ``cold_gather``: ``x.result()`` of the array made on worker A.

The value is MB/s (1 MB = 10^6 bytes) of the array's size over that time.
The same call is then repeated on a new array in the same cluster and
reported as ``second_mb_s``: the gap between the two is what being cold
costs.  The receiving process's CPU time during each call (worker B, worker
A, or the client; ``/proc/PID/stat``, 10 ms ticks) is reported too, as
``receiver_cpu_ms`` and ``second_receiver_cpu_ms``: on a shared machine it
says where the cost is when wall times drown in the noise.
The array is float64 random numbers (incompressible), as in ``transfer``.

Around each timed call ``bench/cold_probe.py`` also records every process's
CPU, time waiting for a core and page faults, the phases of the transfer
(taskmill: connection, send, the receiver's buffer allocation, last byte)
and the background work that ran meanwhile; the script prints them on an
``@@PROBE`` line (``bench/run.py`` reads the ``@@BENCH`` line alone) and the
standalone run prints them under each repetition, so one slow repetition
says why it was slow.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
from typing import Any

MB = 1_000_000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: workload name -> what is timed
WORKLOADS = {
    "cold_w2w": "first array worker A -> task on worker B, fresh cluster",
    "cold_scatter": "first `scatter` of an array to a worker, fresh cluster",
    "cold_gather": "first `result()` of an array made on a worker, fresh cluster",
}

SYSTEM_IMPORT = {
    "taskmill": "from taskmill import Executor as Client, wait",
    "dask": "from distributed import Client, wait",
}
CONSTRUCTOR = {
    "taskmill": "Client(n_workers=2, threads_per_worker=1)",
    "dask": "Client(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)",
}
CLOSE = {
    "taskmill": "c.close()",
    "dask": "cl = c.cluster; c.close(); cl.close()",
}

SCRIPT = r"""
import json, os, time
import numpy, psutil
{import_line}
from bench import cold_probe
from bench.tasks import make_array, nbytes_of

SYSTEM = {system!r}


def probed(c, pids, call):
    # run call(); return (seconds, its result, what the probes saw around it)
    c.run(cold_probe.arm, SYSTEM)
    cold_probe.arm(SYSTEM)
    before = {{role: cold_probe.process_stats(pid) for role, pid in pids.items()}}
    ages = {{role: time.time() - psutil.Process(pid).create_time() for role, pid in pids.items()}}
    t = time.time()
    got = call()
    end = time.time()
    stats = {{role: cold_probe.stats_delta(before[role], cold_probe.process_stats(pid))
             for role, pid in pids.items()}}
    seen = {{"client": cold_probe.collect(), **c.run(cold_probe.collect)}}
    roles = {{ADDRESSES[0]: "a", ADDRESSES[1]: "b"}}
    events = sorted((1e3 * (s - t), 1e3 * (e - s), roles.get(who, who), phase)
                    for who, got_ in seen.items() for phase, s, e in got_["events"])
    background = {{roles.get(who, who): {{"threads": sorted(set(got_["threads_before"])
                                                         | set(got_["threads_after"])),
                                        "imported": got_["imported"]}}
                  for who, got_ in seen.items()}}
    return end - t, got, {{"ages": ages, "stats": stats, "events": events, "background": background}}


def timed_transfer(c, workload, nbytes, seed, a, b, pids):
    # (seconds, probe record) of the workload's one timed call, on a new array
    if workload == "cold_scatter":
        data = make_array(nbytes, seed)
        dt, [x], probe = probed(c, pids, lambda: c.scatter([data], workers=[a]))
        assert x.result().nbytes == data.nbytes
        return dt, probe
    x = c.submit(make_array, nbytes, seed, workers=[a], allow_other_workers=False, pure=False)
    wait([x])
    if workload == "cold_w2w":
        call = lambda: c.submit(nbytes_of, x, workers=[b], allow_other_workers=False,
                                pure=False).result()
    else:
        call = lambda: x.result().nbytes
    dt, got, probe = probed(c, pids, call)
    assert got == (nbytes // 8) * 8, got
    return dt, probe


if __name__ == "__main__":
    nbytes, workload = {nbytes}, {workload!r}
    c = {constructor}
    deadline = time.monotonic() + 60
    while len(c.scheduler_info()["workers"]) < 2:
        assert time.monotonic() < deadline, "the workers did not come up within 60 s"
        time.sleep(0.05)
    a, b = ADDRESSES = sorted(c.scheduler_info()["workers"])
    worker_pids = c.run(os.getpid)
    pids = {{"client": os.getpid(), "scheduler": c.run_on_scheduler(os.getpid),
            "a": worker_pids[a], "b": worker_pids[b]}}
    receiver = {{"cold_w2w": "b", "cold_scatter": "a"}}.get(workload, "client")
    c.run(__import__, "numpy")                       # an import is not a transfer
    for w in (a, b):                                 # warm the task paths, not the data paths
        assert c.submit(nbytes_of, numpy.zeros(1), workers=[w], pure=False).result() == 8
    cold, cold_probe_ = timed_transfer(c, workload, nbytes, 7, a, b, pids)
    time.sleep(0.2)                                  # the first array's release reaches the workers
    second, second_probe = timed_transfer(c, workload, nbytes, 8, a, b, pids)
    {close}
    print("@@BENCH " + json.dumps({{"value": nbytes / 1e6 / cold, "seconds": cold,
                                   "receiver_cpu_ms": cold_probe_["stats"][receiver]["cpu_ms"],
                                   "second_mb_s": nbytes / 1e6 / second,
                                   "second_receiver_cpu_ms":
                                       second_probe["stats"][receiver]["cpu_ms"]}}), flush=True)
    print("@@PROBE " + json.dumps({{"probe": cold_probe_, "second_probe": second_probe}}),
          flush=True)
"""


def script(system: str, workload: str, nbytes: int) -> str:
    """The fresh-interpreter script of one repetition of ``workload`` on ``system``."""
    if workload not in WORKLOADS:
        raise ValueError(f"unknown cold-transfer workload {workload!r}; pick one of {sorted(WORKLOADS)}")
    return SCRIPT.format(import_line=SYSTEM_IMPORT[system], constructor=CONSTRUCTOR[system],
                         close=CLOSE[system], nbytes=nbytes, workload=workload, system=system)


def describe(probe: dict[str, Any]) -> str:
    """One repetition's probe (see ``bench/cold_probe.py``), two or three
    indented lines: every process's age (seconds since it started), CPU (ms),
    time waiting for a core (ms) and minor faults; the phases, ms from the
    call (+ their duration); the background work that ran meanwhile."""
    stats = probe["stats"]
    if stats.get("scheduler") == stats.get("client"):  # the scheduler runs in the client
        stats = {k: v for k, v in stats.items() if k != "scheduler"}
    procs = "  ".join(f"{role} (age {probe['ages'][role]:.1f} s) cpu {s['cpu_ms']:.0f} "
                      f"wait {s['wait_ms']:.0f} flt {s['minflt']:.0f}" for role, s in stats.items())
    phases = "  ".join(f"{who}.{phase} {t:.0f}+{d:.0f}" for t, d, who, phase in probe["events"])
    busy = [f"{who}: {', '.join(bg['imported'])}" for who, bg in probe["background"].items()
            if bg["imported"]]
    busy += [f"{who}: thread {t}" for who, bg in probe["background"].items()
             for t in bg["threads"] if t.startswith("taskmill-warmup") or t == "taskmill-prefault"]
    return (f"      {procs}\n      {phases}"
            + (f"\n      meanwhile {'; '.join(busy)}" if busy else ""))


def run_child(code: str, checkout: str) -> dict[str, Any]:
    """One repetition in a fresh interpreter running ``checkout``'s code (its
    worker processes inherit ``PYTHONPATH``)."""
    env = dict(os.environ, PYTHONPATH=checkout)
    done = subprocess.run([sys.executable, "-c", code], cwd=checkout, env=env, capture_output=True,
                          text=True, timeout=600)
    got: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        for tag in ("@@BENCH ", "@@PROBE "):  # bench/run.py reads the first alone
            if line.startswith(tag):
                got.update(json.loads(line[len(tag):]))
    if "value" in got:
        return got
    raise RuntimeError(f"no result from {checkout}:\n{done.stderr[-3000:]}")


def main() -> None:
    """Standalone: every workload, the sides alternating (ABBA), medians and ratios.

    The sides are taskmill and dask.distributed, or with ``--checkouts OLD NEW``
    two taskmill checkouts (old code against new)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mb", type=int, default=200, help="array size in MB (10^6 bytes)")
    parser.add_argument("--systems", default="taskmill,dask")
    parser.add_argument("--checkouts", nargs=2, metavar=("OLD", "NEW"),
                        help="compare two taskmill checkouts instead of taskmill and dask")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads")
    options = parser.parse_args()
    if options.checkouts:
        sides = {"old": ("taskmill", os.path.abspath(options.checkouts[0])),
                 "new": ("taskmill", os.path.abspath(options.checkouts[1]))}
    else:
        sides = {s: (s, ROOT) for s in options.systems.split(",")
                 if s != "dask" or importlib.util.find_spec("distributed") is not None}
    names = options.only.split(",")
    for name in names:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r} in --only; pick from {', '.join(WORKLOADS)}")
    order = list(sides)
    fields = {"first": "value", "second": "second_mb_s",
              "first_cpu": "receiver_cpu_ms", "second_cpu": "second_receiver_cpu_ms"}
    values = {w: {s: {f: [] for f in fields} for s in order} for w in names}
    for rep in range(options.repeat):
        for w in names:
            for side in order if rep % 2 == 0 else order[::-1]:
                system, checkout = sides[side]
                got = run_child(script(system, w, options.mb * MB), checkout)
                for field, name in fields.items():
                    values[w][side][field].append(got[name])
                print(f"rep {rep + 1} {w:<13} {side:<8} first {got['value']:8,.0f} MB/s "
                      f"(receiver CPU {got['receiver_cpu_ms']:4.0f} ms), second "
                      f"{got['second_mb_s']:8,.0f} MB/s ({got['second_receiver_cpu_ms']:4.0f} ms)",
                      flush=True)
                print(describe(got["probe"]), flush=True)
    a, b = ("new", "old") if options.checkouts else ("taskmill", "dask")  # the ratio a/b
    both = a in sides and b in sides
    for title, kinds in ((f"MB/s, {options.mb} MB", ("first", "second")),
                         ("receiver CPU, ms", ("first_cpu", "second_cpu"))):
        print(f"\n| workload ({title}) | "
              + " | ".join(f"{s} first | {s} second" for s in order)
              + (f" | {a}/{b} first | {a}/{b} second |" if both else " |"))
        print("|---|" + "---|" * (2 * len(order) + 2 * both))
        for w in names:
            med = {(s, k): statistics.median(values[w][s][k]) for s in order for k in kinds}
            cells = [f"{med[s, k]:,.0f}" for s in order for k in kinds]
            if both:
                cells += [f"{med[a, k] / med[b, k]:.3g}" if med[b, k] else "-" for k in kinds]
            print(f"| {w} | " + " | ".join(cells) + " |")
    print("\nall values: " + json.dumps(values))


if __name__ == "__main__":
    main()
