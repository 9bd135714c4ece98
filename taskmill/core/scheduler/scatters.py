"""Scattered data for the pure scheduler: a client's word reconciled with the workers'.

Theory of operation
-------------------
A client scatters in two moves: it puts the values on workers (``put-data``,
a request to each), then tells the scheduler on its stream which keys it
wants, their sizes and types and where it put them (``ScatterDone``).  The
client can only name *addresses*, and the process at an address may have
been restarted in between; and a client that vanishes after ``put-data``
never sends ``ScatterDone`` at all.  So each worker tells the scheduler
itself, on its own stream, before it answers ``put-data``
(``KeysScattered``, tagged with the client); and it answers with its
*incarnation*, a token new at each registration (``RegisterWorker``), which
the client passes on in ``ScatterDone.incarnations``.  The two words travel
on different connections and reach the scheduler in either order;
:class:`Scatters` reconciles them:

* ``ScatterDone`` credits, for each key, the workers that reported it
  already, and those registered now as the incarnation that took the data
  (a worker's report follows its registration on its stream, and its removal
  follows both, so a credited worker holds the data).  A restarted or
  reconnected worker at that address is a new incarnation: not credited.
  The incarnations that have not reported yet are *awaited*, remembering
  whether they were credited.
* ``KeysScattered`` that the client's ``ScatterDone`` awaits: nothing to do
  for a credited worker (any change since, a free or a loss, went through the
  ordinary paths); a worker that was not credited (it registered after the
  ``ScatterDone``) is added as a holder if the key is in memory, else its copy
  is freed.
* ``KeysScattered`` that comes first is *reported*: kept for the client's
  ``ScatterDone``.  If the client disconnects first (it never sends it), the
  copies are freed.  From a client already gone: freed at once.
* A copy is never freed on a worker the scheduler counts as a holder of the
  key, has it computing, or asked for a copy of it.

Both tables are per client and emptied as the words meet, when a worker
leaves (its entries go) and when the client disconnects; they hold only
scatters under way.  An incarnation the ``ScatterDone`` names that is not
registered is awaited only if it did not leave already (the last
``DEPARTED`` that left are remembered).
"""

from __future__ import annotations

from typing import Any

from taskmill.core.scheduler.clients import ClientWants
from taskmill.core.scheduler.membership import Membership
from taskmill.core.scheduler.records import ERRED, LOST_DATA, MEMORY, RELEASED, ErrorInfo, TaskRecord, WorkerRecord
from taskmill.core.scheduler.step import Step
from taskmill.core.scheduler.transitions import TaskMachine
from taskmill.protocol.vocabulary import Address, Key, KeysScattered, ScatterDone

#: one incarnation of a worker, as a client names it: (address, token)
Incarnation = tuple[Address, str]
#: how many departed incarnations are remembered (one a client names after it
#: left is not awaited; an older one is awaited until the client leaves)
DEPARTED = 1024


