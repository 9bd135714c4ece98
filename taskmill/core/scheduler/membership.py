"""Worker membership for the pure scheduler: who is in the cluster, and who
has room for a task.

Theory of operation
-------------------
:class:`Membership` owns the table of live workers (``workers``, by address)
and the ``idle`` index: the live workers with a free slot that are neither
paused nor retiring, the only ones placement looks at for new tasks.  It
takes workers in (``join``, from ``RegisterWorker``) and out (``remove``, for
``WorkerLeft``, a re-registration and retirement), pauses and resumes them,
and does the slot accounting of task assignment (``assign``/``unassign``):
``WorkerRecord.used``, ``processing`` and the resources held there.  What a
departure means for the tasks (rescheduling, lost data) is the task
machine's business (``TaskMachine.worker_lost``); what it means for copies
and retirement is ``Replicas``'.  Nothing here changes a task's state.

Invariants (checked by ``taskmill.core.scheduler.validate``):

* every record in ``workers`` is alive and stored under its address; a
  removed record is never alive again (a worker coming back at the same
  address gets a new record);
* ``ws in idle``  <=>  ``ws.used < ws.capacity`` and ``ws.open`` (neither
  paused nor retiring);
* ``ws.used`` is the sum of ``slot_cost`` over ``ws.processing``, and
  ``ws.resources_used`` the sum of their ``resources``.  A task that
  seceded (``secede()`` inside it) has ``slot_cost`` 0 until it rejoins: it
  stays processing, holding its resources but no slot.

Cost: ``assign``/``unassign`` are O(1) (plus the task's resource names);
the queries are O(workers) and only serve the shell and clients.
"""

from __future__ import annotations

from typing import Any

from taskmill.core.scheduler.policy import worker_capacity
from taskmill.core.scheduler.records import TaskRecord, WorkerRecord
from taskmill.core.scheduler.resource_index import acquire, release
from taskmill.core.scheduler.step import Step
from taskmill.protocol.vocabulary import Address, Heartbeat, Key, RegisterWorker


def by_load(workers: list[WorkerRecord]) -> list[WorkerRecord]:
    """Least bytes held per thread first, then least busy."""
    return sorted(workers, key=lambda ws: (ws.nbytes / max(1, ws.nthreads), ws.used / ws.capacity))


