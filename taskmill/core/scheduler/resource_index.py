"""Abstract worker resources in the pure scheduler: counting what is free,
choosing a worker, and the queues of tasks waiting for resources.

Theory of operation
-------------------
A worker declares totals (``WorkerRecord.resources``, e.g. ``{"GPU": 2}``); a
task asks for amounts (``TaskRecord.resources``, a sorted tuple of pairs).  A
task with a requirement runs only on a worker whose totals cover it, and only
while enough is free there: a task holds its amounts from the moment it is
sent (``Membership.assign``) until it leaves ``processing`` for any reason
(finish, error, retry, cancel, worker death or retirement: all pass through
``Membership.unassign``), counted in ``WorkerRecord.resources_used``.  The scheduler
does the counting, so a worker is never sent more than it declared.

Requirements are strict (``allow_other_workers`` only prefers the named
workers among those with the resources free).  Such tasks never use the
shared queue or the per-worker restricted queues: tasks with the same
requirement and the same strict ``workers=`` restriction form one
:class:`ResourceGroup`, with

* a heap of its ``queued`` tasks (lazy deletion, like ``policy``'s
  heaps): any worker that can run one can run them all, so only the top
  matters.  When a worker frees a slot (``Placement.pop_for``: every task leaving
  ``processing`` frees its slot, and with it its resources) it compares the
  top of each group it could run *now* with the tops of the other queues.
  Cost per slot freed: the number of groups with queued tasks (distinct
  requirements, not tasks), and nothing for workers that declare nothing;
* the set of its ``no-worker`` tasks: no live (allowed) worker's totals
  cover the requirement.  A worker joining looks at the groups (not the
  tasks) and sends the runnable ones to be scheduled; a worker leaving turns
  the queued tasks of groups nobody else can run into ``no-worker``.  A group
  starting to wait emits one ``TaskStalled`` (the shell logs it) and every
  task's story says why.

Invariants (``validate``): ``resources_used`` is the sum over ``processing``
and within the totals; a queued task has a live worker that could run it but
no idle one with the resources free; a no-worker task has no live worker
that could run it; the indexes match the records.
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING

from taskmill.core.scheduler.policy import QueueEntry, by_locality, least_occupied, queue_live, queue_peek
from taskmill.core.resources import ResourceSpec, format_resources
from taskmill.protocol.vocabulary import Address
from taskmill.core.scheduler.records import (
    NO_WORKER,
    PROCESSING,
    QUEUED,
    Restriction,
    TaskRecord,
    WorkerRecord,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

#: Slack for float amounts (``0.1 + 0.2`` fits in ``0.3``).
EPSILON = 1e-9

#: What tasks of one group share: the requirement and the strict restriction.
GroupKey = tuple[ResourceSpec, Restriction | None]


def covers(ws: WorkerRecord, needs: ResourceSpec) -> bool:
    """Whether ``ws`` declares at least ``needs`` (free or not)."""
    totals = ws.resources
    for name, amount in needs:
        if totals.get(name, 0.0) + EPSILON < amount:
            return False
    return True


def fits(ws: WorkerRecord, needs: ResourceSpec) -> bool:
    """Whether ``needs`` are free on ``ws`` now."""
    totals, used = ws.resources, ws.resources_used
    for name, amount in needs:
        if totals.get(name, 0.0) - used.get(name, 0.0) + EPSILON < amount:
            return False
    return True


def acquire(ws: WorkerRecord, needs: ResourceSpec) -> None:
    """A task holding ``needs`` starts on ``ws``."""
    used = ws.resources_used
    for name, amount in needs:
        used[name] = used.get(name, 0.0) + amount


def release(ws: WorkerRecord, needs: ResourceSpec) -> None:
    """A task holding ``needs`` leaves ``ws``'s processing."""
    used = ws.resources_used
    for name, amount in needs:
        left = used.get(name, 0.0) - amount
        if left > EPSILON:
            used[name] = left
        else:
            used.pop(name, None)  # exactly zero again: no drift


