"""The scheduler shell's side of ``replicate``, ``rebalance`` and ``retire_workers``.

Theory of operation
-------------------
The decisions (which worker fetches which copy, when a retiring worker may
go) are the pure state machine's (``taskmill.core.scheduler.replicas``).
This module turns the two client requests into events and waits, with a
deadline, for their outcome:

* ``replicate``: ``ReplicateRequested``, then wait until no copy of those
  keys is still being fetched (``SchedulerState.copies_pending``, checked
  after every batch of events the scheduler handles).
* ``rebalance``: ``RebalanceRequested``, then wait until no move of data
  between workers is in flight (``SchedulerState.rebalancer.moving``,
  checked after every batch of events, as copies are).
* ``retire-workers``: ``RetireRequested``, then wait for one
  ``WorkerRetired`` or ``RetirementAborted`` per worker.  A retired worker is
  told so on its stream (``retired``; with ``close`` it closes itself and exits
  with status 0, so its nanny does not start it again).  At the deadline the
  retirement is cancelled (``RetireCancelled``) and the workers go back to
  work.

It is a part of the scheduler shell kept in its own module: it reads the
scheduler's state machine and feeds it events through the shell's ``handle``.  Both deadlines default to ``timeouts.RETIRE`` (see :mod:`taskmill.timeouts`);
running out of time raises ``TimeoutError`` for ``replicate`` (saying how
many keys were still being copied) and leaves the worker out of the list
``retire-workers`` returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from taskmill import timeouts
from taskmill.core.scheduler import events as ev
from taskmill.core.scheduler.state import SchedulerState
from taskmill.protocol.vocabulary import Rebalance, Replicate, Retired, RetireWorkers

logger = logging.getLogger("taskmill.scheduler")


class ReplicaRequests:
    """Pending ``replicate`` and ``retire-workers`` requests of one scheduler."""

    def __init__(self, state: SchedulerState, handle: Callable[..., None],
                 stimulus_id: Callable[[str], str]) -> None:
        self.state = state
        self._handle = handle
        self._sid = stimulus_id
        #: keys still being copied -> set when none is left
        self._copies: list[tuple[list[str], asyncio.Future[None]]] = []
        #: ``rebalance`` requests waiting for the moves in flight to settle
        self._rebalancing: list[asyncio.Future[None]] = []
        #: retiring worker -> resolved True (retired) or False (aborted)
        self._retiring: dict[str, asyncio.Future[bool]] = {}
        #: retiring workers that close themselves once retired
        self._close: set[str] = set()

    # ------------------------------------------------------------------ #
    # Requests
    # ------------------------------------------------------------------ #
    async def replicate(self, msg: Replicate, comm: Any) -> int:
        """Copy ``keys`` onto ``n`` workers (all when None) among ``workers``;
        returns once the copies are made.  Returns how many copies were made."""
        keys, n, workers, max_wait = list(msg.keys), msg.n, msg.workers, msg.max_wait
        state = self.state
        if n is not None and n < 1:
            raise ValueError(f"replicate needs n >= 1 (copies to keep), got {n}")
        if workers:
            unknown = [w for w in workers if w not in state.workers]
            if unknown:
                raise ValueError(f"replicate to unknown workers {unknown}; known: {sorted(state.workers)}")
        before = sum(len(v) for v in state.who_has(keys).values())
        self._handle(ev.ReplicateRequested(self._sid("replicate"), tuple(keys), n,
                                           tuple(workers) if workers else None))
        pending = state.copies_pending(keys)
        if pending:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._copies.append((pending, done))
            wait = timeouts.RETIRE.get() if max_wait is None else max_wait
            try:
                await asyncio.wait_for(asyncio.shield(done), wait)
            except asyncio.TimeoutError:
                left = len(state.copies_pending(pending))
                raise TimeoutError(
                    f"replicate: {left} of {len(keys)} keys were still being copied between "
                    f"workers after {wait:g}s "
                    f"(raise {timeouts.RETIRE.env} or pass a longer timeout)") from None
            finally:
                self._copies = [(k, f) for k, f in self._copies if f is not done]
        return sum(len(v) for v in state.who_has(keys).values()) - before

    async def rebalance(self, msg: Rebalance, comm: Any) -> int:
        """Even out the data the workers hold (see
        ``taskmill.core.scheduler.rebalance``); returns once every move
        settled, with the number of keys that moved."""
        state = self.state
        if msg.workers:
            unknown = [w for w in msg.workers if w not in state.workers]
            if unknown:
                raise ValueError(f"rebalance among unknown workers {unknown}; known: {sorted(state.workers)}")
        moving = state.rebalancer.moving
        before = len(moving)
        self._handle(ev.RebalanceRequested(self._sid("rebalance"), msg.keys, msg.workers))
        planned = len(moving) - before
        if moving:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._rebalancing.append(done)
            wait = timeouts.RETIRE.get() if msg.max_wait is None else msg.max_wait
            try:
                await asyncio.wait_for(asyncio.shield(done), wait)
            except asyncio.TimeoutError:
                raise TimeoutError(
                    f"rebalance: {len(moving)} keys were still being moved between workers after "
                    f"{wait:g}s; nothing is lost, the rest stays where it was "
                    f"(raise {timeouts.RETIRE.env} or pass a longer timeout)") from None
            finally:
                self._rebalancing = [f for f in self._rebalancing if f is not done]
        return planned

    async def retire(self, msg: RetireWorkers, comm: Any) -> list[str]:
        """Retire ``workers`` (or the ``n`` cheapest to retire); returns the
        addresses of those retired."""
        max_wait = msg.max_wait
        state = self.state
        if msg.workers is not None:
            workers = list(msg.workers)
        elif msg.n is not None:
            workers = state.workers_to_retire(msg.n)
        else:
            raise ValueError("retire_workers needs workers=[addresses] or n=<how many>")
        known = [w for w in dict.fromkeys(workers) if w in state.workers]
        if not known:
            return []
        loop = asyncio.get_running_loop()
        waits = {w: self._retiring.setdefault(w, loop.create_future()) for w in known}
        if msg.close_workers:
            self._close.update(known)
        self._handle(ev.RetireRequested(self._sid("retire"), tuple(known)))
        wait = timeouts.RETIRE.get() if max_wait is None else max_wait
        _, late = await asyncio.wait([asyncio.shield(f) for f in waits.values()], timeout=wait)
        if late:
            still = tuple(w for w, f in waits.items() if not f.done())
            self._handle(ev.RetireCancelled(
                self._sid("retire-timeout"), still,
                f"its data was not moved to other workers within {wait:g}s "
                f"(raise {timeouts.RETIRE.env} to wait longer)"))
        return [w for w, f in waits.items() if f.done() and f.result()]

    # ------------------------------------------------------------------ #
    # Outcomes, from the scheduler's command loop
    # ------------------------------------------------------------------ #
    def retired(self, cmd: ev.WorkerRetired) -> Retired:
        """The message that tells the retired worker (and wakes the request)."""
        close = cmd.worker in self._close
        self._close.discard(cmd.worker)
        self._resolve(cmd.worker, True)
        logger.info("worker %s retired%s", cmd.worker, " and closes" if close else "")
        return Retired(cmd.worker, close)

    def aborted(self, cmd: ev.RetirementAborted) -> None:
        self._close.discard(cmd.worker)
        self._resolve(cmd.worker, False)
        logger.warning("retiring worker %s failed: %s", cmd.worker, cmd.reason)

    def _resolve(self, worker: str, retired: bool) -> None:
        fut = self._retiring.pop(worker, None)
        if fut is not None and not fut.done():
            fut.set_result(retired)

    def check_copies(self) -> None:
        """Wake the ``replicate`` requests whose copies are all settled, and the
        ``rebalance`` requests once no move is in flight."""
        if self._rebalancing and not self.state.rebalancer.moving:
            for done in self._rebalancing:
                if not done.done():
                    done.set_result(None)
            self._rebalancing = []
        if not self._copies:
            return
        state = self.state
        still = []
        for keys, done in self._copies:
            keys = state.copies_pending(keys)
            if keys:
                still.append((keys, done))
            elif not done.done():
                done.set_result(None)
        self._copies = still
