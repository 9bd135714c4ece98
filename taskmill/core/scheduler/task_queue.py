"""The scheduler-wide queue of ready tasks waiting for a free slot: a heap
with a sorted run beside it.

Theory of operation
-------------------
Ready tasks that find no free slot wait in order of ``TaskRecord.sort_key``
(priority, then submission order).  They mostly arrive in that order: a map
is queued in submission order, a dask graph's roots by their rank.  A binary
heap pays O(log n) tuple comparisons per pop whatever the order: with
100,000 tasks queued that is 17 levels, each comparison reaching a tuple
that is no longer in the cache (the pop was the most expensive line of the
scheduler on a tree reduction at 1,000 workers).

:class:`TaskQueue` keeps its entries ``(sort_key, epoch, task)`` in two parts:

* ``run``: a deque in ascending order.  An entry not smaller than the run's
  last one is appended to it (O(1)); so is any entry while the run is empty;
* ``heap``: every other entry, a binary heap.

The best entry is the smaller of the two fronts, so tasks leave in exactly
the order a single heap of the same entries gives (no two entries are equal:
each ``sort_key`` ends with the task's unique ``seq`` and a task queued again
gets a new epoch); a pop from the run is O(1), from the heap O(log h) with h
the out-of-order entries only.

Entries are deleted lazily, as in ``policy``'s heaps (``entry_live``): an
entry stands for its task only while the task is ``queued`` with the same
``queue_epoch``; dead entries are dropped when they reach a front.

Invariant (checked by ``taskmill.core.scheduler.validate``): ``run`` is in
ascending order.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from itertools import chain, pairwise

from taskmill.core.scheduler.policy import QueueEntry, entry_live, queue_peek
from taskmill.core.scheduler.records import TaskRecord

__all__ = ["TaskQueue"]


class TaskQueue:
    """Queued tasks in ``sort_key`` order: a sorted run and a heap (see the
    module docstring).  Iterating gives every entry, live or dead, in no
    particular order; ``len`` counts them too."""

    __slots__ = ("run", "heap")

    def __init__(self) -> None:
        #: entries in ascending order (appended when in order)
        self.run: deque[QueueEntry] = deque()
        #: the entries that came out of order (a binary heap)
        self.heap: list[QueueEntry] = []

    def push(self, ts: TaskRecord) -> None:
        """Queue ``ts`` (already given its current ``queue_epoch``)."""
        entry = (ts.sort_key, ts.queue_epoch, ts)
        run = self.run
        if not run or run[-1] < entry:
            run.append(entry)
        else:
            heapq.heappush(self.heap, entry)

    def peek(self) -> TaskRecord | None:
        """The best live task, or None (dead entries at the fronts are dropped)."""
        run = self.run
        while run and not entry_live(run[0]):
            run.popleft()
        top = queue_peek(self.heap)
        if not run or (top is not None and self.heap[0] < run[0]):
            return top
        return run[0][2]

    def pop(self) -> None:
        """Take out the task :meth:`peek` just named (nothing changed since)."""
        run, heap = self.run, self.heap
        if run and not (heap and heap[0] < run[0]):
            run.popleft()
        else:
            heapq.heappop(heap)

    def live(self) -> list[TaskRecord]:
        """Every live task (for validation), in no particular order."""
        return [entry[2] for entry in self if entry_live(entry)]

    def in_order(self) -> bool:
        """Whether the run is in ascending order (its invariant)."""
        return all(a < b for a, b in pairwise(self.run))

    def clear(self) -> None:
        """Drop every entry."""
        self.run.clear()
        self.heap.clear()

    def __iter__(self) -> Iterator[QueueEntry]:
        return chain(self.run, self.heap)

    def __len__(self) -> int:
        return len(self.run) + len(self.heap)

    def __repr__(self) -> str:
        return f"<TaskQueue run={len(self.run)} heap={len(self.heap)}>"