def group_key(ts: TaskRecord) -> GroupKey:
    """The resource group of ``ts``: its requirement and strict restriction."""
    assert ts.resources is not None
    strict = ts.restrictions if ts.restrictions is not None and not ts.allow_other_workers else None
    return (ts.resources, strict)


class ResourceGroup:
    """The queued and no-worker tasks of one requirement (see module docstring)."""

    __slots__ = ("needs", "restrictions", "queue", "no_worker")

    def __init__(self, needs: ResourceSpec, restrictions: Restriction | None) -> None:
        self.needs = needs
        self.restrictions = restrictions
        self.queue: list[QueueEntry] = []
        self.no_worker: dict[TaskRecord, None] = {}

    def allows(self, ws: WorkerRecord) -> bool:
        """Whether the group's tasks may run on ``ws`` (restrictions aside from resources)."""
        return self.restrictions is None or ws.address in self.restrictions

    def __repr__(self) -> str:
        return f"<ResourceGroup {format_resources(self.needs)} queued~{len(self.queue)}>"


class ResourceIndex:
    """Live workers by declared resource, and the resource groups.

    Owns ``by_name`` (resource -> live workers declaring it) and ``groups``
    (the queued and no-worker tasks per requirement).  Invariants: a queued
    resource task has a live worker able to run it but no idle one with the
    amounts free; a no-worker one has no live worker able to run it (see
    the module docstring)."""

    def __init__(self) -> None:
        #: resource name -> live workers declaring some of it
        self.by_name: dict[str, dict[WorkerRecord, None]] = {}
        #: groups with queued (maybe only dead heap entries) or no-worker tasks
        self.groups: dict[GroupKey, ResourceGroup] = {}

    # ------------------------------------------------------------------ #
    # Workers
    # ------------------------------------------------------------------ #
    def add_worker(self, ws: WorkerRecord) -> list[TaskRecord]:
        """Index ``ws``; returns the no-worker tasks it could run."""
        runnable: list[TaskRecord] = []
        if not ws.resources:
            return runnable
        for name, amount in ws.resources.items():
            if amount > 0:
                self.by_name.setdefault(name, {})[ws] = None
        for group in self.groups.values():
            if group.no_worker and group.allows(ws) and covers(ws, group.needs):
                runnable.extend(group.no_worker)
        return runnable

    def remove_worker(self, ws: WorkerRecord, workers: dict[Address, WorkerRecord]) -> list[TaskRecord]:
        """Unindex ``ws`` (no longer in ``workers``); returns the queued tasks
        that no live worker could run any more."""
        stranded: list[TaskRecord] = []
        if not ws.resources:
            return stranded
        for name in ws.resources:
            holders = self.by_name.get(name)
            if holders is not None:
                holders.pop(ws, None)
                if not holders:
                    del self.by_name[name]
        for group in self.groups.values():
            if (group.queue and group.allows(ws) and covers(ws, group.needs)
                    and not self._able(group.needs, group.restrictions, workers)):
                stranded.extend(queue_live(group.queue))
        return stranded

    def _rarest(self, needs: ResourceSpec) -> dict[WorkerRecord, None]:
        """The live workers declaring the needed resource fewest workers declare."""
        best: dict[WorkerRecord, None] | None = None
        for name, _ in needs:
            holders = self.by_name.get(name)
            if holders is None:
                return {}
            if best is None or len(holders) < len(best):
                best = holders
        return best or {}

    def _able(self, needs: ResourceSpec, restrictions: Restriction | None,
              workers: dict[Address, WorkerRecord]) -> bool:
        if restrictions is not None:
            for addr in restrictions:
                ws = workers.get(addr)
                if ws is not None and covers(ws, needs):
                    return True
            return False
        return any(covers(ws, needs) for ws in self._rarest(needs))

    def able(self, ts: TaskRecord, workers: dict[Address, WorkerRecord]) -> bool:
        """Whether some live worker ``ts`` may use declares enough for it."""
        needs, strict = group_key(ts)
        return self._able(needs, strict, workers)

    # ------------------------------------------------------------------ #
    # Placement
    # ------------------------------------------------------------------ #
    def choose(self, ts: TaskRecord, workers: dict[Address, WorkerRecord],
               idle: dict[WorkerRecord, None]) -> WorkerRecord | None:
        """The idle worker with ``ts``'s resources free where it should run
        now: holders of its inputs first, then (``allow_other_workers``) the
        named workers, then the least occupied; None if there is none.  Looks
        at the allowed workers, or the idle workers or the workers declaring
        the rarest needed resource, whichever are fewer."""
        needs, strict = group_key(ts)
        pool: Iterable[WorkerRecord | None]
        if strict is not None:
            pool = [workers.get(addr) for addr in strict]
        else:
            declaring = self._rarest(needs)
            pool = idle if len(idle) < len(declaring) else declaring
        candidates: dict[WorkerRecord, None] = {
            ws: None for ws in pool if ws is not None and ws in idle and fits(ws, needs)}
        if not candidates:
            return None
        if strict is None and ts.restrictions is not None:  # allow_other_workers: prefer the named ones
            named = {ws: None for ws in candidates if ws.address in ts.restrictions}
            candidates = named or candidates
        if ts.dependencies:
            ws = by_locality(ts, candidates, idle)
            if ws is not None:
                return ws
        return least_occupied(candidates)

    def best_for(self, ws: WorkerRecord) -> tuple[list[QueueEntry], TaskRecord] | None:
        """The best queued resource task ``ws`` could run now (allowed,
        resources free there) and its heap; forgets groups left empty."""
        best: tuple[list[QueueEntry], TaskRecord] | None = None
        empty: list[GroupKey] = []
        for key, group in self.groups.items():
            top = queue_peek(group.queue) if group.queue else None
            if top is None:
                if not group.no_worker:
                    empty.append(key)
                continue
            if best is not None and best[1].sort_key <= top.sort_key:
                continue
            if group.allows(ws) and fits(ws, group.needs):
                best = (group.queue, top)
        for key in empty:
            del self.groups[key]
        return best

    # ------------------------------------------------------------------ #
    # Queued and no-worker tasks
    # ------------------------------------------------------------------ #
    def _group(self, ts: TaskRecord) -> ResourceGroup:
        key = group_key(ts)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = ResourceGroup(*key)
        return group

    def enqueue(self, ts: TaskRecord) -> None:
        """``ts`` (given its new ``queue_epoch``) becomes queued."""
        group = self._group(ts)
        group.no_worker.pop(ts, None)
        heapq.heappush(group.queue, (ts.sort_key, ts.queue_epoch, ts))

    def stall(self, ts: TaskRecord, workers: dict[Address, WorkerRecord]) -> tuple[str, bool]:
        """``ts`` becomes no-worker: why, and whether its group just started
        waiting (so the wait deserves a warning)."""
        group = self._group(ts)
        first = not group.no_worker
        group.no_worker[ts] = None
        return self.why_unrunnable(group, workers), first

    def unindex(self, ts: TaskRecord) -> None:
        """``ts`` leaves queued or no-worker (its heap entry dies lazily)."""
        key = group_key(ts)
        group = self.groups.get(key)
        if group is not None and group.no_worker.pop(ts, 0) is None:
            if not group.no_worker and queue_peek(group.queue) is None:
                del self.groups[key]

    def clear_tasks(self) -> None:
        """Every task is gone (restart); workers stay indexed."""
        self.groups.clear()

    @staticmethod
    def why_unrunnable(group: ResourceGroup, workers: dict[Address, WorkerRecord]) -> str:
        """What is missing for ``group``'s tasks, for stories and logs."""
        needs = format_resources(group.needs)
        if group.restrictions is not None:
            pool = [ws for a in group.restrictions if (ws := workers.get(a)) is not None]
            where = f"none of its allowed workers {sorted(group.restrictions)}"
            if not pool:
                return f"needs resources {needs} but {where} is alive"
        else:
            pool = list(workers.values())
            where = "no live worker"
        short = []
        for name, amount in group.needs:
            most = max((ws.resources.get(name, 0.0) for ws in pool), default=0.0)
            if most <= 0:
                short.append(f"none declares {name}")
            elif most + EPSILON < amount:
                short.append(f"at most {name}={most:g} on one worker")
        detail = "; ".join(short) or "no single worker declares all of them"
        return f"needs resources {needs} but {where} declares enough ({detail})"

    # ------------------------------------------------------------------ #
    # Validation
    # ------------------------------------------------------------------ #
    def task_problem(self, ts: TaskRecord, workers: dict[Address, WorkerRecord],
                     idle: dict[WorkerRecord, None], queued_in: dict[TaskRecord, ResourceGroup]) -> str:
        """A broken invariant of resource task ``ts`` ('' if none).
        ``queued_in``: :meth:`live_queued`."""
        key = group_key(ts)
        group = self.groups.get(key)
        state = ts.state
        if (state == NO_WORKER) != (group is not None and ts in group.no_worker):
            return "resource no-worker index disagrees with its state"
        if state == QUEUED:
            if queued_in.get(ts) is not group:
                return "queued but not in the queue of its resource group"
            if not self._able(key[0], key[1], workers):
                return "queued although no live worker declares its resources"
            assert group is not None
            for ws in idle:
                if group.allows(ws) and fits(ws, key[0]):
                    return f"queued while idle worker {ws.address} has its resources free"
        elif state == NO_WORKER and self._able(key[0], key[1], workers):
            return "no-worker although a live worker declares its resources"
        elif state == PROCESSING:
            assert ts.processing_on is not None
            if not covers(ts.processing_on, key[0]):
                return f"processing on {ts.processing_on.address}, which lacks its resources"
        return ""

    def live_queued(self) -> dict[TaskRecord, ResourceGroup]:
        """Every live queued task, by its group."""
        return {ts: group for group in self.groups.values() for ts in queue_live(group.queue)}

    def worker_problem(self, ws: WorkerRecord) -> str:
        """A broken resource invariant of live worker ``ws`` ('' if none)."""
        held: dict[str, float] = {}
        for ts in ws.processing:
            for name, amount in ts.resources or ():
                held[name] = held.get(name, 0.0) + amount
        used = ws.resources_used
        for name in {**held, **used}:  # ordered, so the same problem is reported in every process
            if not math.isclose(held.get(name, 0.0), used.get(name, 0.0), abs_tol=1e-6):
                return (f"resources_used[{name!r}]={used.get(name, 0.0)} but its processing "
                        f"tasks hold {held.get(name, 0.0)}")
            if used.get(name, 0.0) > ws.resources.get(name, 0.0) + EPSILON:
                return f"uses {name}={used[name]:g} of the {ws.resources.get(name, 0.0):g} it declared"
        for name, amount in ws.resources.items():
            if (amount > 0) != (ws in self.by_name.get(name, {})):
                return f"resource index by name wrong for {name!r}"
        return ""

    def index_problem(self, workers: dict[Address, WorkerRecord]) -> str:
        """A broken invariant of the indexes themselves ('' if none)."""
        for name, holders in self.by_name.items():
            for ws in holders:
                if workers.get(ws.address) is not ws or ws.resources.get(name, 0.0) <= 0:
                    return f"{ws.address} indexed under resource {name!r}"
        for key, group in self.groups.items():
            for ts in group.no_worker:
                if ts.state != NO_WORKER or ts.resources is None or group_key(ts) != key:
                    return f"task {ts.key!r} ({ts.state}) in the no-worker set of {group!r}"
        return ""
