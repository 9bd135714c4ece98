"""Where a worker's missing inputs live, and which peer to ask next.

Theory of operation
-------------------
:class:`FetchQueue` is the part of the pure worker state machine
(:mod:`taskmill.core.worker.state`) that plans transfers.  It keeps three
indexes over the records of keys to fetch:

* ``heaps[peer]``: a heap of ``(priority, seq, key)`` for every key in
  ``fetch`` state that ``peer`` holds; a key with several holders sits in
  several heaps.  Entries are never removed eagerly: an entry is *valid* while
  its record exists, is in ``fetch`` state, has the same ``seq`` and still
  lists ``peer`` as holder.  Stale entries are popped when they reach the top,
  so each entry costs O(log n) once.
* ``in_flight[peer]``: the keys of the one outstanding request to ``peer``.
* ``has_what[peer]``: every key (not in memory) that ``peer`` is believed to
  hold, in the order it was learnt, so that a dead peer can be struck off in
  O(its keys).  Like a record's ``who_has`` it is an insertion-ordered
  ``dict[..., None]``, never a ``set``: the keys of a dead peer are walked to
  decide what goes missing, and a set of strings would walk them in a
  different order in each process (see :mod:`taskmill.core.worker.records`).

:meth:`FetchQueue.select` is the gather policy: among idle peers (no request
in flight) it takes the one whose most urgent valid key is most urgent (ties:
the peer that can serve more keys, so that shared keys travel together), gives
it up to ``max_keys`` keys in priority order, and repeats while fewer than
``max_peers`` requests are in flight.  Its cost is O(peers with queued keys)
plus the entries it pops.  The caller flips the chosen records to ``flight``
through the ``take`` callback and emits the ``Fetch`` commands.
"""

from __future__ import annotations

import heapq
from typing import Callable, Iterable

from taskmill.protocol.vocabulary import Address, Key, Priority
from taskmill.core.worker.records import FETCH, TaskRecord, _HeapEntry

__all__ = ["FetchQueue"]