class Scatters:
    """Scatters under way (see the module docstring)."""

    def __init__(self, machine: TaskMachine, membership: Membership, wants: ClientWants) -> None:
        self.machine = machine
        self.membership = membership
        self.wants = wants
        #: client -> key -> workers that reported it before the client's ``ScatterDone``
        self.reported: dict[str, dict[Key, dict[WorkerRecord, None]]] = {}
        #: client -> key -> incarnations its ``ScatterDone`` named that have not
        #: reported yet -> whether they were credited
        self.awaited: dict[str, dict[Key, dict[Incarnation, bool]]] = {}
        #: the last ``DEPARTED`` incarnations that left: never awaited
        self.departed: dict[Incarnation, None] = {}

    # ------------------------------------------------------------------ #
    # The client's word
    # ------------------------------------------------------------------ #
    def scatter_done(self, step: Step, ev: ScatterDone) -> None:
        machine = self.machine
        workers = self.membership.workers
        cs = self.wants.get(ev.client)
        reported = self.reported.get(ev.client)
        incarnations = ev.incarnations or {}
        for key, addrs in ev.who_has.items():
            came = reported.pop(key, None) if reported else None
            holders: dict[WorkerRecord, None] = dict(came) if came else {}
            seen = {(ws.address, ws.incarnation) for ws in holders}  # membership only
            expected: dict[Incarnation, bool] = {}
            for address in addrs:
                who = (address, incarnations.get(address, ""))
                if who in seen:
                    continue
                ws = workers.get(address)
                if ws is not None and ws.incarnation == who[1]:
                    holders[ws] = None
                    expected[who] = True
                elif who not in self.departed:  # it may register yet, and report
                    expected[who] = False
            if expected:
                self.awaited.setdefault(ev.client, {}).setdefault(key, {}).update(expected)
            nbytes = ev.nbytes.get(key, -1)
            type_name = ev.type_names.get(key, "") if ev.type_names else ""
            ts = machine.tasks.get(key)
            if ts is None:
                ts = machine.new_record(step, key, None)
            elif ts.state == ERRED:
                machine.transition(step, ts, RELEASED)
                machine.redefine(step, ts, None)
            self.wants.link(cs, ts)
            if ts.state == MEMORY:
                for ws in holders:
                    machine.add_replica(step, ts, ws)
                step.emit(self.wants.report_current(step, ts))
            elif holders:
                machine.transition(step, ts, RELEASED)
                machine.transition(step, ts, MEMORY, (list(holders), nbytes, type_name))
            else:
                machine.transition(step, ts, ERRED, ErrorInfo(
                    None, None,
                    f"key {key!r} was scattered to workers that are gone: {list(addrs)}", "",
                    LOST_DATA))
        if reported is not None and not reported:
            del self.reported[ev.client]

    def client_gone(self, step: Step, client: str) -> None:
        """``client`` disconnected: no ``ScatterDone`` will come; free what
        its ``put-data`` left on workers that reported it."""
        self.awaited.pop(client, None)
        reported = self.reported.pop(client, None)
        if reported:
            tasks = self.machine.tasks
            for key, holders in reported.items():
                ts = tasks.get(key)
                for ws in holders:
                    _free_unless_needed(step, ts, ws, key, f"scattered by {client}, which is gone")

    # ------------------------------------------------------------------ #
    # The workers' word
    # ------------------------------------------------------------------ #
    def keys_scattered(self, step: Step, ev: KeysScattered) -> None:
        ws = self.membership.workers.get(ev.worker)
        if ws is None:
            step.note("", "", "", f"ignored: KeysScattered from unknown worker {ev.worker}")
            return
        tasks = self.machine.tasks
        client = ev.client
        connected = client in self.wants.clients
        awaited = self.awaited.get(client) if connected else None
        me = (ws.address, ws.incarnation)
        for key in ev.nbytes:
            ts = tasks.get(key)
            expected = awaited.get(key) if awaited else None
            if expected is not None and me in expected:  # after the client's ScatterDone
                assert awaited is not None
                credited = expected.pop(me)
                if not expected:
                    del awaited[key]
                    if not awaited:
                        del self.awaited[client]
                if credited:
                    step.note(key, "", "", f"{ev.worker} confirms the scatter of {client}")
                elif ts is not None and ts.state == MEMORY:
                    step.note(key, MEMORY, MEMORY, f"{ev.worker} holds a copy scattered by {client}")
                    self.machine.add_replica(step, ts, ws)
                else:
                    _free_unless_needed(step, ts, ws, key, f"a late scatter of {client} to {ev.worker}")
            elif connected:  # before the client's ScatterDone: keep it for it
                self.reported.setdefault(client, {}).setdefault(key, {})[ws] = None
                step.note(key, "", "", f"{ev.worker} holds data scattered by {client}")
            else:
                _free_unless_needed(step, ts, ws, key, f"scattered by {client}, which is gone")

    def worker_gone(self, ws: WorkerRecord) -> None:
        """``ws`` left: it holds nothing to credit, and reports no more."""
        me = (ws.address, ws.incarnation)
        _drop(self.reported, ws)
        _drop(self.awaited, me)
        departed = self.departed
        departed[me] = None
        if len(departed) > DEPARTED:
            del departed[next(iter(departed))]


def _drop(table: dict[str, dict[Key, dict[Any, Any]]], entry: object) -> None:
    """Remove ``entry`` from every key of every client of ``table``, and what it leaves empty."""
    for client, keys in list(table.items()):
        for key, entries in list(keys.items()):
            if entry in entries:
                del entries[entry]
                if not entries:
                    del keys[key]
        if not keys:
            del table[client]


def _free_unless_needed(step: Step, ts: TaskRecord | None, ws: WorkerRecord, key: Key, why: str) -> None:
    """Free ``ws``'s copy of ``key``, unless the scheduler counts on it there."""
    if ts is not None and (ws in ts.who_has or ts.processing_on is ws or ws in ts.acquiring_on):
        step.ignore(key, ts, f"{why}: kept, {ws.address} holds or makes it for the scheduler")
        return
    step.ignore(key, ts, f"{why}: freeing it on {ws.address}")
    step.free(ws, key)
