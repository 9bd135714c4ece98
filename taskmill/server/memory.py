"""Keeping a worker below its memory limit: spill, then pause, then restart.

Theory of operation
-------------------
Each worker has a memory limit in bytes (``--memory-limit``; 0 = no limit and
none of this happens).  :class:`MemoryThresholds` holds four fractions of it:

* ``target`` (0.6): the data store spills least recently used values to disk
  as soon as values in memory plus unmanaged memory (process RSS minus those
  values) would pass it; checked on every store, no polling;
* ``spill`` (0.7): the worker's monitor (:class:`WorkerMemoryMonitor`, every
  ``interval`` seconds) sees the process RSS past it and spills values until
  RSS is back under ``target`` (or nothing is left in memory);
* ``pause`` (0.8): past it the worker starts no task and no fetch
  (``PauseChanged``) until RSS falls back under it; it still serves data;
* ``terminate`` (0.95): the nanny, polling its worker's RSS, kills it
  (SIGKILL) and reports "worker exceeded its memory limit (X of Y)", which
  the scheduler puts into ``KilledWorker`` messages.

A fraction of 0 (or ``off``) disables that step.  Defaults come from the
options ``worker.memory.target``, ``.spill``, ``.pause``, ``.terminate``
(fractions) and ``worker.memory.monitor-interval`` (seconds) of
:mod:`taskmill.config` (older variables: ``TASKMILL_MEMORY_TARGET`` and so
on); nanny-started workers inherit the nanny's environment and the options
set in its process.

Buffers the process keeps for large incoming frames and nobody uses
(``ReceivePool.idle_bytes``, :mod:`taskmill.protocol.receive_pool`) are in
the RSS but hold no value: the monitor leaves them out of the unmanaged
offset, and gives them back to the system (``release_idle``) before it
decides to spill or pause, so they never trigger either.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from taskmill import config
from taskmill.comm.core import receive_pool
from taskmill.config_checks import fraction, seconds
from taskmill.units import format_bytes
from taskmill.protocol.receive_pool import ReceivePool
from taskmill.server.data_store import DataStore

logger = logging.getLogger("taskmill.worker")


@dataclass(frozen=True, slots=True)
class MemoryThresholds:
    """Fractions of the memory limit (0 disables a step) and the monitor's period."""

    target: float = 0.6
    spill: float = 0.7
    pause: float = 0.8
    terminate: float = 0.95
    interval: float = 0.1

    @classmethod
    def from_config(cls) -> MemoryThresholds:
        """The options ``worker.memory.*`` of :mod:`taskmill.config`."""
        return cls(
            target=config.read("worker.memory.target", fraction),
            spill=config.read("worker.memory.spill", fraction),
            pause=config.read("worker.memory.pause", fraction),
            terminate=config.read("worker.memory.terminate", fraction),
            interval=config.read("worker.memory.monitor-interval", seconds),
        )


def memory_exceeded_reason(rss: int, limit: int) -> str:
    """The reason a nanny reports when it kills its worker for memory."""
    return f"worker exceeded its memory limit ({format_bytes(rss)} of {format_bytes(limit)})"


class WorkerMemoryMonitor:
    """One check per call of :meth:`check` (the worker calls it periodically):
    keep the store's unmanaged offset current, spill on high RSS, and tell
    ``on_pause(paused)`` when the pause state changes.  Synchronous and
    I/O-light (spilling writes files); ``rss`` is injectable for tests."""

    def __init__(self, store: DataStore, limit: int, thresholds: MemoryThresholds,
                 rss: Callable[[], int], on_pause: Callable[[bool], None],
                 max_spill_seconds: float = 0.5, pool: ReceivePool | None = None) -> None:
        self.store = store
        self.pool = receive_pool() if pool is None else pool
        self.limit = limit
        self.thresholds = thresholds
        self.rss = rss
        self.on_pause = on_pause
        self.max_spill_seconds = max_spill_seconds
        self.paused = False
        self.last_rss = 0

    def check(self) -> int:
        """Run one check; return the process RSS it ended with."""
        t, store, limit = self.thresholds, self.store, self.limit
        rss = self.rss()
        lowest = min((f for f in (t.target, t.spill, t.pause) if f), default=0.0)
        if lowest and rss > lowest * limit and self.pool.release_idle():
            rss = self.rss()  # idle receive buffers go before any value does
        if t.spill and rss > t.spill * limit:
            goal = (t.target or t.spill) * limit
            deadline = time.monotonic() + self.max_spill_seconds
            spilled = count = 0
            while rss > goal and time.monotonic() < deadline:
                weight = store.evict()
                if weight < 0:
                    break
                spilled += weight
                count += 1
                rss = self.rss()
            if count:
                logger.debug("memory %s over %.0f%% of %s: spilled %d values (%s)",
                             format_bytes(rss), t.spill * 100, format_bytes(limit), count,
                             format_bytes(spilled))
        store.offset = rss - store.memory_bytes - self.pool.idle_bytes()
        if t.pause:
            paused = rss > t.pause * limit
            if paused != self.paused:
                self.paused = paused
                if paused:
                    logger.warning("memory %s is over %.0f%% of the limit %s: worker paused "
                                   "(%s in memory, %s spilled)", format_bytes(rss), t.pause * 100,
                                   format_bytes(limit), format_bytes(store.memory_bytes),
                                   format_bytes(store.spilled_bytes))
                else:
                    logger.info("memory %s back under %.0f%% of the limit: worker resumes",
                                format_bytes(rss), t.pause * 100)
                self.on_pause(paused)
        self.last_rss = rss
        return rss
