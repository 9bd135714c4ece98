"""Clients of the pure scheduler: who wants which key, and what they are told.

Theory of operation
-------------------
:class:`ClientWants` owns the client records (``clients``) and keeps both ends
of each *want*: ``client in ts.who_wants``  <=>  ``ts in
clients[client].wants``.  Wants are the references from outside that keep a
task needed; starting or ending one recommends a ``CHECK`` of the task (on
the event's :class:`~taskmill.core.scheduler.step.Step`), which the task
machine's reference counting acts on.  Nothing here changes a task's state.

The report methods make what wanting clients are told: ``KeyInMemory``
when a key reaches memory, ``KeyErred`` when it fails, ``KeyLost`` when its
data is gone without lineage, ``KeyCancelled`` on cancel, and ``KeysRunning``
(not a terminal report, so not remembered in ``who_wants``) when its worker
reports the call started, or when a call reported running goes back to
waiting (its worker died, a retry); a client that starts wanting a key
whose call runs is told at once.  ``who_wants``
remembers the last terminal report each client got (``"memory"``,
``"erred"``, ``"lost"`` or ``""``) and a report is made only when it differs:
no duplicates, and a key recomputed after its data was lost is not reported
again.  The ``FIRE_AND_FORGET`` pseudo-client is never told: a key it wants
that is done goes on ``Step.forgotten_done`` and is released after the
event.  Reports are returned (``Made``: None, one command or a list), so a
transition returns the commands it makes.

Most tasks are wanted by one client: such a task's ``who_wants`` is that
client's shared one-entry map for the report it got
(``ClientRecord.alone``, frozen), not a dict of its own, so every change
of a task's ``who_wants`` goes through this class, which replaces a
shared map instead of changing it; a second client gives the task a dict.
"""

from __future__ import annotations

from typing import Any, Iterable

from taskmill.core.scheduler.records import (
    EMPTY,
    ERRED,
    FIRE_AND_FORGET,
    LOST_DATA,
    MEMORY,
    PROCESSING,
    RELEASED,
    ClientRecord,
    TaskRecord,
)
from taskmill.core.scheduler.step import CHECK, Made, Step, also
from taskmill.protocol.vocabulary import Key, KeyCancelled, KeyErred, KeyInMemory, KeyLost, KeysRunning


