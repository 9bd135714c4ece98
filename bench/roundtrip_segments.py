#!/usr/bin/env python
"""Where one round trip's *wall* time goes in the client process, segment by segment.

    .venv/bin/python bench/roundtrip_segments.py              # 3,000 calls
    .venv/bin/python bench/roundtrip_segments.py --calls 5000

Runs ``submit(inc, i).result()`` on ``Executor(n_workers=2, threads_per_worker=1)``
(the embedded scheduler on the client's loop) and stamps ``time.perf_counter_ns()``
at the entry or exit of the functions a lone call passes through in the
client process: the user's thread (``submit`` returns, ``result`` returns),
the loop taking the submission (``Session._flush_outbox``), the scheduler
shell (``_client_events``, ``_handle``, ``_worker_events``), its machine
(``SchedulerState.handle``, once for the submission, once for the report),
the write to the worker (``BatchedSend.send``), the first bytes of the
worker's answer (``TCPComm.buffer_updated``) and the client's reports
(``Session._on_reports``, the Future completed in ``_complete_futures``).
Each call's stamps, taken in the order they happened, give the time between
consecutive steps; the report prints the median of each segment over the
calls whose stamps are the commonest set (a call that met a timer or a
heartbeat on the way has more stamps and is left out), in the order of their
medians; the whole call's median is printed for those calls and for every
call (what the left-out calls cost shows only in the latter).  Where ``bench/trace_roundtrip.py`` splits the CPU of every thread,
this shows the serial path the user waits on: each segment is CPU on that
path plus the wake-ups and waits for the GIL or a core in it.  Stamping
costs about 1 us per stamp, included.

The segment from "compute-task written" to "bytes of the worker's answer"
is the worker process's part (and the sockets'); the rest is the client's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import tasks  # noqa: E402

#: (module, attribute path, stamp at entry, stamp at exit); on the way back
#: (after the worker's answer arrived) the same function's stamps get a "B " prefix
POINTS = [
    ("taskmill.client.session", "Session._flush_outbox", "loop takes the submission", None),
    ("taskmill.server.scheduler", "Scheduler._client_events", "client messages to events",
     "events made"),
    ("taskmill.core.scheduler.state", "SchedulerState.handle", "machine starts", "machine done"),
    ("taskmill.comm.batched", "BatchedSend.send", "encode and write starts", "compute-task written"),
    ("taskmill.server.scheduler", "Scheduler._handle", None, "shell handling done"),
    ("taskmill.server.scheduler", "Scheduler._worker_events", "worker messages to events", None),
    ("taskmill.client.session", "Session._on_reports", "client reports", None),
    ("taskmill.client.session", "Session._complete_futures", None, "Future completed"),
]
ANSWER = "bytes of the worker's answer"


class Stamps:
    """The stamps of the current call: name -> ns (the first of each name counts)."""

    def __init__(self) -> None:
        self.marks: dict[str, int] = {}

    def stamp(self, name: str) -> None:
        marks = self.marks
        if ANSWER in marks:  # on the way back
            name = "B " + name
        marks.setdefault(name, time.perf_counter_ns())

    def wrap(self, module: str, path: str, entry: str | None, leave: str | None) -> None:
        owner: Any = __import__(module, fromlist=["_"])
        *parents, attr = path.split(".")
        for p in parents:
            owner = getattr(owner, p)
        original: Callable[..., Any] = getattr(owner, attr)
        stamp = self.stamp

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if entry is not None:
                stamp(entry)
            result = original(*args, **kwargs)
            if leave is not None:
                stamp(leave)
            return result

        setattr(owner, attr, wrapped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="round trips stamped (default 3,000)")
    args = parser.parse_args()
    if args.calls < 1:
        parser.error(f"--calls must be at least 1, got {args.calls}")

    import taskmill
    from taskmill.comm import tcp

    stamps = Stamps()
    for point in POINTS:
        stamps.wrap(*point)
    received = tcp.TCPComm.buffer_updated

    def buffer_updated(self: Any, nbytes: int) -> None:
        if "compute-task written" in stamps.marks and ANSWER not in stamps.marks:
            stamps.marks[ANSWER] = time.perf_counter_ns()
        received(self, nbytes)

    tcp.TCPComm.buffer_updated = buffer_updated  # type: ignore[method-assign]

    rows: list[dict[str, int]] = []
    with taskmill.Executor(n_workers=2, threads_per_worker=1) as executor:
        for i in range(300):  # warm-up: imports, the function sent, caches
            executor.submit(tasks.inc, -i - 1).result()
        for i in range(args.calls):
            stamps.marks = {}
            start = time.perf_counter_ns()
            future = executor.submit(tasks.inc, i)
            submitted = time.perf_counter_ns()
            future.result()
            done = time.perf_counter_ns()
            del future
            rows.append({**stamps.marks, "user: call starts": start, "submit returned": submitted,
                         "result returned": done})
    commonest, _ = Counter(frozenset(r) for r in rows).most_common(1)[0]
    kept = [r for r in rows if frozenset(r) == commonest]
    order = sorted(commonest, key=lambda n: statistics.median(r[n] - r["user: call starts"] for r in kept))
    print(f"{len(kept):,} of {args.calls:,} calls with the commonest set of stamps; medians in us "
          f"(load average {os.getloadavg()[0]:.1f})")
    for before, after in zip(order, order[1:]):
        median = statistics.median(r[after] - r[before] for r in kept) / 1000
        print(f"  {before:>30} -> {after:<30} {median:8.1f}")
    total = statistics.median(r["result returned"] - r["user: call starts"] for r in kept) / 1000
    every = statistics.median(r["result returned"] - r["user: call starts"] for r in rows) / 1000
    others = [r["result returned"] - r["user: call starts"] for r in rows if frozenset(r) != commonest]
    print(f"  {'whole call':>30}    {'':<30} {total:8.1f}")
    print(f"  {'whole call, every call':>30}    {'':<30} {every:8.1f}")
    if others:
        extra = Counter(n for r in rows if frozenset(r) != commonest for n in set(r) - commonest)
        print(f"  {'the other calls':>30}    {len(others):>8,} calls {statistics.median(others) / 1000:8.1f}"
              f"  (their commonest extra stamps: {', '.join(n for n, _ in extra.most_common(3))})")


if __name__ == "__main__":
    main()
