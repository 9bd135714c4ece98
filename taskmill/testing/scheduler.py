"""The simulated scheduler: :mod:`taskmill.server.scheduler` minus sockets.

Theory of operation
-------------------
:class:`SimScheduler` does what the real scheduler shell does around the pure
:class:`~taskmill.core.scheduler.SchedulerState`, on
:mod:`~taskmill.testing.network` channels instead of streams:

* a worker's connection opens with ``register-worker``; the registration is
  refused while a connection from the same address is still open (a
  restarted worker's old connection not yet seen closing) and tried again
  once it closes; accepted, it is answered with ``worker-registered`` and
  handed to the machine (``RegisterWorker`` with the shell's stimulus id and
  the clock's ``now``);
* every batch from a worker or a client is decoded with
  :func:`~taskmill.protocol.vocabulary.decode`, filling the peer's address or
  id, a fresh stimulus id and ``now``, and handed to ``handle`` as one call
  (a client's batch is split after each big ``update-graph``, as the shell
  does); ``unregister`` and ``close-client`` end their connection;
* the commands are routed as the shell routes them: wire messages by their
  ``worker`` / ``client`` field, one batch per peer per ``handle`` call;
  ``WorkerRetired`` becomes ``Retired(worker, close)`` on that worker's
  stream, ``RetirementAborted`` and ``TaskStalled`` are recorded;
* a connection closing is ``WorkerLeft`` / ``ClientDisconnected``.

It also keeps, per client and key, the kinds of report sent since the client
last started wanting the key (:attr:`SimScheduler.reports`), which the
cluster's checks read: on a FIFO stream that is what the client is told.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from taskmill.core.resources import check_resources
from taskmill.protocol import ProtocolError
from taskmill.core.scheduler import SchedulerState
from taskmill.core.scheduler.events import (
    ClientConnected,
    ClientDisconnected,
    RetirementAborted,
    SchedulerOutput,
    TaskStalled,
    WorkerLeft,
    WorkerRetired,
)
from taskmill.protocol.vocabulary import (
    CLIENT,
    SCHEDULER,
    WORKER,
    AddKeys,
    CloseClient,
    KeysRunning,
    Message,
    MissingData,
    RegisterWorker,
    Retired,
    ScatterDone,
    TaskFinished,
    Unregister,
    UpdateGraph,
    WantKeys,
    WorkerRegistered,
    arrived,
    decode,
)
from taskmill.server.scheduler import YIELD_AFTER_TASKS
from taskmill.testing.network import Batch, Channel, Network


class ShellContractError(AssertionError):
    """A simulated shell saw a machine break its contract (a message from
    the wrong side, a task run twice at once, a function never delivered ...)."""


def from_stream(raw: Any, sender: str, receiver: str, **local: Any) -> Message:
    """A stream message decoded as the real shells decode it; in a simulation
    any problem with it (a message from the wrong side, or not a stream
    message) is a machine breaking its contract."""
    try:
        return arrived(raw, sender, receiver, **local)
    except ProtocolError as exc:
        raise ShellContractError(str(exc)) from exc


class SimScheduler:
    """The scheduler shell of a simulated cluster (see the module docstring)."""

    def __init__(self, net: Network, *, allowed_failures: int = 3, validate: bool = True) -> None:
        self.net = net
        self.clock = net.clock
        #: the pure machine
        self.state = SchedulerState(allowed_failures=allowed_failures, validate=validate)
        self._ids = itertools.count()
        #: registered worker address -> the channel to it (its open connection)
        self.streams: dict[str, Channel] = {}
        #: channel from a worker -> the channel back to it, for every open connection
        self._back: dict[Channel, Channel] = {}
        #: channel from a registered worker -> its address
        self._registered: dict[Channel, str] = {}
        #: address -> registrations refused while an old connection is open
        self._refused: dict[str, list[tuple[Channel, Batch]]] = {}
        #: channel from a worker that said ``unregister`` (it closes)
        self._leaving: set[Channel] = set()
        #: connected client id -> the channel to it
        self.clients: dict[str, Channel] = {}
        self._client_of: dict[Channel, str] = {}
        #: address -> True once retired, False when its retirement was aborted
        self.retired: dict[str, bool] = {}
        #: workers that close themselves once retired
        self.close_on_retire: set[str] = set()
        #: every ``TaskStalled`` warning, in order
        self.stalled: list[TaskStalled] = []
        #: the simulated worker registered at an address (set by the cluster),
        #: the ground truth for the checks of copies (``_copy_check``)
        self.peek: Callable[[str], Any] = lambda address: None
        self._names: dict[str, str] = {}
        #: client -> key -> kinds of report ("KeyInMemory" ...) sent since it
        #: last started wanting the key (or the key was redefined)
        self.reports: dict[str, dict[str, list[str]]] = {}

    def sid(self, op: str) -> str:
        """A fresh stimulus id, as the shell makes them."""
        return f"{op}-{next(self._ids)}"

    # ------------------------------------------------------------------ #
    # Events in, commands out
    # ------------------------------------------------------------------ #
    def handle(self, *events: Any) -> list[SchedulerOutput]:
        """Hand ``events`` to the machine in one call and route its commands."""
        if not events:
            return []
        cmds = self.state.handle(*events)
        self._track(cmds)
        self.route(cmds)
        return cmds

    def _track(self, cmds: list[SchedulerOutput]) -> None:
        """Note the terminal reports among ``cmds`` (see :attr:`reports`)."""
        reports = self.reports
        for cmd in cmds:
            if isinstance(cmd, Message) and cmd.receiver == CLIENT and not isinstance(cmd, KeysRunning):
                reports.setdefault(cmd.client, {}).setdefault(  # type: ignore[attr-defined]
                    cmd.key, []).append(type(cmd).__name__)  # type: ignore[attr-defined]

    def route(self, cmds: list[SchedulerOutput]) -> None:
        """Send the commands of one batch of events: one batch per peer."""
        to_workers: dict[str, Batch] = {}
        to_clients: dict[str, Batch] = {}
        for cmd in cmds:
            if isinstance(cmd, Message):
                if cmd.receiver == WORKER:
                    to_workers.setdefault(cmd.worker, []).append(cmd.to_wire())  # type: ignore[attr-defined]
                else:
                    to_clients.setdefault(cmd.client, []).append(cmd.to_wire())  # type: ignore[attr-defined]
                continue
            if isinstance(cmd, WorkerRetired):
                address = cmd.worker
                close = address in self.close_on_retire
                self.close_on_retire.discard(address)
                self.retired[address] = True
                to_workers.setdefault(address, []).append(Retired(address, close).to_wire())
            elif isinstance(cmd, RetirementAborted):
                self.close_on_retire.discard(cmd.worker)
                self.retired[cmd.worker] = False
            elif isinstance(cmd, TaskStalled):
                self.stalled.append(cmd)
            else:
                raise TypeError(f"scheduler shell cannot run {cmd!r}")
        send = self.net.send
        for address, batch in to_workers.items():
            ch = self.streams.get(address)
            if ch is not None:
                send(ch, batch)
        for client, batch in to_clients.items():
            ch = self.clients.get(client)
            if ch is not None:
                send(ch, batch)

    def _new_session(self, client: str, keys: Any) -> None:
        """``client`` starts wanting ``keys`` (those it does not want yet):
        their reports start afresh."""
        mine = self.reports.setdefault(client, {})
        tasks = self.state.tasks
        for key in keys:
            ts = tasks.get(key)
            if ts is None or client not in ts.who_wants:
                mine[key] = []

    def _redefined(self, keys: Any) -> None:
        """Erred ``keys`` are submitted again: their next outcome is news to
        every client that wants them."""
        tasks = self.state.tasks
        for key in keys:
            ts = tasks.get(key)
            if ts is not None and ts.state == "erred":
                for client in ts.who_wants:
                    self.reports.setdefault(client, {})[key] = []

    # ------------------------------------------------------------------ #
    # Workers
    # ------------------------------------------------------------------ #
    def accept_worker(self, up: Channel, down: Channel) -> None:
        """A worker opened a connection: ``up`` from it, ``down`` to it."""
        self._back[up] = down

    def from_worker(self, up: Channel, batch: Batch) -> None:
        """A batch arrived on a worker's connection."""
        address = self._registered.get(up)
        if address is None:
            self._register(up, batch)
            return
        net = self.net
        now = self.clock.now
        sid = self.sid
        events: list[Any] = []
        for raw in batch:
            msg = from_stream(raw, WORKER, SCHEDULER, worker=address, stimulus_id=sid(str(raw.get("op"))),
                              now=now)
            net.record("scheduler", msg)
            if type(msg) is Unregister:
                self._leaving.add(up)
                continue
            events.append(msg)
        # One machine call per message, routed together (as for clients, see
        # from_client), so the copy checks see the state each message meets.
        state = self.state
        cmds: list[SchedulerOutput] = []
        for msg in events:
            check = self._copy_check(msg, address)
            done = state.handle(msg)
            if check is not None:
                check()
            self._track(done)
            cmds += done
        self.route(cmds)

    def _copy_check(self, msg: Any, address: str) -> Callable[[], None] | None:
        """For a message about copies of keys, a check to run once the machine
        handled it: it may record a copy on the sender (``add-keys``,
        ``task-finished``) only if that worker holds it and is not about to
        drop it (no ``free-keys`` of it on the way there), and strike off a
        copy (``missing-data``) only if its holder lacks it (or failed to
        serve it, :meth:`~taskmill.testing.SimWorker.drop`).  On FIFO streams
        these messages can cross the scheduler's own: the machine must tell."""
        kind = type(msg)
        if kind is AddKeys or kind is TaskFinished:
            holder = address
            keys = tuple(msg.nbytes) if kind is AddKeys else (msg.key,)
        elif kind is MissingData:
            holder = msg.errant_worker
            keys = msg.keys
        else:
            return None
        record = self.state.workers.get(holder)
        if record is None:
            return None
        tasks = self.state.tasks
        before = {k for k in keys if (ts := tasks.get(k)) is not None and record in ts.who_has}

        def check() -> None:
            worker = self._peek(holder)
            if worker is None:
                return
            now = {k for k in keys if (ts := tasks.get(k)) is not None and record in ts.who_has}
            frees = self._queued_frees(holder)
            if kind is MissingData:
                wrong = [k for k in before - now
                         if k in worker.store and k not in worker.dropped and k not in frees]
                what = "struck off copies that exist"
            else:
                wrong = [k for k in now - before if k not in worker.store or k in frees]
                what = "recorded copies that do not exist or are being freed"
            if wrong:
                raise ShellContractError(f"on {msg.op!r} from {address} the scheduler {what}: "
                                         f"{sorted(wrong)} on {worker.name}")
        return check

    def _peek(self, address: str) -> Any:
        """The simulated worker whose connection is registered at ``address``, if alive."""
        worker = self.peek(address)
        if worker is None or address not in self.streams or worker.name != self._names.get(address):
            return None
        return worker

    def _queued_frees(self, address: str) -> set[str]:
        """Keys of the ``free-keys`` queued to ``address``, not yet delivered."""
        ch = self.streams.get(address)
        keys: set[str] = set()
        if ch is not None:
            for batch in self.net.queued(ch):
                for raw in batch:
                    if raw.get("op") == "free-keys":
                        keys.update(raw["keys"])
        return keys

    def _register(self, up: Channel, batch: Batch) -> None:
        msg = decode(batch[0], stimulus_id="", now=0.0)
        if type(msg) is not RegisterWorker or len(batch) != 1:
            raise ShellContractError(f"a worker's connection opened with {batch!r:.200}, not one register-worker")
        address = msg.worker
        if address in self.streams:  # the old connection is still open: try again once it closes
            self._refused.setdefault(address, []).append((up, batch))
            return
        check_resources(msg.resources, "worker resources", allow_zero=True)
        down = self._back[up]
        self.net.send(down, [WorkerRegistered({}).to_wire()])
        self.streams[address] = down
        self._names[address] = msg.name
        self._registered[up] = address
        self.net.record("scheduler", msg)
        self.handle(replace(msg, stimulus_id=self.sid("worker-joined"), now=self.clock.now))

    def worker_closed(self, up: Channel) -> None:
        """A worker's connection closed (it closed, or it died)."""
        down = self._back.pop(up)
        self.net.abort(down)
        address = self._registered.pop(up, None)
        leaving = up in self._leaving
        self._leaving.discard(up)
        if address is None:  # closed before it was registered
            for waiting in self._refused.values():
                waiting[:] = [(ch, b) for ch, b in waiting if ch is not up]
            return
        if self.streams.get(address) is down:
            del self.streams[address]
        reason = "it closed" if leaving else "its connection closed"
        self.handle(WorkerLeft(self.sid("worker-left"), address, reason, self.clock.now))
        for ch, batch in self._refused.pop(address, []):
            if not ch.closed:
                self.net.send_first(ch, batch)

    # ------------------------------------------------------------------ #
    # Clients
    # ------------------------------------------------------------------ #
    def accept_client(self, client: str, up: Channel, down: Channel) -> None:
        """A client connected: ``up`` from it, ``down`` to it."""
        self._client_of[up] = client
        self.clients[client] = down
        self.handle(ClientConnected(self.sid("client-connected"), client))

    def from_client(self, up: Channel, batch: Batch) -> None:
        """A batch arrived from a client."""
        client = self._client_of.get(up)
        if client is None:
            return  # it already said close-client
        groups: list[list[Any]] = [[]]
        closing = False
        now = self.clock.now
        for raw in batch:
            msg = from_stream(raw, CLIENT, SCHEDULER, client=client, stimulus_id=self.sid(str(raw.get("op"))),
                              now=now)
            self.net.record("scheduler", msg)
            kind = type(msg)
            if kind is CloseClient:
                closing = True
                continue
            if kind is UpdateGraph:
                for spec in msg.tasks:  # type: ignore[attr-defined]
                    if spec.resources:
                        check_resources(spec.resources, "task resources")
            groups[-1].append(msg)
            if kind is UpdateGraph and len(msg.tasks) >= YIELD_AFTER_TASKS:  # type: ignore[attr-defined]
                groups.append([])
        state = self.state
        for events in groups:
            if not events:
                continue
            # One machine call per message, the commands routed together as
            # the shell routes a batch's: the scheduler machine completes each
            # event (placement included) before the next, so only the stimulus
            # log's grouping differs, and the checks see where each client's
            # want of a key starts.
            cmds: list[SchedulerOutput] = []
            for ev in events:
                kind = type(ev)
                if kind is UpdateGraph:
                    self._redefined([t.key for t in ev.tasks])
                    self._new_session(client, ev.wanted)
                elif kind is ScatterDone:
                    self._redefined(ev.who_has)
                    self._new_session(client, ev.who_has)
                elif kind is WantKeys:
                    self._new_session(client, ev.keys)
                done = state.handle(ev)
                self._track(done)
                cmds += done
            self.route(cmds)
        if closing:
            self.client_closed(up)

    def client_closed(self, up: Channel) -> None:
        """A client's connection closed (``close-client``, or it vanished)."""
        client = self._client_of.pop(up, None)
        if client is None:
            return
        self.net.abort(self.clients.pop(client))
        self.handle(ClientDisconnected(self.sid("client-disconnected"), client))

    # ------------------------------------------------------------------ #
    # Requests (answered at once, as request/reply calls are)
    # ------------------------------------------------------------------ #
    def scatter_targets(self, n: int, workers: tuple[str, ...] | None = None,
                        broadcast: bool = False) -> list[list[str]]:
        """Where to put ``n`` scattered items (the ``scatter-targets`` request)."""
        if workers:
            unknown = [w for w in workers if w not in self.streams]
            if unknown:
                raise ValueError(f"scatter to unknown workers {unknown}; known: {sorted(self.streams)}")
            pool = list(workers)
        else:
            pool = (self.state.workers_for_scatter(n) if not broadcast else
                    [a for a, ws in self.state.workers.items() if not ws.retiring])
        if not pool:
            raise ValueError("no worker to scatter to")
        if broadcast:
            return [list(pool) for _ in range(n)]
        return [[w] for w, _ in zip(itertools.cycle(pool), range(n))]
