"""What open pages and scrapers read: built once per change, shared, and timed.

Theory of operation
-------------------
The status and workers pages subscribe to server-sent events (push, see
:mod:`taskmill.dashboard.app`).  Every subscriber wakes on one shared clock
grid (``TICK`` apart, at most a few updates a second) and gets a message only
when the scheduler changed since its last one.  A message depends on the
scheduler's *version* (tasks and transfers recorded, last event handled) and
on the subscriber's task-stream cursor, so it is built and JSON-encoded once
per version and cursor: pages that are in step (the usual case) share one
encoding, and ten open pages cost about what one does.  Only what is new in
the task stream travels.

The one scan over all tasks (counts per group and state, for progress, the
summary and ``/metrics``) runs at most every ``COUNTS_INTERVAL`` seconds and
is spaced out further when it is slow, so that it never takes more than
``COUNTS_SHARE`` of the scheduler thread's CPU time (a million-task graph is
not scanned every two seconds, and a machine shared with other work does
not make the scan a larger part of what the scheduler does).  Its figures
are therefore a few seconds old; the running totals (finished, erred,
durations) are always exact.

Every build is timed in the scheduler thread's CPU time (``cpu_seconds``,
exported on ``/metrics`` as ``taskmill_dashboard_cpu_seconds_total``; garbage
collections that happen to start during a build are left out), so what the
dashboard costs is visible, not guessed.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Generic, TypeVar, cast

from taskmill.dashboard import views

#: Seconds between two updates of an open page (the clock grid subscribers wake on).
TICK = 0.5
#: The scan over all tasks runs at most this often (seconds)...
COUNTS_INTERVAL = 2.0
#: ...and is spaced so that it takes at most this share of the scheduler's CPU time.
COUNTS_SHARE = 0.01

T = TypeVar("T")
Version = tuple[int, int, int, float]


class Throttled(Generic[T]):
    """The value of an expensive ``read``, refreshed at most every
    ``interval`` seconds of ``wall`` time, and only once ``cost / share``
    seconds of ``cpu`` time (by default the calling thread's: the
    scheduler's loop) went by since the last read: the read never takes more
    than ``share`` of the scheduler's own CPU time, however large the state
    grows or however busy the machine is (a 10 ms read at 1% waits for 1 s
    of scheduler CPU)."""

    def __init__(self, read: Callable[[], T], interval: float, share: float,
                 wall: Callable[[], float] = time.monotonic,
                 cpu: Callable[[], float] = time.thread_time) -> None:
        self._read = read
        self.interval = interval
        self.share = share
        self._wall = wall
        self._cpu = cpu
        self._value: T | None = None
        self._wall_due = self._cpu_due = float("-inf")

    def get(self) -> T:
        """The current value, read again if it is due."""
        if self._value is None or (self._wall() >= self._wall_due and self._cpu() >= self._cpu_due):
            start = self._cpu()
            self._value = self._read()
            now = self._cpu()
            self._wall_due = self._wall() + self.interval
            self._cpu_due = now + (now - start) / self.share
        return self._value


class DashboardFeed:
    """The messages the pages receive, the counts ``/metrics`` shows, and
    what building them cost, for one scheduler."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.counts: Throttled[Mapping[tuple[str, str], int]] = Throttled(
            lambda: views.state_counts(scheduler.state), COUNTS_INTERVAL, COUNTS_SHARE)
        #: CPU seconds (of the scheduler's thread) spent building messages and metrics
        self.cpu_seconds = 0.0
        self._version: Version | None = None
        self._cache: dict[Any, Any] = {}

    def version(self) -> Version:
        """Changes whenever the scheduler handled anything, or tasks waiting
        without workers waited longer (cheap: no scan)."""
        mon = self.scheduler.monitor
        stranded = mon.waiting_for_workers
        return (mon.tasks_total, mon.transfer_count, mon.stamps.last(),
                stranded["seconds"] if stranded else 0.0)

    @contextmanager
    def timed(self) -> Iterator[None]:
        """Count the CPU time of the block in ``cpu_seconds``, less the
        garbage collections that started in it: they collect what the whole
        scheduler allocated (a full one takes tens of milliseconds with a big
        state) and would be charged to whichever code crossed the threshold."""
        thread = threading.get_ident()
        collecting = [0.0, 0.0]  # thread CPU at the start of a collection, total

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if threading.get_ident() == thread:
                if phase == "start":
                    collecting[0] = time.thread_time()
                else:
                    collecting[1] += time.thread_time() - collecting[0]

        start = time.thread_time()
        gc.callbacks.append(on_gc)
        try:
            yield
        finally:
            gc.callbacks.remove(on_gc)
            self.cpu_seconds += time.thread_time() - start - collecting[1]

    def status_message(self, cursor: str) -> tuple[bytes, str]:
        """The status page's update (JSON) for a page whose task stream is at
        ``cursor`` (``"next,next_transfer"`` of its previous update, ``""`` at
        first), and the cursor after it."""
        after, _, after_transfer = cursor.partition(",")
        a, b = _int(after), _int(after_transfer)
        return cast("tuple[bytes, str]", self._cached(("status", a, b), lambda: self._build_status(a, b)))

    def workers_message(self) -> bytes:
        """The workers page's update (JSON)."""
        return cast(bytes, self._cached("workers", self._build_workers))

    # ------------------------------------------------------------------ #
    def _cached(self, key: Any, build: Callable[[], Any]) -> Any:
        with self.timed():
            version = self.version()
            if version != self._version:
                self._version = version
                self._cache.clear()
            hit = self._cache.get(key)
            if hit is None:
                hit = self._cache[key] = build()
            return hit

    def _overview(self) -> dict[str, Any]:
        s = self.scheduler
        hit = self._cache.get("overview")
        if hit is None:
            hit = self._cache["overview"] = views.overview(s.state, s.monitor, s.worker_extra,
                                                           self.counts.get())
        return cast("dict[str, Any]", hit)

    def _build_status(self, after: int, after_transfer: int) -> tuple[bytes, str]:
        s = self.scheduler
        nthreads = {a: ws.nthreads for a, ws in s.state.workers.items()}
        stream = views.task_stream(s.monitor, nthreads, after, after_transfer)
        body = _encode({**self._overview(), "stream": stream, "now": time.time(), "address": s.address})
        return body, f"{stream['next']},{stream['next_transfer']}"

    def _build_workers(self) -> bytes:
        s = self.scheduler
        return _encode({"now": time.time(), "address": s.address,
                        "workers": views.workers(s.state, s.worker_extra, s.monitor),
                        "departed": s.monitor.departed,
                        "summary": self._overview()["summary"]})


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _encode(data: Any) -> bytes:
    return json.dumps(data, default=str, separators=(",", ":")).encode()
