"""What the scheduler shell records for diagnostics, cheaply.

Theory of operation
-------------------
The scheduler shell calls three hooks on its hot paths and must not pay for
them: ``task_done`` (one per finished or erred task: one tuple appended to a
bounded deque and a counter incremented, ~0.3 us), ``stamp`` (one per batch
of events: the wall time of the latest stimulus id, so a key's story can say
*when*) and ``heartbeat`` (once per worker per second).

The running totals (per task group, the duration histogram, erred tasks) are
*folded* from the task stream lazily: when someone reads them (a view, a
scrape, a heartbeat) or when ``FOLD_EVERY`` records are waiting, so a fold
is a few milliseconds at most and always happens before the records it needs
fall out of the bounded stream.  Reading a total is exact.

Nothing here scans the tasks or the workers; the views
(:mod:`taskmill.dashboard.views`) do that, and only when someone looks.
Every buffer is bounded: the task stream keeps the last ``stream_length``
tasks, transfers and memory samples their own few thousand.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from itertools import islice, repeat
from operator import itemgetter, sub
from typing import Any

from taskmill.core.scheduler.records import key_prefix
from taskmill.dashboard.stamps import StampRing
from taskmill.protocol.vocabulary import Heartbeat, TaskErred, TaskFinished

#: Task-duration histogram bucket bounds (seconds), Prometheus style.
DURATION_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0)
#: How many distinct prefixes the per-group counters keep (like the scheduler's duration table).
MAX_GROUPS = 10_000
#: Records waiting to be folded into the totals before the hook folds them itself.
FOLD_EVERY = 4096

#: One task-stream record: (key, worker, start, stop, transfer seconds, ok)
#: with ``ok`` False for an erred task.
StreamRecord = tuple[str, str, float, float, float, bool]
#: One transfer: (worker, peer, start, stop, nbytes, number of keys).
TransferRecord = tuple[str, str, float, float, int, int]

_head = itemgetter(0)


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
        #: records ever added to ``stream`` (their numbers: the task stream's cursor)
        self.tasks_total = 0
        self._folded = 0
        self._fold_every = max(1, min(FOLD_EVERY, stream_length // 2))
        self._groups: dict[str, GroupCounts] = {}
        self._erred_total = 0
        self._duration_buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self._duration_sum = 0.0
        self.transfers: deque[TransferRecord] = deque(maxlen=20_000)
        #: (time, worker, process memory in bytes): one per heartbeat
        self.memory_samples: deque[tuple[float, str, int]] = deque(maxlen=50_000)
        #: (number of the last stimulus id of a batch of events, wall time it was handled):
        #: two arrays used as a ring (taskmill.dashboard.stamps)
        self.stamps = StampRing(200_000)
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
        #: {"seconds", "tasks"} while tasks wait with no worker connected, else None
        self.waiting_for_workers: dict[str, float] | None = None
        self.started = time.time()

    # ------------------------------------------------------------------ #
    # Hooks (hot paths)
    # ------------------------------------------------------------------ #
    def task_done(self, msg: TaskFinished | TaskErred) -> None:
        """A ``task-finished`` or ``task-erred`` message from a worker."""
        self.stream.append((msg.key, msg.worker, msg.start, msg.stop, msg.transfer,
                            type(msg) is TaskFinished))
        self.tasks_total += 1
        if self.tasks_total - self._folded >= self._fold_every:
            self.fold()

    def stamp(self, stimulus_id: str) -> None:
        """The shell handled a batch of events ending with ``stimulus_id`` now."""
        number = _stimulus_number(stimulus_id)
        if number is not None:
            self.stamps.append(number, time.time())

    def heartbeat(self, msg: Heartbeat) -> None:
        """A worker's heartbeat: memory, CPU and the transfers since the last one."""
        now = time.time()
        worker = msg.worker
        self.memory_samples.append((now, worker, msg.memory))
        self.worker_cpu[worker] = msg.cpu
        for peer, start, stop, nbytes, nkeys in msg.transfers:
            self.transfers.append((worker, peer, start, stop, nbytes, nkeys))
            self.transfer_count += 1
            self.transfer_bytes += nbytes
            self.transfer_seconds += stop - start
        self.fold()  # once a second: keeps each fold small when nobody reads

    def worker_exited(self, nanny: str | None, worker: str, reason: str) -> None:
        """A nanny reported that its worker process ended (it restarts it)."""
        if nanny:
            entry = self.nanny_exits.setdefault(nanny, [0, ""])
            entry[0] += 1
            entry[1] = reason
        self.worker_left(worker, reason)

    def worker_left(self, worker: str, reason: str) -> None:
        """A worker left the cluster (kept, bounded, for the workers page)."""
        self.worker_cpu.pop(worker, None)
        self.departed[worker] = reason
        while len(self.departed) > 100:
            del self.departed[next(iter(self.departed))]

    # ------------------------------------------------------------------ #
    # Running totals, folded from the stream when read
    # ------------------------------------------------------------------ #
    def fold(self) -> None:
        """Add the records recorded since the last fold to the running totals
        (counted in C as far as possible: well under a microsecond a record)."""
        new = self.tasks_total - self._folded
        if new <= 0:
            return
        self._folded = self.tasks_total
        keys, _, starts, stops, _, oks = zip(*islice(reversed(self.stream), new))
        durations = list(map(sub, stops, starts))
        self._duration_sum += sum(durations)
        ranked = sorted(durations)
        below = 0
        for i, bound in enumerate(DURATION_BUCKETS):
            upto = bisect.bisect_right(ranked, bound, below)
            self._duration_buckets[i] += upto - below
            below = upto
        self._duration_buckets[-1] += new - below
        self._erred_total += new - sum(oks)
        groups = self._groups
        for prefix, duration, ok in zip(_prefixes(keys), durations, oks):
            group = groups.get(prefix)
            if group is None:
                if len(groups) >= MAX_GROUPS:
                    continue
                group = groups[prefix] = GroupCounts()
            group.seconds += duration
            if ok:
                group.finished += 1
            else:
                group.erred += 1

    @property
    def erred_total(self) -> int:
        """Tasks that erred so far."""
        self.fold()
        return self._erred_total

    @property
    def groups(self) -> dict[str, GroupCounts]:
        """Running totals per task group (prefix); at most ``MAX_GROUPS`` groups."""
        self.fold()
        return self._groups

    @property
    def duration_buckets(self) -> list[int]:
        """Task durations counted per ``DURATION_BUCKETS`` bucket (the last: longer)."""
        self.fold()
        return self._duration_buckets

    @property
    def duration_sum(self) -> float:
        """Compute seconds of all finished and erred tasks."""
        self.fold()
        return self._duration_sum

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
        numbers, times = self.stamps.ordered()
        full = self.stamps.full
        out: list[float | None] = []
        for sid in stimulus_ids:
            number = _stimulus_number(sid)
            i = bisect.bisect_left(numbers, number) if number is not None else len(numbers)
            if i == len(numbers) or (i == 0 and full and numbers[0] > number):  # type: ignore[operator]
                out.append(None)
            else:
                out.append(times[i])
        return out

    def records_between(self, start: float = 0.0, stop: float = float("inf")) -> list[StreamRecord]:
        """Task-stream records of tasks that ended within ``[start, stop]``."""
        return [r for r in self.stream if start <= r[3] <= stop]

    def new_tasks(self, after: int, limit: int) -> list[StreamRecord]:
        """Task-stream records numbered ``after`` and later (at most the last ``limit``), oldest first."""
        return _newest(self.stream, self.tasks_total, after, limit)

    def new_transfers(self, after: int, limit: int) -> list[TransferRecord]:
        """Transfers numbered ``after`` and later (at most the last ``limit``), oldest first."""
        return _newest(self.transfers, self.transfer_count, after, limit)


def _newest(buffer: deque[Any], total: int, after: int, limit: int) -> list[Any]:
    """The items numbered ``after`` and later of a bounded ``buffer`` that has
    received ``total`` items (a cursor past ``total``: the recorder restarted, all)."""
    n = min(total - after if after <= total else total, limit, len(buffer))
    out = list(islice(reversed(buffer), max(0, n)))
    out.reverse()
    return out


def _prefixes(keys: tuple[str, ...]) -> list[str]:
    """``key_prefix`` of each key; in C for the usual ``name-token`` keys."""
    heads = list(map(_head, map(str.rpartition, keys, repeat("-"))))
    if "" in heads or any(map(str.startswith, keys, repeat("("))):  # no dash, or dask tuple keys
        return list(map(key_prefix, keys))
    return heads


def _stimulus_number(stimulus_id: str) -> int | None:
    tail = stimulus_id.rpartition("-")[2]
    return int(tail) if tail.isdigit() else None
