"""Graphs coming in and going away: ``UpdateGraph``, ``CancelKeys``, ``RestartRequested``.

Theory of operation
-------------------
A client's ``UpdateGraph`` carries new task specs and the keys it wants.
:meth:`GraphIntake.submitted` makes a record for every key not known yet
(a known key in memory, processing or waiting is reused: same key, same
result; an erred one is redefined and run again), links dependencies both
ways, and links the client to the keys it wants.  A dependency that no
task provides and no client holds errs its dependent at once
(``MissingDependencyError``) instead of leaving it waiting forever.  Keys a
re-registering worker still holds (a restarted scheduler) are adopted from
:class:`~taskmill.core.scheduler.held_keys.HeldKeys` before anything is
computed again.

``cancel`` takes the cancelled keys with all their dependents, reports
``KeyCancelled`` to every wanting client, and forgets them; ``force`` also
tells the workers running them to abandon the calls.  ``restart`` forgets
every task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskmill.core.scheduler.clients import ClientWants, unknown_wanted
from taskmill.core.scheduler.events import RestartRequested
from taskmill.core.scheduler.held_keys import HeldKeys
from taskmill.core.scheduler.placement import Placement
from taskmill.core.scheduler.records import (
    EMPTY,
    ERRED,
    FORGOTTEN,
    MISSING_DEPENDENCY,
    RELEASED,
    ErrorInfo,
    TaskRecord,
    WorkerRecord,
    link_dependent,
)
from taskmill.core.scheduler.membership import Membership
from taskmill.core.scheduler.replicas import Replicas
from taskmill.core.scheduler.step import CHECK, Step
from taskmill.core.scheduler.transitions import TaskMachine
from taskmill.protocol.vocabulary import AbandonTasks, CancelKeys, Key, TaskSpec, UpdateGraph

__all__ = ["GraphIntake"]


class GraphIntake:
    """Where submitted graphs become task records, and cancelled ones go."""

    def __init__(self, machine: TaskMachine, wants: ClientWants, held: HeldKeys,
                 membership: Membership, placement: Placement, replicas: Replicas) -> None:
        self.machine = machine
        self.wants = wants
        self.held = held
        self.membership = membership
        self.placement = placement
        self.replicas = replicas

    def handlers(self) -> dict[type, Callable[[Step, Any], None]]:
        """The events this part handles, for ``SchedulerState``'s table."""
        return {UpdateGraph: self.submitted, CancelKeys: self.cancel,
                RestartRequested: self.restart}

    def submitted(self, step: Step, ev: UpdateGraph) -> None:
        machine = self.machine
        tasks = machine.tasks
        if ev.funcs:
            machine.functions.update(ev.funcs)
        cs = self.wants.get(ev.client)
        added: list[tuple[TaskRecord, TaskSpec]] = []
        seen: set[Key] = set()  # membership only
        for nt in ev.tasks:
            key = nt.key
            if key in seen:
                continue
            seen.add(key)
            ts = tasks.get(key)
            if ts is None:
                ts = machine.new_record(step, key, nt)
            elif ts.state == ERRED:
                machine.transition(step, ts, RELEASED)
                machine.redefine(step, ts, nt)
            else:
                continue  # known and fine: reuse it
            added.append((ts, nt))
        missing: list[tuple[TaskRecord, Key]] = []
        for ts, nt in added:
            for dep in nt.dependencies:
                dts = tasks.get(dep) or self.held.adopt(step, dep)
                if dts is None or dts is ts:
                    missing.append((ts, dep))
                    continue
                if ts.dependencies is EMPTY:
                    ts.dependencies = {}
                ts.dependencies[dts] = None
                link_dependent(dts, ts)
        link = self.wants.link
        for key in ev.wanted:
            ts = tasks.get(key) or self.held.adopt(step, key)
            if ts is None:
                unknown_wanted(step, ev.client, key)
            elif ts.state == RELEASED:  # new ones get their CHECK below
                if link(cs, ts) and ts.dependents:  # old lineage: not in ``added``
                    step.recs.append((ts, CHECK, None))
            else:
                self.wants.want(step, cs, ts)
        for ts, dep in missing:
            if ts.state == RELEASED:
                machine.transition(
                    step,
                    ts,
                    ERRED,
                    ErrorInfo(
                        None,
                        None,
                        f"task {ts.key!r} depends on key {dep!r}, which no task "
                        "provides and no client holds",
                        "",
                        MISSING_DEPENDENCY,
                    ),
                )
        check, claim = machine.check, self.held.claim
        for ts, _ in added:
            if ts.state == RELEASED and not claim(step, ts):
                check(step, ts)

    def cancel(self, step: Step, ev: CancelKeys) -> None:
        machine = self.machine
        closure: dict[TaskRecord, None] = {}
        stack: list[TaskRecord] = []
        for key in ev.keys:
            ts = machine.tasks.get(key)
            if ts is None:
                step.ignore(key, ts, f"client {ev.client} cancelled an unknown key")
            elif ts not in closure:
                closure[ts] = None
                stack.append(ts)
        while stack:
            ts = stack.pop()
            for dts in ts.dependents:
                if dts not in closure:
                    closure[dts] = None
                    stack.append(dts)
        reason = f"cancelled by client {ev.client}"
        abandon: dict[WorkerRecord, list[Key]] = {}
        for ts in closure:
            self.wants.cancelled(step, ts, reason)
            if ev.force and ts.processing_on is not None:
                abandon.setdefault(ts.processing_on, []).append(ts.key)
        for ts in closure:
            machine.transition(step, ts, RELEASED)
        for ts in closure:
            machine.transition(step, ts, FORGOTTEN)
        for ws, keys in abandon.items():  # after the frees: the worker has cancelled them then
            step.flush_frees(ws)
            step.cmds.append(AbandonTasks(step.stimulus_id, ws.address, tuple(keys)))

    def restart(self, step: Step, ev: RestartRequested) -> None:
        tasks = self.machine.tasks
        for key, ts in tasks.items():
            self.wants.cancelled(step, ts, ev.reason)
            step.note(key, ts.state, FORGOTTEN, "restart")
            ts.state = FORGOTTEN
        tasks.clear()
        self.replicas.clear_tasks(step, ev.reason)
        self.membership.clear_tasks()
        self.placement.clear_tasks()