class FetchQueue:
    """Holder indexes and per-peer fetch queues (see the module docstring)."""

    __slots__ = ("tasks", "address", "max_keys", "max_peers", "heaps", "in_flight", "has_what", "dirty")

    def __init__(self, tasks: dict[Key, TaskRecord], address: Address, max_keys: int, max_peers: int) -> None:
        self.tasks = tasks
        self.address = address
        self.max_keys = max_keys
        self.max_peers = max_peers
        self.heaps: dict[Address, list[_HeapEntry]] = {}
        self.in_flight: dict[Address, dict[Key, None]] = {}
        self.has_what: dict[Address, dict[Key, None]] = {}
        #: something changed that may allow a new request (checked by the caller)
        self.dirty = False

    # holders ----------------------------------------------------------------
    def add_holders(self, ts: TaskRecord, addrs: Iterable[Address]) -> None:
        """Record that ``addrs`` hold ``ts`` (this worker's address ignored);
        queue it with the new holders if it waits to be fetched."""
        wh = ts.who_has
        has_what = self.has_what
        for addr in addrs:
            if addr == self.address:
                continue
            if wh is None:
                wh = ts.who_has = {}
            elif addr in wh:
                continue
            wh[addr] = None
            hw = has_what.get(addr)
            if hw is None:
                has_what[addr] = {ts.key: None}
            else:
                hw[ts.key] = None
            if ts.state == FETCH:
                self.push_to(addr, ts)

    def remove_holder(self, ts: TaskRecord, addr: Address) -> None:
        """``addr`` no longer holds ``ts`` (its queue entry goes stale)."""
        if ts.who_has and addr in ts.who_has:
            del ts.who_has[addr]
            hw = self.has_what.get(addr)
            if hw is not None:
                hw.pop(ts.key, None)
                if not hw:
                    del self.has_what[addr]

    def clear_holders(self, ts: TaskRecord) -> None:
        """Forget every holder of ``ts`` (it is here now, or computed here)."""
        if ts.who_has:
            key = ts.key
            has_what = self.has_what
            for addr in ts.who_has:
                hw = has_what.get(addr)
                if hw is not None:
                    hw.pop(key, None)
                    if not hw:
                        del has_what[addr]
        ts.who_has = None

    def forget_peer(self, peer: Address) -> tuple[dict[Key, None] | None, dict[Key, None]]:
        """``peer`` is unreachable: strike it off every key.  Returns its
        request in flight (if any) and the keys it was believed to hold."""
        flight = self.in_flight.pop(peer, None)
        self.heaps.pop(peer, None)
        self.dirty = True
        held = self.has_what.pop(peer, None) or {}
        tasks = self.tasks
        for key in held:
            wh = tasks[key].who_has
            if wh is not None:
                wh.pop(peer, None)
        return flight, held

    # queues -------------------------------------------------------------------
    def push_to(self, addr: Address, ts: TaskRecord) -> None:
        """Queue ``ts`` with holder ``addr`` (its current ``priority`` and ``seq``)."""
        heap = self.heaps.get(addr)
        if heap is None:
            heap = self.heaps[addr] = []
        heapq.heappush(heap, (ts.priority, ts.seq, ts.key))
        self.dirty = True

    def push(self, ts: TaskRecord) -> None:
        """Queue ``ts`` (with its current ``priority`` and ``seq``) with every holder."""
        if ts.who_has:
            for addr in ts.who_has:
                self.push_to(addr, ts)

    def leave_flight(self, ts: TaskRecord) -> None:
        """``ts`` stops being part of its request (the request stays in flight)."""
        peer = ts.coming_from
        if peer is not None:
            keys = self.in_flight.get(peer)
            if keys is not None:
                keys.pop(ts.key, None)
            ts.coming_from = None

    def request_done(self, peer: Address) -> dict[Key, None] | None:
        """The request to ``peer`` ended; returns its keys (None if unknown)."""
        self.dirty = True
        return self.in_flight.pop(peer, None)

    def _valid_top(self, peer: Address) -> list[_HeapEntry] | None:
        """Pop stale entries off ``peer``'s heap; None (heap dropped) if empty."""
        heap = self.heaps[peer]
        tasks = self.tasks
        while heap:
            _, seq, key = heap[0]
            ts = tasks.get(key)
            if ts is not None and ts.state == FETCH and ts.seq == seq and ts.who_has and peer in ts.who_has:
                return heap
            heapq.heappop(heap)
        del self.heaps[peer]
        return None

    def select(self, take: Callable[[TaskRecord, Address], None]) -> list[tuple[Address, tuple[Key, ...]]]:
        """Plan new requests: ``[(peer, keys)]``, at most one per idle peer.
        ``take(ts, peer)`` is called for each chosen record and must move it
        out of ``fetch`` state (to ``flight``) before the next one is chosen."""
        self.dirty = False
        in_flight = self.in_flight
        heaps = self.heaps
        slots = self.max_peers - len(in_flight)
        if slots <= 0 or not heaps:
            return []
        cands: list[tuple[Priority, int, int, Address]] = []
        for peer in list(heaps):
            if peer not in in_flight:
                heap = self._valid_top(peer)
                if heap:
                    cands.append((heap[0][0], -len(heap), heap[0][1], peer))
        heapq.heapify(cands)
        tasks = self.tasks
        limit = self.max_keys
        plan: list[tuple[Address, tuple[Key, ...]]] = []
        while cands and slots > 0:
            prio, _, seq, peer = heapq.heappop(cands)
            if peer not in heaps:
                continue
            heap = self._valid_top(peer)
            if not heap:
                continue
            if heap[0][0] != prio or heap[0][1] != seq:  # others took its best keys
                heapq.heappush(cands, (heap[0][0], -len(heap), heap[0][1], peer))
                continue
            keys: dict[Key, None] = {}
            while heap and len(keys) < limit:
                _, s, key = heapq.heappop(heap)
                ts = tasks.get(key)
                if ts is None or ts.state != FETCH or ts.seq != s or not ts.who_has or peer not in ts.who_has:
                    continue
                ts.coming_from = peer
                take(ts, peer)
                keys[key] = None
            if not heap:
                del heaps[peer]
            if keys:
                in_flight[peer] = keys
                plan.append((peer, tuple(keys)))
                slots -= 1
        return plan
