"""Garbage-collection settings for processes that run a taskmill server.

Garbage collection is the one setting that matters.  A scheduler holding a
million-task graph has millions of long-lived container objects (task
records and their dicts); each full collection walks all of them, which
stalled the scheduler for seconds.  The scheduler's state machine frees its
records by reference counting alone (it unlinks dependencies when it forgets
a task), so those objects never need the cycle collector: once the heap has
grown by ``FREEZE_EVERY_TASKS`` tasks, :class:`HeapFreezer` moves everything
alive into the permanent generation (``gc.freeze()``), where collections no
longer look.  When the graph has mostly gone again (a quarter of the tasks
left) it unfreezes, so cycles among objects frozen back then (say, an
exception and its traceback) are collected eventually.

A user's program that embeds a scheduler (``Executor()``) keeps its own
settings except one: while an embedded scheduler runs, the youngest
generation is collected every ``EMBEDDED_GEN0_THRESHOLD`` allocations
instead of Python's 700 (:func:`embedded_scheduler_started`).  With the
default, every task's handful of long-lived records pushed a full collection
every ~3,000 tasks, about a quarter of the time of a 20,000-task ``map``
(measured); the previous thresholds come back when the last embedded
scheduler closes.
"""

from __future__ import annotations

import gc
import threading

#: Freeze the heap each time the scheduler holds this many more tasks.
FREEZE_EVERY_TASKS = 100_000

#: Collect the youngest generation this rarely while an embedded scheduler runs.
EMBEDDED_GEN0_THRESHOLD = 10_000

_server_process = False
_embedded_lock = threading.Lock()
_embedded_schedulers = 0
_saved_thresholds: tuple[int, int, int] | None = None


def tune_gc() -> None:
    """Move start-up objects out of the collector's way and collect young
    objects less often: a server allocates many short-lived records per task,
    and frequent full collections over long-lived state cost more than they free."""
    global _server_process
    _server_process = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


class HeapFreezer:
    """Keeps full collections off a large task graph (see the module docstring).
    Does nothing unless this is a taskmill server process (:func:`tune_gc`)."""

    def __init__(self, every: int = FREEZE_EVERY_TASKS) -> None:
        self.every = every
        self.frozen_at = 0  # number of tasks at the last freeze; 0: nothing of ours frozen

    def observe(self, ntasks: int) -> None:
        """Called with the scheduler's task count after each batch of events."""
        if not _server_process:
            return
        if ntasks >= self.frozen_at + self.every:
            gc.freeze()
            self.frozen_at = ntasks
        elif self.frozen_at and ntasks <= self.frozen_at // 4:
            gc.unfreeze()
            self.frozen_at = 0


def embedded_scheduler_started() -> None:
    """A scheduler started in this process: in a user's program, collect the
    youngest generation less often until :func:`embedded_scheduler_stopped`."""
    global _embedded_schedulers, _saved_thresholds
    if _server_process:
        return  # tune_gc() already chose
    with _embedded_lock:
        if _embedded_schedulers == 0:
            _saved_thresholds = gc.get_threshold()
            gen0, gen1, gen2 = _saved_thresholds
            gc.set_threshold(max(gen0, EMBEDDED_GEN0_THRESHOLD), gen1, gen2)
        _embedded_schedulers += 1


def embedded_scheduler_stopped() -> None:
    """The counterpart of :func:`embedded_scheduler_started`: the last one
    to stop puts the program's own thresholds back."""
    global _embedded_schedulers, _saved_thresholds
    if _server_process:
        return
    with _embedded_lock:
        if _embedded_schedulers == 0:
            return
        _embedded_schedulers -= 1
        if _embedded_schedulers == 0 and _saved_thresholds is not None:
            gc.set_threshold(*_saved_thresholds)
            _saved_thresholds = None
