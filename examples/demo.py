"""The original design's example, on an embedded local cluster.

Run with ``make demo``.
"""

from __future__ import annotations

import time

from taskmill import Executor, as_completed


def inc(x: int) -> int:
    return x + 1


def add(x: int, y: int) -> int:
    return x + y


def main() -> None:
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
    print("closed cleanly")


if __name__ == "__main__":
    main()
