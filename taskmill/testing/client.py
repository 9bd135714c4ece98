"""The simulated client: what :mod:`taskmill.client.session` sends and hears.

Theory of operation
-------------------
:class:`SimClient` speaks the client's side of the protocol on simulated
channels: ``update-graph`` (each function token sent once per client, as the
session does), ``release-keys``, ``want-keys``, ``fire-and-forget``,
``cancel-keys``, ``scatter-done`` after putting data on workers, and
``close-client``.  It keeps every report the scheduler sends it, decoded
through the vocabulary, so a test reads what the client was told
(:meth:`SimClient.outcome`, :meth:`SimClient.reports_for`), whether it
believes a key's call runs (:attr:`SimClient.running`, from ``keys-running``
as the session keeps it) and the value it would get
(:meth:`SimClient.result`: the small result that came with the report, else
the value read from a worker holding the key, as ``gather`` does).

Sending only queues a batch on the client's channel: nothing happens until
the cluster steps (:meth:`~taskmill.testing.SimCluster.run_until_idle`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from taskmill.protocol.vocabulary import (
    CLIENT,
    SCHEDULER,
    CancelKeys,
    CloseClient,
    FireAndForget,
    KeyErred,
    KeyInMemory,
    KeysRunning,
    Message,
    ReleaseKeys,
    ScatterDone,
    UpdateGraph,
    WantKeys,
)
from taskmill.testing.behaviour import SimTask, TaskBook, func_payload
from taskmill.testing.network import Batch, Channel, Network
from taskmill.testing.scheduler import SimScheduler, from_stream
from taskmill.testing.worker import SimWorker

#: what :meth:`SimClient.outcome` says for each kind of report
OUTCOMES = {"KeyInMemory": "memory", "KeyErred": "erred", "KeyLost": "lost",
            "KeyCancelled": "cancelled"}


class SimClient:
    """One simulated client connection (see the module docstring)."""

    def __init__(self, client_id: str, *, net: Network, book: TaskBook, scheduler: SimScheduler,
                 peers: dict[str, SimWorker]) -> None:
        self.id = client_id
        self.net = net
        self.book = book
        self.scheduler = scheduler
        self.peers = peers
        #: keys it holds futures for, in the order it started holding them
        self.wanted: dict[str, None] = {}
        #: every report it was told, in order
        self.reports: list[Message] = []
        #: key -> its reports, in order
        self.told: dict[str, list[Message]] = {}
        #: key -> whether its call runs, as the client was last told (a
        #: terminal report ends it; releasing the key forgets it)
        self.running: dict[str, bool] = {}
        #: every ``keys-running`` report, in order
        self.running_reports: list[KeysRunning] = []
        self._funcs_sent: set[str] = set()
        self.connected = True
        self.up: Channel | None = None
        self.down: Channel | None = None

    def __repr__(self) -> str:
        return f"<SimClient {self.id}: {len(self.wanted)} keys wanted, {len(self.reports)} reports>"

    def connect(self, up: Channel, down: Channel) -> None:
        """Its stream to the scheduler (``up``) and back (``down``)."""
        self.up, self.down = up, down

    def _send(self, *msgs: Message) -> None:
        if not self.connected or self.up is None:
            raise RuntimeError(f"client {self.id} is closed")
        self.net.send(self.up, [m.to_wire() for m in msgs])

    # ------------------------------------------------------------------ #
    # What a client sends
    # ------------------------------------------------------------------ #
    def submit(self, *tasks: SimTask, wanted: Iterable[str] | None = None) -> list[str]:
        """Submit ``tasks`` (dependencies first, as the client sends them) in
        one ``update-graph``; hold futures for ``wanted`` (default: every
        task).  Returns the wanted keys."""
        book = self.book
        for task in tasks:
            book.define(task)
        keys = [t.key for t in tasks] if wanted is None else list(wanted)
        funcs = {}
        for task in tasks:
            token = task.func_token
            if token not in self._funcs_sent:
                self._funcs_sent.add(token)
                funcs[token] = func_payload(token)
        for key in keys:
            self.wanted[key] = None
        self._send(UpdateGraph("", self.id, tuple(t.spec() for t in tasks), tuple(keys),
                               funcs or None))
        return keys

    def release(self, *keys: str) -> None:
        """Drop the futures of ``keys``."""
        for key in keys:
            self.wanted.pop(key, None)
            self.running.pop(key, None)
        self._send(ReleaseKeys("", self.id, tuple(keys)))

    def want(self, *keys: str) -> None:
        """Hold futures for existing ``keys`` (e.g. unpickled ones)."""
        for key in keys:
            self.wanted[key] = None
        self._send(WantKeys("", self.id, tuple(keys)))

    def cancel(self, *keys: str, force: bool = False) -> None:
        """Cancel ``keys`` and their dependents (``force``: abandon their running calls)."""
        self._send(CancelKeys("", self.id, tuple(keys), force))

    def fire_and_forget(self, *keys: str) -> None:
        """Compute ``keys`` even once every client released them."""
        self._send(FireAndForget("", self.id, tuple(keys)))

    def scatter(self, data: Mapping[str, Any], *, workers: Iterable[str] | None = None,
                broadcast: bool = False, nbytes: int = 8) -> list[str]:
        """Put ``data`` (key -> value) on workers (chosen as the scheduler
        chooses, or among ``workers``), then tell the scheduler
        (``scatter-done``, with the incarnation each ``put-data`` answered
        with).  A worker that is down or not registered yet takes nothing (the
        real worker waits for its registration before it answers).  Returns
        the keys, now wanted."""
        keys = list(data)
        targets = self.scheduler.scatter_targets(len(keys), tuple(workers) if workers else None,
                                                 broadcast)
        who_has: dict[str, tuple[str, ...]] = {}
        incarnations: dict[str, str] = {}
        for key, where in zip(keys, targets):
            self.book.scatter(key, data[key], nbytes)
            held = []
            for address in where:
                worker = self.peers.get(address)
                if worker is not None and worker.alive and worker.registered:
                    incarnations[address] = worker.put_data({key: data[key]}, {key: nbytes}, self.id)
                    held.append(address)
            who_has[key] = tuple(held)
            self.wanted[key] = None
        self._send(ScatterDone("", self.id, who_has, {k: nbytes for k in keys},
                               {k: type(data[k]).__name__ for k in keys}, incarnations))
        return keys

    def close(self) -> None:
        """Leave gracefully: ``close-client``, then close the stream."""
        if not self.connected:
            return
        self._send(CloseClient())
        self.connected = False
        if self.up is not None:
            self.net.close(self.up)

    def disconnect(self) -> None:
        """Vanish: what was not yet sent is lost; the scheduler sees the
        connection close."""
        if not self.connected:
            return
        self.connected = False
        if self.up is not None:
            self.net.close(self.up, lose_queued=True)

    # ------------------------------------------------------------------ #
    # What it hears
    # ------------------------------------------------------------------ #
    def from_scheduler(self, ch: Channel, batch: Batch) -> None:
        """A batch of reports arrived."""
        if not self.connected:
            return
        for raw in batch:
            msg = from_stream(raw, SCHEDULER, CLIENT, client=self.id, stimulus_id="")
            self.net.record(self.id, msg)
            if isinstance(msg, KeysRunning):
                self.running_reports.append(msg)
                for key in msg.keys:
                    if key in self.wanted:  # the session drops reports of keys it released
                        self.running[key] = msg.running
                continue
            self.reports.append(msg)
            self.told.setdefault(msg.key, []).append(msg)  # type: ignore[attr-defined]
            self.running.pop(msg.key, None)  # type: ignore[attr-defined]

    def reports_for(self, key: str) -> list[Message]:
        """Every report about ``key``, in order."""
        return list(self.told.get(key, ()))

    def last_report(self, key: str) -> Message | None:
        """The latest report about ``key``, or None."""
        told = self.told.get(key)
        return told[-1] if told else None

    def outcome(self, key: str) -> str | None:
        """What it was last told of ``key``: "memory", "erred", "lost",
        "cancelled", or None (nothing yet)."""
        last = self.last_report(key)
        return None if last is None else OUTCOMES[type(last).__name__]

    def result(self, key: str) -> Any:
        """The value of ``key`` as ``Future.result()`` gets it: the small
        result that came with ``key-in-memory``, else read from a worker
        holding it.  Raises ``LookupError`` if it was not reported in memory
        or no holder can serve it, ``RuntimeError`` with the error if it erred."""
        last = self.last_report(key)
        if isinstance(last, KeyErred):
            raise RuntimeError(f"{key!r} erred: {last.exception_text}")
        if not isinstance(last, KeyInMemory):
            raise LookupError(f"{key!r} was not reported in memory to {self.id} (last report: {last!r})")
        if last.value is not None:
            return last.value.deserialize()
        holders = list(last.who_has) + self.scheduler.state.who_has([key])[key]
        for address in holders:
            worker = self.peers.get(address)
            if worker is not None and worker.alive and key in worker.store:
                return worker.store[key]
        raise LookupError(f"no worker can serve {key!r} (holders named: {holders})")
