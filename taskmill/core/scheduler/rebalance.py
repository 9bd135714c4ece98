"""Rebalancing data between workers, for the pure scheduler: ``Executor.rebalance``.

Theory of operation
-------------------
``RebalanceRequested(keys, workers)`` evens out the bytes of data the workers
of a pool hold (all open workers, or those named; all keys in memory, or
those named), moving as few bytes as it takes rather than reshuffling:

* **Plan.**  With ``mean`` the pool's average bytes held, a worker above
  ``ceiling = mean * (1 + TOLERANCE / 2)`` is a sender (a pool already that
  even is left alone).  Senders are taken fullest first; each offers its keys
  largest first, down to the mean, to the emptiest worker of the pool that
  lacks them.  A key moves only if the recipient then stays under the
  ceiling and under the sender, so no move makes things worse and every
  worker ends within ``TOLERANCE`` of the mean when the keys are small enough
  to allow it (one 1 GB key on a 2-worker pool stays where it is).
  The plan is made on the bytes the scheduler knows (``WorkerRecord.nbytes``),
  updated as it goes.
* **Never losing a key.**  A move is a copy first: the recipient fetches it
  (``Replicas.request``, the path of ``replicate`` and retirement), and only
  once it reports the copy (``AddKeys``) does the sender drop its own
  (``FreeKeys``, and the scheduler forgets that replica).  A copy that does not
  come (the recipient declined or died, the key left memory) abandons the move
  and the sender keeps its data.
* **Safe keys only.**  A key that a task processing on its sender needs,
  that is already being copied or moved, or that is an actor's (its object
  lives only on its worker: moving the key would free it) is left where it is.

``moving`` holds the moves in flight (key -> (sender, recipient)); the shell
waits until it is empty (:mod:`taskmill.server.replication`).
:meth:`Rebalancer.progress` settles moves at the end of every event while any
are in flight.
"""

from __future__ import annotations

from taskmill.core.scheduler.events import RebalanceRequested
from taskmill.core.scheduler.membership import Membership
from taskmill.core.scheduler.records import MEMORY, TaskRecord, WorkerRecord
from taskmill.core.scheduler.replicas import Replicas
from taskmill.core.scheduler.step import Step
from taskmill.core.scheduler.transitions import TaskMachine
from taskmill.protocol.vocabulary import Key

__all__ = ["TOLERANCE", "Rebalancer"]

#: workers end within this fraction of the pool's mean bytes (when keys allow)
TOLERANCE = 0.1


class Rebalancer:
    """Plans moves of data between workers and settles them (module docstring)."""

    def __init__(self, machine: TaskMachine, membership: Membership, replicas: Replicas) -> None:
        self.machine = machine
        self.membership = membership
        self.replicas = replicas
        #: moves in flight: key -> (sender, recipient)
        self.moving: dict[TaskRecord, tuple[WorkerRecord, WorkerRecord]] = {}

    def plan(self, step: Step, ev: RebalanceRequested) -> None:
        workers = self.membership.workers
        if ev.workers is None:
            pool = [ws for ws in workers.values() if ws.open]
        else:
            pool = [workers[a] for a in dict.fromkeys(ev.workers) if a in workers and workers[a].open]
        if len(pool) < 2:
            step.note("", "", "", "rebalance: fewer than two open workers, nothing to move")
            return
        only: set[Key] | None = None if ev.keys is None else set(ev.keys)
        load = {ws: ws.nbytes for ws in pool}
        mean = sum(load.values()) / len(pool)
        ceiling = mean * (1 + TOLERANCE / 2)
        for sender in sorted(pool, key=lambda ws: (-load[ws], ws.address)):
            if load[sender] <= ceiling:
                break
            for ts in self._movable(sender, only):
                if load[sender] <= mean:
                    break
                recipient = min((ws for ws in pool if ws not in ts.who_has and ws not in ts.acquiring_on),
                                key=lambda ws: (load[ws], ws.address), default=None)
                if (recipient is None or load[recipient] + ts.nbytes > ceiling
                        or load[recipient] + ts.nbytes > load[sender] - ts.nbytes):
                    continue  # it would overfill the recipient, or only swap the imbalance
                self.moving[ts] = (sender, recipient)
                self.replicas.request(step, ts, recipient)
                step.note(ts.key, MEMORY, MEMORY, f"rebalance: moves from {sender.address} "
                                                  f"to {recipient.address}")
                load[sender] -= ts.nbytes
                load[recipient] += ts.nbytes

    def _movable(self, sender: WorkerRecord, only: set[Key] | None) -> list[TaskRecord]:
        """The keys ``sender`` may give away, largest first."""
        moving = self.moving
        keys = [ts for ts in sender.has_what
                if ts.state == MEMORY and ts.nbytes > 0 and ts not in moving and not ts.acquiring_on
                and (only is None or ts.key in only) and not _is_actor(ts)
                and not any(d.processing_on is sender for d in ts.dependents)]
        keys.sort(key=lambda ts: (-ts.nbytes, ts.key))
        return keys

    def progress(self, step: Step) -> None:
        """Settle the moves whose copy arrived (the sender drops its own) or
        will not come (the move is abandoned)."""
        for ts, (sender, recipient) in list(self.moving.items()):
            if recipient in ts.who_has:
                del self.moving[ts]
                if sender in ts.who_has and ts.state == MEMORY:
                    self.machine.remove_replica(step, ts, sender)
                    step.free(sender, ts.key)
                    step.note(ts.key, MEMORY, MEMORY, f"rebalance: moved from {sender.address} "
                                                      f"to {recipient.address}")
            elif recipient not in ts.acquiring_on or ts.state != MEMORY:
                del self.moving[ts]
                step.note(ts.key, ts.state, ts.state, f"rebalance: the move to {recipient.address} "
                                                      "was abandoned (no copy came)")


def _is_actor(ts: TaskRecord) -> bool:
    return ts.actor
