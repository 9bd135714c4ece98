"""Adaptive scaling: a cluster that grows with the work and shrinks when idle.

Theory of operation
-------------------
Every ``interval`` the :class:`Adaptive` of a cluster asks the scheduler what
the work needs (``adaptive-target``, computed by
:func:`taskmill.core.scheduler.adaptive.recommend` from the queued and
running tasks and the measured duration of each kind of task) and moves the
cluster toward it, within ``[minimum, maximum]`` workers.  The decision is
the pure :class:`Hysteresis`:

* **up at once**: starting workers is what the waiting work needs now;
* **down only after ``wait_count`` rounds in a row** all asked for fewer
  workers than the cluster has: a pause between two bursts shorter than
  that closes nothing, so nothing thrashes.  Then the workers the scheduler
  names (idle, least data first) are retired: their unique data moves to
  the workers that stay before they stop, so no key is lost.

With the defaults (a round a second, three rounds) an idle cluster starts
shrinking after about three seconds; with job-queue clusters, where a new
worker costs a job start, a longer ``wait_count`` keeps workers through
longer pauses.  A round that fails (the scheduler briefly unreachable)
is logged and skipped; the next round tries again.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any, Protocol

from taskmill import timeouts
from taskmill.comm.pool import RPC
from taskmill.units import parse_seconds
from taskmill.protocol.vocabulary import AdaptiveTarget

logger = logging.getLogger("taskmill.cluster.adaptive")


@dataclass(frozen=True, slots=True)
class Move:
    """What one round does: have ``workers`` workers; when that is fewer than
    today, close those of ``close`` (addresses) first."""

    workers: int
    close: tuple[str, ...] = ()


class Scalable(Protocol):
    """What an :class:`Adaptive` drives (a :class:`taskmill.cluster.base.Cluster`)."""

    threads_per_worker: int | None
    adaptive: Any

    @property
    def scheduler_rpc(self) -> RPC: ...

    def planned_workers(self) -> int: ...

    async def scale_to_workers(self, n: int, prefer: tuple[str, ...] = ()) -> None: ...


class Hysteresis:
    """The pure decision of each round (module docstring)."""

    def __init__(self, minimum: int, maximum: int | float, wait_count: int) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.wait_count = wait_count
        #: rounds in a row that asked for fewer workers than there were
        self.down_rounds = 0

    def clamp(self, n: int) -> int:
        """``n`` within ``[minimum, maximum]``."""
        return int(min(self.maximum, max(self.minimum, n)))

    def decide(self, have: int, target: int, close: tuple[str, ...]) -> Move | None:
        """``have`` workers (started or starting); the scheduler asks for
        ``target`` and would close ``close``.  -> the move, or None to stay."""
        wanted = self.clamp(target)
        if wanted > have:
            self.down_rounds = 0
            return Move(wanted)
        if wanted == have:
            self.down_rounds = 0
            return None
        self.down_rounds += 1
        if self.down_rounds < self.wait_count:
            return None
        self.down_rounds = 0
        return Move(wanted, close[: have - wanted])


class Adaptive:
    """Keeps a cluster's worker count between ``minimum`` and ``maximum``,
    following the work (module docstring).  ``stop()`` ends it."""

    def __init__(self, cluster: Scalable, minimum: int = 0, maximum: int | float = math.inf,
                 target_duration: str | float = "5s", interval: str | float = "1s",
                 wait_count: int = 3) -> None:
        if not isinstance(minimum, int) or minimum < 0:
            raise ValueError(f"adapt(minimum=...) must be an integer >= 0, not {minimum!r}")
        if not maximum >= minimum:
            raise ValueError(f"adapt(maximum={maximum!r}) is below minimum={minimum}")
        if not isinstance(wait_count, int) or wait_count < 1:
            raise ValueError(f"adapt(wait_count=...) must be an integer >= 1, not {wait_count!r}")
        self.cluster = cluster
        self.target_duration = parse_seconds(target_duration)
        self.interval = parse_seconds(interval)
        if self.target_duration <= 0 or self.interval <= 0:
            raise ValueError("adapt(): target_duration and interval must be positive durations")
        self.hysteresis = Hysteresis(minimum, maximum, wait_count)
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        #: the moves made, newest last (for tests and the curious)
        self.log: list[tuple[float, Move]] = []

    @property
    def minimum(self) -> int:
        return self.hysteresis.minimum

    @property
    def maximum(self) -> int | float:
        return self.hysteresis.maximum

    def __repr__(self) -> str:
        return (f"<Adaptive minimum={self.minimum} maximum={self.maximum} "
                f"target_duration={self.target_duration:g}s>")

    def check_within(self, n: int) -> None:
        """Refuse a manual ``scale(n)`` outside the bounds while adapting."""
        if not self.minimum <= n <= self.maximum:
            raise ValueError(
                f"scale({n}) is outside the adaptive bounds [{self.minimum}, {self.maximum}] "
                f"of this cluster: change them with cluster.adapt(minimum=..., maximum=...) "
                f"or turn adaptive scaling off with cluster.adaptive.stop()")

    def start(self) -> None:
        """Begin the rounds on the cluster's event loop (called there)."""
        if self._task is None and not self._stopped:
            self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        """No more rounds; the workers stay as they are."""
        self._stopped = True
        if self._task is not None:
            self._task.get_loop().call_soon_threadsafe(self._task.cancel)
        if self.cluster.adaptive is self:
            self.cluster.adaptive = None

    async def _run(self) -> None:
        while not self._stopped:
            try:
                await self.adapt_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next round tries again
                logger.warning("adaptive scaling round failed: %r", exc)
            await asyncio.sleep(self.interval)

    async def adapt_once(self) -> Move | None:
        """One round: ask the scheduler, decide, move."""
        cluster = self.cluster
        advice: dict[str, Any] = await cluster.scheduler_rpc.ask(
            AdaptiveTarget(self.target_duration, cluster.threads_per_worker),
            timeout=timeouts.REQUEST)
        have = cluster.planned_workers()
        move = self.hysteresis.decide(have, int(advice["target"]), tuple(advice["close"]))
        if move is None:
            return None
        self.log.append((asyncio.get_running_loop().time(), move))
        logger.info("adaptive: %d -> %d workers", have, move.workers)
        await cluster.scale_to_workers(move.workers, move.close)
        return move
