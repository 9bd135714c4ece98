"""A scheduler ``--preload`` that tells where its memory goes, on demand.

    taskmill-scheduler --preload bench/sched_memory_probe.py   # $SIM_MEMORY_REPORT=PATH
    kill -USR1 <scheduler pid>                                # PATH appears: the top allocation sites

Theory of operation
-------------------
Used by ``bench/sim_workers.py --memory-profile PATH``.  At the scheduler's
start (``taskmill_setup``) it starts :mod:`tracemalloc` (one frame per
allocation: the line that allocated) and installs a SIGUSR1 handler on the
scheduler's event loop.  At each SIGUSR1 it takes a snapshot and writes the
40 source lines holding the most memory then (size, count, average size),
to ``$SIM_MEMORY_REPORT`` (a temporary name first, renamed when complete, so
a reader polling for the file never sees half of it).  Tracing slows the
scheduler several times over: its CPU figures mean nothing in such a run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tracemalloc
from typing import Any

TOP = 40


def write_report(path: str) -> None:
    """The snapshot's top allocation sites by size, as text, into ``path``."""
    stats = tracemalloc.take_snapshot().statistics("lineno")
    total = sum(s.size for s in stats)
    lines = [f"traced memory: {total / 2**20:,.1f} MiB in {sum(s.count for s in stats):,} blocks",
             "size MiB | blocks | avg B | where"]
    for stat in stats[:TOP]:
        frame = stat.traceback[0]
        lines.append(f"{stat.size / 2**20:8.1f} | {stat.count:9,} | {stat.size / stat.count:5.0f} | "
                     f"{frame.filename}:{frame.lineno}")
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)


def taskmill_setup(node: Any) -> None:
    """Start tracing; a SIGUSR1 writes the report to ``$SIM_MEMORY_REPORT``."""
    path = os.environ.get("SIM_MEMORY_REPORT")
    if not path:
        raise RuntimeError("sched_memory_probe: set $SIM_MEMORY_REPORT to the report's path")
    tracemalloc.start(1)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, write_report, path)


def taskmill_teardown(node: Any) -> None:
    """Stop tracing."""
    tracemalloc.stop()
