"""The scheduler shell's side of ``replicate`` and ``retire_workers``.

Theory of operation
-------------------
The decisions (which worker fetches which copy, when a retiring worker may
go) are the pure state machine's (``taskmill.core.scheduler_replicas``).
This module turns the two client requests into events and waits, with a
deadline, for their outcome:

* ``replicate``: ``ReplicateRequested``, then wait until no copy of those
  keys is still being fetched (``SchedulerState.copies_pending``, checked
  after every batch of events the scheduler handles).
* ``retire-workers``: ``RetireRequested``, then wait for one
  ``WorkerRetired`` or ``RetirementAborted`` per worker.  A retired worker is
  told so on its stream (``retired``; with ``close`` it closes itself and exits
  with status 0, so its nanny does not start it again).  At the deadline the
  retirement is cancelled (``RetireCancelled``) and the workers go back to
  work.

It is a part of the scheduler shell kept in its own module: it feeds events
through the shell's ``_handle``.  Both deadlines default to ``timeouts.RETIRE`` (see :mod:`taskmill.timeouts`);
running out of time raises ``TimeoutError`` for ``replicate`` (saying how
many keys were still being copied) and leaves the worker out of the list
``retire-workers`` returns.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from taskmill import timeouts
from taskmill.core import scheduler_events as ev

if TYPE_CHECKING:
    from taskmill.server.scheduler import Scheduler

logger = logging.getLogger("taskmill.scheduler")


class ReplicaRequests:
    """Pending ``replicate`` and ``retire-workers`` requests of one scheduler."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        #: keys still being copied -> set when none is left
        self._copies: list[tuple[list[str], asyncio.Future[None]]] = []
        #: retiring worker -> resolved True (retired) or False (aborted)
        self._retiring: dict[str, asyncio.Future[bool]] = {}
        #: retiring workers that close themselves once retired
        self._close: set[str] = set()

    # ------------------------------------------------------------------ #
    # Requests
    # ------------------------------------------------------------------ #
    async def replicate(self, keys: list[str], n: int | None = None,
                        workers: list[str] | None = None, max_wait: float | None = None,
                        comm: Any = None) -> int:
        """Copy ``keys`` onto ``n`` workers (all when None) among ``workers``;
        returns once the copies are made.  Returns how many copies were made."""
        s = self.scheduler
        if n is not None and n < 1:
            raise ValueError(f"replicate needs n >= 1 (copies to keep), got {n}")
        if workers:
            unknown = [w for w in workers if w not in s.state.workers]
            if unknown:
                raise ValueError(f"replicate to unknown workers {unknown}; known: {sorted(s.state.workers)}")
        before = sum(len(v) for v in s.state.who_has(keys).values())
        s._handle(ev.ReplicateRequested(s._sid("replicate"), tuple(keys), n,
                                              tuple(workers) if workers else None))
        pending = s.state.copies_pending(keys)
        if pending:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._copies.append((pending, done))
            wait = timeouts.RETIRE.get() if max_wait is None else max_wait
            try:
                await asyncio.wait_for(asyncio.shield(done), wait)
            except asyncio.TimeoutError:
                left = len(s.state.copies_pending(pending))
                raise TimeoutError(
                    f"replicate: {left} of {len(keys)} keys were still being copied between "
                    f"workers of the scheduler at {s.address} after {wait:g}s "
                    f"(raise {timeouts.RETIRE.env} or pass a longer timeout)") from None
            finally:
                self._copies = [(k, f) for k, f in self._copies if f is not done]
        return sum(len(v) for v in s.state.who_has(keys).values()) - before

    async def retire(self, workers: list[str] | None = None, n: int | None = None,
                     close_workers: bool = True, max_wait: float | None = None,
                     comm: Any = None) -> list[str]:
        """Retire ``workers`` (or the ``n`` cheapest to retire); returns the
        addresses of those retired."""
        s = self.scheduler
        if workers is None:
            if n is None:
                raise ValueError("retire_workers needs workers=[addresses] or n=<how many>")
            workers = s.state.workers_to_retire(n)
        known = [w for w in dict.fromkeys(workers) if w in s.state.workers]
        if not known:
            return []
        loop = asyncio.get_running_loop()
        waits = {w: self._retiring.setdefault(w, loop.create_future()) for w in known}
        if close_workers:
            self._close.update(known)
        s._handle(ev.RetireRequested(s._sid("retire"), tuple(known)))
        wait = timeouts.RETIRE.get() if max_wait is None else max_wait
        _, late = await asyncio.wait([asyncio.shield(f) for f in waits.values()], timeout=wait)
        if late:
            still = tuple(w for w, f in waits.items() if not f.done())
            s._handle(ev.RetireCancelled(
                s._sid("retire-timeout"), still,
                f"its data was not moved to other workers within {wait:g}s "
                f"(raise {timeouts.RETIRE.env} to wait longer)"))
        return [w for w, f in waits.items() if f.done() and f.result()]

    # ------------------------------------------------------------------ #
    # Outcomes, from the scheduler's command loop
    # ------------------------------------------------------------------ #
    def retired(self, cmd: ev.WorkerRetired) -> dict[str, Any]:
        """The message that tells the retired worker (and wakes the request)."""
        close = cmd.worker in self._close
        self._close.discard(cmd.worker)
        self._resolve(cmd.worker, True)
        logger.info("worker %s retired%s", cmd.worker, " and closes" if close else "")
        return {"op": "retired", "close": close}

    def aborted(self, cmd: ev.RetirementAborted) -> None:
        self._close.discard(cmd.worker)
        self._resolve(cmd.worker, False)
        logger.warning("retiring worker %s failed: %s", cmd.worker, cmd.reason)

    def _resolve(self, worker: str, retired: bool) -> None:
        fut = self._retiring.pop(worker, None)
        if fut is not None and not fut.done():
            fut.set_result(retired)

    def check_copies(self) -> None:
        """Wake the ``replicate`` requests whose copies are all settled."""
        if not self._copies:
            return
        state = self.scheduler.state
        still = []
        for keys, done in self._copies:
            keys = state.copies_pending(keys)
            if keys:
                still.append((keys, done))
            elif not done.done():
                done.set_result(None)
        self._copies = still
