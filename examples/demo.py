"""The original design's two interfaces on an embedded local cluster: the
concurrent.futures calls (submit, map, scatter, gather, futures passed into
calls) and a dask computation with a progress bar.  The dashboard stays up
until you press Enter (or for ``--keep SECONDS``); run without a terminal
(CI), the demo does not wait.

Run with ``make demo`` (``make demo ARGS="--keep 60"``).
"""

from __future__ import annotations

import argparse
import sys
import time

from taskmill import Executor, as_completed, progress


def inc(x: int) -> int:
    return x + 1


def add(x: int, y: int) -> int:
    return x + y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=float, default=None, metavar="SECONDS",
                        help="keep the cluster and its dashboard up this long at the end "
                             "(default: until Enter in a terminal, not at all without one)")
    args = parser.parse_args()
    started = time.perf_counter()
    with Executor() as e:
        workers = e.nthreads()
        print(f"cluster up in {time.perf_counter() - started:.2f}s: scheduler {e.scheduler_address}, "
              f"{len(workers)} workers, {sum(workers.values())} threads")
        print(f"dashboard: {e.dashboard_link}  (open it while the demo runs)")

        a = e.submit(inc, 1)
        b = e.submit(inc, 100)
        c = e.submit(add, a, b)
        print(f"submit(add, submit(inc, 1), submit(inc, 100)).result() = {c.result()}")
        assert c.result() == 103

        squares = e.map(lambda x: x * x, range(10))
        print(f"map(square, range(10)) -> {e.gather(squares)}")

        total = e.submit(sum, squares)
        print(f"sum of the mapped futures = {total.result()}")

        data = e.scatter([1, 2, 3])
        print(f"scatter([1, 2, 3]) then gather -> {e.gather(data)}")

        done = [f.result() for f in as_completed(e.map(inc, range(5)))]
        print(f"as_completed over map(inc, range(5)) -> {sorted(done)}")

        dask_mean(e)
        keep_up(e, args.keep)
    print("closed cleanly")


def dask_mean(e: Executor) -> None:
    """The dask interface: a plain dask computation runs on the open Executor."""
    import dask.array as da

    x = da.random.random((10000, 10000), chunks=(1000, 1000))
    print(f"dask: the mean of {x.size:,} random numbers in {x.npartitions} chunks "
          f"({x.nbytes / 1e6:.0f} MB on the workers)")
    started = time.perf_counter()
    x = e.persist(x)  # the chunks are made on the workers and stay there
    progress(x)  # a live bar over the 100 chunk tasks
    value = e.compute(x.mean()).result()
    print(f"dask: mean = {value:.5f} in {time.perf_counter() - started:.2f}s")
    assert abs(value - 0.5) < 0.01


def keep_up(e: Executor, keep: float | None) -> None:
    """Leave the dashboard up for a look: ``keep`` seconds, or until Enter."""
    if keep is not None:
        print(f"keeping the cluster up for {keep:g}s: {e.dashboard_link}")
        time.sleep(keep)
    elif sys.stdin.isatty():
        input(f"the dashboard is at {e.dashboard_link}\npress Enter to close the cluster ")


if __name__ == "__main__":
    main()