class ClientWants:
    """Clients and what they want.

    Owns ``clients`` (id -> record) and both ends of each want.  Invariant:
    ``client in ts.who_wants`` iff ``ts in clients[client].wants`` (see the
    module docstring)."""

    def __init__(self) -> None:
        #: client id -> its record, for every client that connected or wants something
        self.clients: dict[str, ClientRecord] = {}

    def get(self, client: str) -> ClientRecord:
        """The record of ``client``, made if new."""
        cs = self.clients.get(client)
        if cs is None:
            cs = self.clients[client] = ClientRecord(client)
        return cs

    @staticmethod
    def link(cs: ClientRecord, ts: TaskRecord) -> bool:
        """Record that ``cs`` wants ``ts`` (both ends); whether that is new."""
        wants = ts.who_wants
        client = cs.client
        if client in wants:
            return False
        if not wants:
            ts.who_wants = cs.alone("")
        elif type(wants) is dict:
            wants[client] = ""
        else:  # another client's shared map: a dict of its own from now on
            ts.who_wants = {**wants, client: ""}
        cs.wants[ts] = None
        return True

    def _tell(self, ts: TaskRecord, client: str, last: str) -> None:
        """Remember ``last`` as the report ``client`` got about ``ts``."""
        wants = ts.who_wants
        if type(wants) is dict:
            wants[client] = last
        else:  # the client's shared one-entry map (records.Frozen)
            ts.who_wants = self.clients[client].alone(last)

    def renew(self, ts: TaskRecord) -> None:
        """``ts`` is computed again: its outcome is news to every wanting client."""
        for client in ts.who_wants:
            self._tell(ts, client, "")

    def want(self, step: Step, cs: ClientRecord, ts: TaskRecord) -> None:
        """``cs`` wants ``ts``: report its outcome at once if it has one,
        compute it if it is only lineage."""
        self.link(cs, ts)
        state = ts.state
        if state == MEMORY or state == ERRED:
            step.emit(self.report_current(step, ts))
        elif (state == PROCESSING and ts.running and not ts.who_wants[cs.client]
              and cs.client != FIRE_AND_FORGET):
            step.cmds.append(KeysRunning(step.stimulus_id, cs.client, (ts.key,)))
        elif state == RELEASED:
            step.recs.append((ts, CHECK, None))

    def want_keys(self, step: Step, client: str, keys: tuple[Key, ...],
                  tasks: dict[Key, TaskRecord]) -> None:
        """``client`` wants ``keys`` (``WantKeys``, ``FireAndForget``)."""
        cs = self.get(client)
        for key in keys:
            ts = tasks.get(key)
            if ts is None:
                unknown_wanted(step, client, key)
            else:
                self.want(step, cs, ts)

    def release(self, step: Step, cs: ClientRecord, ts: TaskRecord) -> None:
        """``cs`` no longer wants ``ts``."""
        if cs.wants.pop(ts, 0) is None:
            wants = ts.who_wants
            if type(wants) is dict and len(wants) > 1:
                del wants[cs.client]
            else:  # it was the only client
                ts.who_wants = EMPTY
            step.recs.append((ts, CHECK, None))

    def release_keys(self, step: Step, client: str, keys: tuple[Key, ...],
                     tasks: dict[Key, TaskRecord]) -> None:
        """``client`` released ``keys`` (``ReleaseKeys``)."""
        cs = self.clients.get(client)
        for key in keys:
            ts = tasks.get(key)
            if ts is None or cs is None or ts not in cs.wants:
                step.ignore(key, ts, f"client {client} released a key it did not want")
                continue
            self.release(step, cs, ts)

    def disconnected(self, step: Step, client: str) -> None:
        """``client`` is gone: everything it wanted is released."""
        cs = self.clients.pop(client, None)
        if cs is None:
            return
        for ts in list(cs.wants):
            self.release(step, cs, ts)

    def cancelled(self, step: Step, ts: TaskRecord, reason: str) -> None:
        """``ts`` is cancelled (or the cluster restarted): every wanting
        client is told and stops wanting it."""
        for client in ts.who_wants:
            step.cmds.append(KeyCancelled(step.stimulus_id, client, ts.key, reason))
            cs = self.clients.get(client)
            if cs is not None:
                cs.wants.pop(ts, None)
        ts.who_wants = EMPTY

    def forget(self, ts: TaskRecord) -> None:
        """``ts`` is forgotten while still wanted (a forced forget: cancel):
        no client wants it any more."""
        for client in ts.who_wants:
            cs = self.clients.get(client)
            if cs is not None:
                cs.wants.pop(ts, None)
        ts.who_wants = EMPTY

    def report_memory(self, step: Step, ts: TaskRecord, value: Any = None) -> Made:
        """Tell the wanting clients not told yet that ``ts`` is in memory
        (``value``: its small result, when the worker sent it along)."""
        if not ts.who_wants:
            return None
        made: Made = None
        who = tuple([ws.address for ws in ts.who_has])
        for client, last in ts.who_wants.items():
            if last != MEMORY:
                self._tell(ts, client, MEMORY)
                if client == FIRE_AND_FORGET:
                    step.fire_and_forget_done(ts.key)
                    continue
                cmd = KeyInMemory(step.stimulus_id, client, ts.key, who, ts.type_name, value)
                made = cmd if made is None else also(made, cmd)
        return made

    def report_erred(self, step: Step, ts: TaskRecord) -> Made:
        """Tell the wanting clients not told yet that ``ts`` erred (or was lost)."""
        info = ts.error
        assert info is not None
        lost = info.error_type == LOST_DATA
        kind = "lost" if lost else ERRED
        made: Made = None
        for client, last in ts.who_wants.items():
            if last == kind:
                continue
            self._tell(ts, client, kind)
            if client == FIRE_AND_FORGET:
                step.fire_and_forget_done(ts.key)
            elif lost:
                made = also(made, KeyLost(step.stimulus_id, client, ts.key, info.exception_text))
            else:
                made = also(made, KeyErred(
                    step.stimulus_id,
                    client,
                    ts.key,
                    info.exception,
                    info.traceback,
                    info.exception_text,
                    info.worker,
                    info.error_type,
                ))
        return made

    def report_current(self, step: Step, ts: TaskRecord) -> Made:
        """Report ``ts``'s outcome (if it has one) to wanting clients not yet told."""
        if ts.state == MEMORY:
            return self.report_memory(step, ts)
        if ts.state == ERRED:
            return self.report_erred(step, ts)
        return None


def unknown_wanted(step: Step, client: str, key: Key) -> None:
    """``client`` wants ``key``, which is not known: it is told so."""
    step.ignore(key, None, f"client {client} wants an unknown key")
    if client == FIRE_AND_FORGET:
        return
    step.cmds.append(
        KeyLost(
            step.stimulus_id,
            client,
            key,
            f"key {key!r} is not known to the scheduler "
            "(never submitted, released and forgotten, or data that no worker brought "
            "back to this restarted scheduler)",
        )
    )


def report_running(step: Step, tasks: Iterable[TaskRecord], running: bool) -> None:
    """Tell the clients wanting ``tasks`` that their calls started running
    (or went back to waiting): one ``KeysRunning`` per client.  Not those
    told an outcome already (a lost result recomputed is no news to them)."""
    per_client: dict[str, list[Key]] = {}
    for ts in tasks:
        for client, last in ts.who_wants.items():
            if not last and client != FIRE_AND_FORGET:
                per_client.setdefault(client, []).append(ts.key)
    for client, keys in per_client.items():
        step.cmds.append(KeysRunning(step.stimulus_id, client, tuple(keys), running))
