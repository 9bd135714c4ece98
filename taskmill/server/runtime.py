"""Process-wide settings for taskmill's own server processes (never applied
to a user's program that merely embeds a cluster).

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
"""

from __future__ import annotations

import gc

#: Freeze the heap each time the scheduler holds this many more tasks.
FREEZE_EVERY_TASKS = 100_000

_server_process = False


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
