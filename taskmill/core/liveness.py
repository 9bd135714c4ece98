"""Who has been silent too long: failure detection by time-to-live.

Theory of operation
-------------------
Scheduler and worker each send the other a heartbeat about once a second on
their stream (``heartbeat`` up, ``scheduler-heartbeat`` down), and any message
counts as a sign of life.  A peer heard from nothing for ``ttl`` seconds
(option ``scheduler.worker-ttl``, docs/failures.md says why 15 s) is
presumed gone, whatever its socket says: a stopped process (SIGSTOP, a
machine frozen in swap) or a silently cut link keeps its TCP connection
"open" for many minutes, and only silence tells.

* The scheduler then drops that worker's connection: it is removed
  (``WorkerLeft``), its tasks go elsewhere, its results are recomputed or
  copied from elsewhere.
* A worker that has not heard from its scheduler for twice as long (a
  scheduler that is only busy must not cost every worker its data) drops its
  connection too, and registers again as after any loss of its scheduler:
  the scheduler removed it meanwhile (one record, never two), and the keys
  it announces as still held (``RegisterWorker.held``) are reconciled with
  what the scheduler did since (:mod:`taskmill.core.scheduler.held_keys`:
  one more holder, the newcomer's copy taking over a recomputation, or
  freed), so no key is reported in memory where it is not.

Silence is judged only by a watcher that was itself awake: when the checks
come late (more than half the TTL after the previous check was due: the
watcher's own loop was blocked, or its process stopped), every peer is taken
as heard from at that moment rather than blamed for the watcher's stall.
A worker stopped past the TTL still learns that it was removed: the
scheduler closed its connection, which the worker reads as soon as it runs
again.

This class is the pure part: it holds when each peer was last heard from
and says who is past the TTL, with the clock passed in (``time.monotonic()``
in the shells, a number in tests).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)

#: seconds between two heartbeats (each way): well under any sensible TTL
HEARTBEAT_INTERVAL = 1.0


class Liveness(Generic[P]):
    """When each peer was last heard from; who has been silent past ``ttl`` seconds."""

    def __init__(self, ttl: float, interval: float = HEARTBEAT_INTERVAL) -> None:
        if not ttl > 0:
            raise ValueError(f"a time-to-live must be > 0 seconds, not {ttl!r} "
                             f"(option scheduler.worker-ttl)")
        self.ttl = ttl
        #: seconds between two calls of ``expired`` when the watcher is awake
        self.interval = interval
        self._last: dict[P, float] = {}
        #: when ``expired`` last ran, or the first peer was heard (None: neither yet)
        self._checked: float | None = None

    def heard(self, peer: P, now: float) -> None:
        """``peer`` gave a sign of life at ``now`` (its first one adds it)."""
        self._last[peer] = now
        if self._checked is None:  # watching starts now: a first check late is a stall too
            self._checked = now

    def forget(self, peer: P) -> None:
        """``peer`` is gone; no longer watched."""
        self._last.pop(peer, None)

    def silent_for(self, peer: P, now: float) -> float:
        """Seconds since ``peer`` was last heard from."""
        return now - self._last[peer]

    def expired(self, now: float) -> list[P]:
        """The peers not heard from for more than ``ttl`` seconds at ``now``
        (none when this check comes more than ``ttl / 2`` late: the watcher
        itself stalled, and every peer counts as heard from now)."""
        stalled = (self._checked is not None
                   and now - self._checked > self.interval + self.ttl / 2)
        self._checked = now
        if stalled:
            for peer in self._last:
                self._last[peer] = now
            return []
        return [p for p, last in self._last.items() if now - last > self.ttl]