class Membership:
    """Worker membership: join, leave, pause, and the slot accounting.

    Owns ``workers`` (address -> live record) and ``idle``.  Invariants:
    records in ``workers`` are alive; ``ws in idle`` iff ``ws.used <
    ws.capacity`` and ``ws.open``; ``ws.used`` and ``ws.resources_used`` are
    the sums over ``ws.processing`` (see the module docstring)."""

    def __init__(self) -> None:
        #: address -> the live worker there
        self.workers: dict[Address, WorkerRecord] = {}
        #: live, open workers with a free slot
        self.idle: dict[WorkerRecord, None] = {}

    # ------------------------------------------------------------------ #
    # Joining, leaving, pausing
    # ------------------------------------------------------------------ #
    def join(self, ev: RegisterWorker) -> WorkerRecord:
        """A new worker process at ``ev.worker`` (not a known address)."""
        ws = WorkerRecord(
            ev.worker,
            ev.nthreads,
            ev.memory_limit,
            worker_capacity(ev.nthreads),
            ev.nanny,
            ev.name,
            ev.now,
            dict(ev.resources or {}),
        )
        ws.incarnation = ev.incarnation
        self.workers[ev.worker] = ws
        self.idle[ws] = None
        return ws

    def remove(self, address: Address) -> WorkerRecord:
        """The worker at ``address`` is gone; returns its (now dead) record."""
        ws = self.workers.pop(address)
        ws.alive = False
        self.idle.pop(ws, None)
        return ws

    def close(self, ws: WorkerRecord) -> None:
        """``ws`` just stopped being open (paused, retiring): no new task goes there."""
        self.idle.pop(ws, None)

    def reopen(self, step: Step, ws: WorkerRecord) -> None:
        """``ws`` may be open again: back in ``idle`` (and filled) if it has room."""
        if ws.alive and ws.open and ws.used < ws.capacity:
            self.idle[ws] = None
            step.freed[ws] = None

    def pause(self, step: Step, ws: WorkerRecord, paused: bool) -> bool:
        """``ws`` is (no longer) short of memory; returns whether that changed."""
        if ws.paused == paused:
            return False
        ws.paused = paused
        step.note("", "", "", f"worker {ws.address} {'paused' if paused else 'resumed'}")
        if paused:
            self.close(ws)
        else:
            self.reopen(step, ws)
        return True

    def sender(self, step: Step, worker: Address, seen: int, what: str,
               key: Key | None = None, ts: TaskRecord | None = None) -> WorkerRecord | None:
        """The live worker a message (``what``, about ``key``) came from, with the
        ``seen`` it carries acknowledged (see "Crossed messages" in ``state``);
        None, with a story entry, when no such worker is live."""
        ws = self.workers.get(worker)
        if ws is None:
            reason = f"{what} from unknown worker {worker}"
            if key is None:
                step.note("", "", "", "ignored: " + reason)
            else:
                step.ignore(key, ts, reason)
            return None
        ws.acknowledge(seen)
        return ws

    def heartbeat(self, ev: Heartbeat) -> None:
        """``ev.worker`` is alive, uses ``ev.memory`` bytes and has handled
        the scheduler's messages up to ``ev.seen``."""
        ws = self.workers.get(ev.worker)
        if ws is not None:
            ws.memory = ev.memory
            ws.last_seen = ev.now
            ws.acknowledge(ev.seen)

    def clear_tasks(self) -> None:
        """Every task is gone (restart): nothing is processing or held anywhere."""
        for ws in self.workers.values():
            ws.processing.clear()
            ws.has_what.clear()
            ws.acquiring.clear()
            ws.resources_used.clear()
            ws.used = 0
            ws.nbytes = 0
            if ws.open:
                self.idle[ws] = None

    # ------------------------------------------------------------------ #
    # Slots
    # ------------------------------------------------------------------ #
    def assign(self, ts: TaskRecord, ws: WorkerRecord, cost: int) -> None:
        """``ts`` goes to ``ws``, taking ``cost`` slot units and its resources."""
        ts.processing_on = ws
        ts.slot_cost = cost
        ws.used += cost
        ws.processing[ts] = None
        if ts.resources is not None:
            acquire(ws, ts.resources)
        if ws.used >= ws.capacity:
            self.idle.pop(ws, None)

    def unassign(self, step: Step, ts: TaskRecord) -> WorkerRecord:
        """Take ``ts`` off the worker processing it; that slot frees up."""
        ws = ts.processing_on
        assert ws is not None
        del ws.processing[ts]
        ws.used -= ts.slot_cost
        ts.slot_cost = 0
        if ts.resources is not None:
            release(ws, ts.resources)
        ts.processing_on = None
        ts.running = False
        if ws.alive and ws.used < ws.capacity and ws.open:
            self.idle[ws] = None
            step.freed[ws] = None
        return ws

    def secede(self, step: Step, ts: TaskRecord) -> bool:
        """``ts`` left its worker's thread count (``secede()``): its slot frees
        up while it stays processing there.  Returns whether that changed."""
        ws = ts.processing_on
        assert ws is not None
        if not ts.slot_cost:
            return False
        ws.used -= ts.slot_cost
        ts.slot_cost = 0
        self.reopen(step, ws)
        return True

    def rejoin(self, ts: TaskRecord, cost: int) -> bool:
        """The seceded ``ts`` counts on its worker again (``rejoin()``), for
        ``cost`` slot units.  Returns whether that changed."""
        ws = ts.processing_on
        assert ws is not None
        if ts.slot_cost:
            return False
        ts.slot_cost = cost
        ws.used += cost
        if ws.used >= ws.capacity:
            self.idle.pop(ws, None)
        return True

    # ------------------------------------------------------------------ #
    # Queries (read-only)
    # ------------------------------------------------------------------ #
    def open_by_load(self) -> list[WorkerRecord]:
        """The open workers, least loaded first (where copies go)."""
        return by_load([ws for ws in self.workers.values() if ws.open])

    def has_what(self) -> dict[Address, list[Key]]:
        """The keys each worker holds."""
        return {a: [ts.key for ts in ws.has_what] for a, ws in self.workers.items()}

    def nthreads(self) -> dict[Address, int]:
        """The threads of each worker."""
        return {a: ws.nthreads for a, ws in self.workers.items()}

    def workers_info(self) -> dict[Address, dict[str, Any]]:
        """What the shell and the dashboard show of each worker."""
        return {
            a: {
                "nthreads": ws.nthreads,
                "memory_limit": ws.memory_limit,
                "nanny": ws.nanny,
                "name": ws.name,
                "processing": len(ws.processing),
                "in_memory": len(ws.has_what),
                "nbytes": ws.nbytes,
                "memory": ws.memory,
                "last_seen": ws.last_seen,
                "paused": ws.paused,
                "retiring": ws.retiring,
                "resources": dict(ws.resources),
                "resources_used": dict(ws.resources_used),
            }
            for a, ws in self.workers.items()
        }

    def for_scatter(self, n: int) -> list[Address]:
        """Where to put ``n`` scattered items: spread over the workers, least
        loaded (bytes held per thread, then tasks in flight) first."""
        if n <= 0 or not self.workers:
            return []
        order = self.open_by_load() or by_load(list(self.workers.values()))
        return [order[i % len(order)].address for i in range(n)]

    def to_retire(self, n: int) -> list[Address]:
        """The ``n`` workers (not already retiring) cheapest to retire: least
        data held first."""
        candidates = [ws for ws in self.workers.values() if not ws.retiring]
        candidates.sort(key=lambda ws: (ws.nbytes, len(ws.has_what), len(ws.processing)))
        return [ws.address for ws in candidates[: max(0, n)]]
