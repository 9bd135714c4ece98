"""How many workers the work in the scheduler asks for (adaptive scaling).

Theory of operation
-------------------
A cluster that adapts (:class:`taskmill.cluster.adaptive.Adaptive`) asks the
scheduler about once a second how many workers it should have.  The answer
is a pure function of the scheduler's state, :func:`recommend`:

* **compute**: the expected seconds of work left, the tasks processing on
  the workers plus those queued for a free slot, each at its kind's measured
  average duration (``Placement.durations`` per task-name prefix; a kind not
  seen finishing yet counts ``UNKNOWN_DURATION``).  Finishing that within
  ``target_duration`` takes ``ceil(work / target_duration)`` threads, but
  never more threads than there are tasks (three one-hour tasks ask for three
  threads, not a thousand), and at least one while any task waits;
* **memory**: enough workers to hold the data in memory at most
  ``MEMORY_FRACTION`` full;
* the recommendation is the larger of the two, in workers of
  ``threads_per_worker`` threads.  Below the current count, it names the
  workers to close: idle ones (nothing processing), least data first, so
  the least data moves; while too few are idle the target stays higher.

The queue of ready tasks can be long (a million root tasks), so it is
sampled: at most ``QUEUE_SAMPLE`` heap entries, scaled by the live share of
the sample.  The cost is O(workers' processing + QUEUE_SAMPLE) per call.

Hysteresis (asking several times before closing a worker) belongs to the
cluster side: this function says what the work asks for now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import islice

from taskmill.core.scheduler.membership import Membership
from taskmill.core.scheduler.placement import Placement
from taskmill.core.scheduler.policy import entry_live
from taskmill.protocol.vocabulary import Address

#: seconds a task of a kind never seen finishing is expected to take (as dask's default)
UNKNOWN_DURATION = 0.5
#: at most this share of the workers' memory limits is planned to be full
MEMORY_FRACTION = 0.6
#: queued-task heap entries looked at per recommendation
QUEUE_SAMPLE = 2_000


@dataclass(frozen=True, slots=True)
class Recommendation:
    """``target`` workers; when below today's count, ``close`` names which."""

    target: int
    close: tuple[Address, ...] = ()


def recommend(membership: Membership, placement: Placement, target_duration: float,
              threads_per_worker: int | None = None) -> Recommendation:
    """The number of workers the current work asks for (module docstring)."""
    if target_duration <= 0:
        raise ValueError(f"target_duration must be > 0 seconds, not {target_duration!r}")
    durations = placement.durations
    workers = membership.workers
    tasks = 0
    work = 0.0
    for ws in workers.values():
        for ts in ws.processing:
            tasks += 1
            work += durations.get(ts.prefix, UNKNOWN_DURATION)
    queue = placement.queue
    if queue:
        sample = list(islice(queue, QUEUE_SAMPLE))
        live = [entry[2] for entry in sample if entry_live(entry)]
        if live:
            scale = len(queue) / len(sample)
            tasks += round(len(live) * scale)
            work += scale * sum(durations.get(ts.prefix, UNKNOWN_DURATION) for ts in live)
    if threads_per_worker is None:
        threads = sum(ws.nthreads for ws in workers.values())
        threads_per_worker = max(1, round(threads / len(workers))) if workers else 1
    threads_needed = min(tasks, math.ceil(work / target_duration)) if tasks else 0
    if tasks:
        threads_needed = max(1, threads_needed)
    for_compute = math.ceil(threads_needed / threads_per_worker)
    for_memory = 0
    if workers:
        held = sum(ws.nbytes for ws in workers.values())
        per_worker = sum(ws.memory_limit for ws in workers.values()) / len(workers)
        if held and per_worker > 0:
            for_memory = math.ceil(held / (MEMORY_FRACTION * per_worker))
    target = max(for_compute, for_memory)
    if target >= len(workers):
        return Recommendation(target)
    idle = [ws for ws in workers.values() if not ws.processing and not ws.retiring]
    idle.sort(key=lambda ws: (ws.nbytes, len(ws.has_what)))
    close = tuple(ws.address for ws in idle[: len(workers) - target])
    return Recommendation(len(workers) - len(close), close)
