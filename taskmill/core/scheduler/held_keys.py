"""Data that workers bring back when they register again: how a restarted
scheduler rebuilds its picture of the cluster without an external store.

Theory of operation
-------------------
The scheduler's state is not precious: the data lives on the workers, the
intent in the clients.  A worker that loses its scheduler keeps its data and,
when it registers again (``RegisterWorker.held``: key -> bytes), says what it
holds.  A client that loses its scheduler keeps the specs of the tasks whose
futures it still holds and, once connected again, submits them again
(``UpdateGraph``).  The two words reach a new scheduler in either order;
:class:`HeldKeys` makes them meet:

* **A held key the scheduler knows** (it survived, or a client re-submitted
  first): in memory already, the worker is one more holder; waiting,
  queued, no-worker or processing elsewhere, the computation stops (its
  worker is told to drop it) and the key is in memory on the newcomer,
  which its waiting dependents and wanting clients hear at once; released
  but still wanted (transiently) likewise; otherwise (released and
  unneeded, erred) the copy is freed.
* **A held key it does not know** is *unclaimed*: kept, with its holders
  and the time it arrived, until a client claims it.  A re-submitted task
  with that key (``claim``) goes straight to memory there instead of
  running; a wanted key without a spec (scattered data) is adopted
  (``adopt``).  A holder that leaves is struck off; a key left with no holder
  is forgotten.  What nobody claims within ``grace`` seconds (measured on the
  heartbeats' clock) is freed on its holders: its client never came back.

Nothing here touches I/O; the scheduler state calls it from its handlers
(``RegisterWorker``, ``UpdateGraph``, ``WorkerLeft``, ``Heartbeat``).
Invariant: every unclaimed key is unknown to the task machine (a key gets a
record only through ``claim``/``adopt``, which take it out of the table), and
each of its holders is alive.

Cost: O(keys held) per registration, O(1) per claim, amortised O(1) per
expired key (the table is kept in arrival order).
"""

from __future__ import annotations

from taskmill.core.scheduler.membership import Membership
from taskmill.core.scheduler.records import ACTIVE_STATES, MEMORY, RELEASED, TaskRecord, WorkerRecord
from taskmill.core.scheduler.step import Step
from taskmill.core.scheduler.transitions import TaskMachine
from taskmill.protocol.vocabulary import Key


class HeldKeys:
    """Keys that re-registering workers hold and no client has claimed yet
    (see the module docstring)."""

    def __init__(self, machine: TaskMachine, membership: Membership, grace: float) -> None:
        self.machine = machine
        self.membership = membership
        #: seconds an unclaimed key is kept
        self.grace = grace
        #: key -> holder -> bytes, in arrival order
        self.unclaimed: dict[Key, dict[WorkerRecord, int]] = {}
        #: key -> when it first arrived (event time), same order
        self.arrived: dict[Key, float] = {}
        #: worker -> the unclaimed keys it holds
        self.by_worker: dict[WorkerRecord, set[Key]] = {}

    def worker_joined(self, step: Step, ws: WorkerRecord, held: dict[Key, int], now: float) -> None:
        """``ws`` registered holding ``held`` (key -> bytes)."""
        machine = self.machine
        tasks = machine.tasks
        for key, nbytes in held.items():
            ts = tasks.get(key)
            if ts is None:
                if key not in self.unclaimed:
                    self.unclaimed[key] = {}
                    self.arrived[key] = now
                self.unclaimed[key][ws] = nbytes
                self.by_worker.setdefault(ws, set()).add(key)
                step.note(key, "", "", f"{ws.address} holds it: kept for a client to claim")
            elif ts.state == MEMORY:
                if ts.nbytes < 0 <= nbytes:
                    machine.learn_size(ts, nbytes)
                machine.add_replica(step, ts, ws)
                step.note(key, MEMORY, MEMORY, f"{ws.address} holds a copy since before it registered")
            elif ts.state in ACTIVE_STATES or (ts.state == RELEASED and (ts.who_wants or ts.waiters)):
                step.note(key, ts.state, MEMORY, f"{ws.address} holds it: no need to compute it")
                machine.transition(step, ts, RELEASED)
                machine.transition(step, ts, MEMORY, ([ws], nbytes, ""))
            else:
                step.ignore(key, ts, f"{ws.address} holds an unneeded copy: freeing it")
                step.free(ws, key)

    def claim(self, step: Step, ts: TaskRecord) -> bool:
        """The new, released ``ts`` was submitted: if workers hold its data,
        it is in memory there (and True is returned)."""
        holders = self._take(ts.key)
        if not holders:
            return False
        nbytes = max(holders.values())
        step.note(ts.key, RELEASED, MEMORY, "claimed: held by workers that registered again")
        self.machine.transition(step, ts, MEMORY, (list(holders), nbytes, ""))
        return True

    def adopt(self, step: Step, key: Key) -> TaskRecord | None:
        """A client wants the unknown ``key`` without a spec (scattered data):
        a record in memory on the workers holding it, or None if none does."""
        if key not in self.unclaimed:
            return None
        ts = self.machine.new_record(step, key, None)
        self.claim(step, ts)
        return ts

    def _take(self, key: Key) -> dict[WorkerRecord, int] | None:
        holders = self.unclaimed.pop(key, None)
        if holders is None:
            return None
        del self.arrived[key]
        for ws in holders:
            keys = self.by_worker[ws]
            keys.discard(key)
            if not keys:
                del self.by_worker[ws]
        return holders

    def worker_gone(self, ws: WorkerRecord) -> None:
        """``ws`` left: it holds nothing any more."""
        for key in self.by_worker.pop(ws, ()):
            holders = self.unclaimed[key]
            del holders[ws]
            if not holders:
                del self.unclaimed[key]
                del self.arrived[key]

    def tick(self, step: Step, now: float) -> None:
        """Free the keys nobody claimed within ``grace`` seconds of ``now``."""
        arrived = self.arrived
        while arrived:
            key, when = next(iter(arrived.items()))
            if now - when < self.grace:
                return
            for ws in self._take(key) or ():
                step.free(ws, key)
            step.note(key, "", "", f"freed: no client claimed it within {self.grace:g}s")
