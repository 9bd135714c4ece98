"""Work stealing: tasks all placed on one worker through their input, side by
side with dask.distributed.

```
.venv/bin/python bench/stealing.py                                   # 3 repetitions
.venv/bin/python bench/stealing.py --systems taskmill,taskmill-nosteal,dask
```

What: 2,000 tasks ``nap(x, seconds)`` that sleep a seeded random duration,
uniform between 1 and 100 ms (the same 2,000 durations in every run), on
2 worker processes x 4 threads.  Each task takes its own small input (a few
bytes), computed on worker A only (``workers=[A]``,
``allow_other_workers=False``) and waited for before the clock starts, so
placement sends the tasks to A, the holder of their inputs.  (One input
shared by all would not do for dask.distributed: a task group with one small
dependency counts as "root-ish" there and is queued on the scheduler without
regard to where its input lives, so nothing would pile up on A.)  Each system's
cluster is warmed up first with other functions (so neither knows how long a
``nap`` takes when the clock starts).

How: one ``map`` of the 2,000 calls (``pure=False``), timed from the call to
the return of ``wait`` on all of them; each call returns the address of the
worker that ran it.  Each repetition runs each system in a fresh interpreter
(``side_by_side``: alternating order, medians).

The ideal: the sum of the durations over the 8 threads (the time a perfect
balance of the work would take with no overhead at all; about 12.6 s).
Reported per system: ``seconds`` (the measured time), ``ideal`` (seconds),
``over_ideal`` (seconds / ideal: the target is at most 1.15),
``share_on_b`` (the fraction of the tasks that ran on worker B: without
stealing it stays near 0) and ``steals`` (tasks moved by stealing: the
scheduler's counter of confirmed moves; for dask, the ``confirm`` entries of
its ``stealing`` event log).  ``taskmill-nosteal`` is taskmill
with the option ``scheduler.work-stealing`` off, for reference.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: How many tasks, their durations' range (seconds) and seed; the cluster's shape.
N_TASKS = 2000
SHORTEST, LONGEST = 0.001, 0.100
SEED = 15
WORKERS, THREADS = 2, 4


def durations() -> list[float]:
    """The durations of the tasks, the same in every run."""
    rng = random.Random(SEED)
    return [rng.uniform(SHORTEST, LONGEST) for _ in range(N_TASKS)]


def make_input(i: int) -> bytes:
    """The small input of task ``i``; it lives on worker A only."""
    return b"input-%d" % i


def nap(x: bytes, seconds: float) -> str:
    """Sleep ``seconds``; return the address of the worker that ran it."""
    time.sleep(seconds)
    try:
        from taskmill import get_worker
        return str(get_worker().address)
    except ValueError:  # not a taskmill task: dask's
        from distributed import get_worker as dask_worker
        return str(dask_worker().address)


def warm(x: int) -> int:
    """The warm-up task: not ``nap``, so its duration stays unknown until the clock runs."""
    return x + 1


CHILD = r"""
import json, sys, time
from bench.stealing import N_TASKS, THREADS, WORKERS, durations, make_input, nap, warm

system = sys.argv[1]


def measure(c, steals):
    c.gather(c.map(warm, range(200), pure=False))
    workers = sorted(c.scheduler_info()["workers"])
    a, b = workers[0], workers[1]
    seconds = durations()
    inputs = c.map(make_input, range(len(seconds)), workers=[a], allow_other_workers=False,
                   pure=False)
    c.gather(inputs)
    assert set(c.who_has(inputs)[inputs[0].key]) == {a}
    t = time.perf_counter()
    futures = c.map(nap, inputs, seconds, pure=False)
    where = c.gather(futures)
    elapsed = time.perf_counter() - t
    ideal = sum(seconds) / (WORKERS * THREADS)
    out = {"seconds": elapsed, "ideal": ideal, "over_ideal": elapsed / ideal,
           "share_on_b": sum(1 for w in where if w == b) / len(where)}
    out["steals"] = float(steals(c))
    return out


if __name__ == "__main__":
    if system.startswith("taskmill"):
        from taskmill import Executor, config
        if system == "taskmill-nosteal":
            config.set({"scheduler.work-stealing": False})
        with Executor(n_workers=WORKERS, threads_per_worker=THREADS) as c:
            result = measure(c, lambda c: c.run_on_scheduler(
                lambda scheduler: scheduler.state.stealing.moved))
    else:
        from distributed import Client
        with Client(n_workers=WORKERS, threads_per_worker=THREADS, processes=True,
                    dashboard_address=None) as c:
            result = measure(c, lambda c: c.run_on_scheduler(lambda dask_scheduler: sum(
                1 for _, msg in dask_scheduler.get_events("stealing") if msg[0] == "confirm")))
    print("@@BENCH " + json.dumps(result), flush=True)
"""

UNITS = {"seconds": "s, map to the last result (lower is better)",
         "ideal": "s, total duration / threads",
         "over_ideal": "seconds / ideal (target <= 1.15)",
         "share_on_b": "fraction of the tasks run on worker B",
         "steals": "tasks moved by stealing"}


def main() -> None:
    sys.path.insert(0, str(ROOT))  # run as a script: the bench package beside it
    from bench import side_by_side

    side_by_side.main(__doc__.splitlines()[0], CHILD, UNITS, "taskmill,dask")


if __name__ == "__main__":
    main()
