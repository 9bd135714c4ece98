"""A scheduler ``--preload`` that times the cyclic garbage collector, on demand.

    taskmill-scheduler --preload bench/sched_gc_probe.py   # $SIM_GC_REPORT=PATH
    kill -USR1 <scheduler pid>                            # PATH appears: collections and their time

Theory of operation
-------------------
Used by ``bench/sim_workers.py --gc-report PATH``.  At the scheduler's start
(``taskmill_setup``) it adds a :data:`gc.callbacks` hook that times every
collection (``start`` to ``stop``, ``time.perf_counter``) and counts them per
generation; a SIGUSR1 on the scheduler's loop writes the totals since the
previous report (or the start) as JSON to ``$SIM_GC_REPORT`` (a temporary
name first, then renamed) and starts counting afresh.  So the driver sends
one SIGUSR1 just before submitting and one when ``wait`` returns, and the
second report covers the measured window.  The hook costs two clock reads a
collection: the scheduler's CPU figures stay meaningful.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import time
from typing import Any


class CollectorClock:
    """Counts and times the collections of each generation."""

    def __init__(self) -> None:
        self.started = 0.0
        self.reset()

    def reset(self) -> None:
        """Forget the totals so far."""
        self.counts = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.collected = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            generation = info["generation"]
            self.counts[generation] += 1
            self.seconds[generation] += time.perf_counter() - self.started
            self.collected += info["collected"]

    def write(self, path: str) -> None:
        """The totals as JSON into ``path``; then start afresh."""
        report = {"collections": self.counts, "seconds": self.seconds,
                  "collected": self.collected, "threshold": gc.get_threshold(),
                  "frozen": gc.get_freeze_count()}
        with open(path + ".tmp", "w") as f:
            json.dump(report, f)
        os.replace(path + ".tmp", path)
        self.reset()


_clock = CollectorClock()


def taskmill_setup(node: Any) -> None:
    """Start timing; a SIGUSR1 writes the totals to ``$SIM_GC_REPORT``."""
    path = os.environ.get("SIM_GC_REPORT")
    if not path:
        raise RuntimeError("sched_gc_probe: set $SIM_GC_REPORT to the report's path")
    gc.callbacks.append(_clock)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _clock.write, path)


def taskmill_teardown(node: Any) -> None:
    """Stop timing."""
    if _clock in gc.callbacks:
        gc.callbacks.remove(_clock)
