"""What the scheduler shell records for diagnostics, cheaply.

Theory of operation
-------------------
The scheduler shell calls three hooks on its hot paths and must not pay for
them: ``task_done`` (one per finished or erred task: a deque append and a
few counter updates, ~1 us), ``stamp`` (one per batch of events: the wall
time of the latest stimulus id, so a key's story can say *when*) and
``heartbeat`` (once per worker per second).  Nothing here scans the tasks
or the workers; the views (:mod:`taskmill.dashboard.views`) do that, and only
when someone looks (a page is open, ``/metrics`` is scraped, a client asks).

Every buffer is bounded: the task stream keeps the last ``stream_length``
tasks, transfers and memory samples their own few thousand.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from typing import Any

from taskmill.core.scheduler_records import key_prefix

#: Task-duration histogram bucket bounds (seconds), Prometheus style.
DURATION_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0)
#: How many distinct prefixes the per-group counters keep (like the scheduler's duration table).
MAX_GROUPS = 10_000

#: One task-stream record: (key, worker, start, stop, transfer seconds, status)
#: with status "OK" or "error".
StreamRecord = tuple[str, str, float, float, float, str]
#: One transfer: (worker, peer, start, stop, nbytes, number of keys).
TransferRecord = tuple[str, str, float, float, int, int]


class GroupCounts:
    """Running totals of one task group (prefix)."""

    __slots__ = ("finished", "erred", "seconds")

    def __init__(self) -> None:
        self.finished = 0
        self.erred = 0
        self.seconds = 0.0


class SchedulerMonitor:
    """The recorder behind the dashboard, ``/metrics``, ``get_task_stream``
    and ``performance_report``."""

    def __init__(self, stream_length: int = 100_000) -> None:
        self.stream: deque[StreamRecord] = deque(maxlen=stream_length)
        self.transfers: deque[TransferRecord] = deque(maxlen=20_000)
        #: (time, worker, process memory in bytes): one per heartbeat
        self.memory_samples: deque[tuple[float, str, int]] = deque(maxlen=50_000)
        #: (number of the last stimulus id of a batch of events, wall time it was handled)
        self.stamps: deque[tuple[int, float]] = deque(maxlen=200_000)
        self.groups: dict[str, GroupCounts] = {}
        self.tasks_total = 0
        self.erred_total = 0
        self.duration_buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.transfer_count = 0
        self.transfer_bytes = 0
        self.transfer_seconds = 0.0
        self.worker_cpu: dict[str, float] = {}
        #: nanny address -> [restarts, last exit reason]
        self.nanny_exits: dict[str, list[Any]] = {}
        #: worker address -> why it left (kept for the workers page; bounded)
        self.departed: dict[str, str] = {}
        self.loop_delay = 0.0
        self.loop_delay_max = 0.0
        self.started = time.time()

    # ------------------------------------------------------------------ #
    # Hooks (hot paths)
    # ------------------------------------------------------------------ #
    def task_done(self, worker: str, msg: dict[str, Any], ok: bool) -> None:
        """A ``task-finished`` (``ok``) or ``task-erred`` message from ``worker``."""
        key = msg["key"]
        start = msg["start"]
        stop = msg["stop"]
        self.stream.append((key, worker, start, stop, msg.get("transfer", 0.0), "OK" if ok else "error"))
        duration = stop - start
        self.tasks_total += 1
        self.duration_sum += duration
        self.duration_buckets[bisect.bisect_left(DURATION_BUCKETS, duration)] += 1
        prefix = key_prefix(key)
        group = self.groups.get(prefix)
        if group is None:
            if len(self.groups) >= MAX_GROUPS:
                return
            group = self.groups[prefix] = GroupCounts()
        group.seconds += duration
        if ok:
            group.finished += 1
        else:
            group.erred += 1
            self.erred_total += 1

    def stamp(self, stimulus_id: str) -> None:
        """The shell handled a batch of events ending with ``stimulus_id`` now."""
        number = _stimulus_number(stimulus_id)
        if number is not None:
            self.stamps.append((number, time.time()))

    def heartbeat(self, worker: str, msg: dict[str, Any]) -> None:
        """A worker's heartbeat: memory, CPU and the transfers since the last one."""
        now = time.time()
        self.memory_samples.append((now, worker, msg.get("memory", 0)))
        if "cpu" in msg:
            self.worker_cpu[worker] = msg["cpu"]
        for peer, start, stop, nbytes, nkeys in msg.get("transfers", ()):
            self.transfers.append((worker, peer, start, stop, nbytes, nkeys))
            self.transfer_count += 1
            self.transfer_bytes += nbytes
            self.transfer_seconds += stop - start

    def worker_exited(self, nanny: str | None, worker: str, reason: str) -> None:
        """A nanny reported that its worker process ended (it restarts it)."""
        if nanny:
            entry = self.nanny_exits.setdefault(nanny, [0, ""])
            entry[0] += 1
            entry[1] = reason
        self.worker_left(worker, reason)

    def worker_left(self, worker: str, reason: str) -> None:
        self.worker_cpu.pop(worker, None)
        self.departed[worker] = reason
        while len(self.departed) > 100:
            del self.departed[next(iter(self.departed))]

    # ------------------------------------------------------------------ #
    # Background: event-loop delay
    # ------------------------------------------------------------------ #
    async def watch_loop_delay(self, interval: float = 0.5) -> None:
        """Measure how late the event loop wakes us (a busy scheduler is late)."""
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(interval)
            delay = max(0.0, loop.time() - before - interval)
            self.loop_delay = delay
            self.loop_delay_max = max(self.loop_delay_max, delay)

    # ------------------------------------------------------------------ #
    # Reads (only when someone looks)
    # ------------------------------------------------------------------ #
    def when(self, stimulus_ids: list[str]) -> list[float | None]:
        """Wall time at which each event was handled (None when too old or not numbered)."""
        stamps = list(self.stamps)
        numbers = [n for n, _ in stamps]
        full = len(stamps) == self.stamps.maxlen
        out: list[float | None] = []
        for sid in stimulus_ids:
            number = _stimulus_number(sid)
            i = bisect.bisect_left(numbers, number) if number is not None else len(stamps)
            if i == len(stamps) or (i == 0 and full and numbers[0] > number):  # type: ignore[operator]
                out.append(None)
            else:
                out.append(stamps[i][1])
        return out

    def records_between(self, start: float = 0.0, stop: float = float("inf")) -> list[StreamRecord]:
        """Task-stream records of tasks that ended within ``[start, stop]``."""
        return [r for r in self.stream if start <= r[3] <= stop]


def _stimulus_number(stimulus_id: str) -> int | None:
    tail = stimulus_id.rpartition("-")[2]
    return int(tail) if tail.isdigit() else None
