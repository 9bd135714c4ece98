"""The scheduler shell: sockets around the pure
:class:`~taskmill.core.scheduler.state.SchedulerState`.

Theory of operation
-------------------
* Clients and workers each keep one long-lived stream
  (``register-client`` / ``register-worker``).  Every batch of messages read
  from a stream is decoded through :mod:`taskmill.protocol.vocabulary` (the
  stream's peer and a fresh stimulus id filled in) into the typed messages
  the state machine takes as they are; ``_handle`` feeds them to it and routes
  the wire messages it returns by their ``worker`` or ``client`` field, all
  through ``BatchedSend``: one ``send`` per peer per batch of events, written
  at once when the stream is idle, so a tick produces at most two writes per
  peer.  The shell knows no op by name but the few it acts on itself
  (``close-client``, ``unregister``, heartbeat figures for the dashboard).
* An exception from the state machine is a bug: it is logged and kept in
  ``errors`` with the machine's stimulus log written out; under
  ``$TASKMILL_STRICT`` (the test suite) the scheduler closes instead of
  serving on with half-applied state.
* A client on the scheduler's own event loop (the Executor of an embedded
  cluster) skips the bytes: ``connect_local_client`` gives it a
  :mod:`~taskmill.comm.local` link (reports leave at the end of the loop's
  turn), whose batches go through the same ``_client_events`` as a socket's.
* Short requests (``who-has``, ``nthreads``, ``scatter-targets``,
  ``restart``, ``upload-file`` ...) use the request/reply convention.
* The scheduler never unpickles user data: functions, arguments, results
  and exceptions pass through as opaque ``Serialized`` payloads (the one
  exception: ``run-on-scheduler``, a call the user sent to run here).  The state
  machine keeps functions by token, so each is received once and sent once
  per worker.
* Plugins (:mod:`taskmill.server.scheduler_plugins`): a joining worker gets
  the worker plugins before the state machine hears of it; scheduler
  plugins' hooks are called after ``handle`` only while one overrides them.
* A worker whose stream closes, or from which nothing (not even a
  heartbeat) arrives for ``heartbeat_timeout`` seconds (option
  ``scheduler.worker-ttl``, :mod:`taskmill.core.liveness`), is removed
  (``WorkerLeft``); the state machine reschedules or recomputes what it had.
  The scheduler sends each worker a ``scheduler-heartbeat`` every second
  unless something else went on its stream since the last round (any message
  is a sign of life to the worker; with a thousand busy workers these were a
  thousand writes a second), so that a worker cut off from it notices as
  well, and tells the others
  (``worker-removed``), so that their fetches from it stop waiting.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from dataclasses import replace
from collections.abc import Sequence
from typing import Any

from taskmill import config, config_checks, timeouts
from taskmill.comm import BatchedSend, CommClosedError
from taskmill.comm.local import LocalEnd, local_link
from taskmill.core.scheduler import events as ev
from taskmill.core.resources import check_resources, format_resources
from taskmill.core.liveness import HEARTBEAT_INTERVAL, Liveness
from taskmill.core.scheduler.adaptive import recommend
from taskmill.core.scheduler.no_workers import NoWorkersClock
from taskmill.core.scheduler.events import SchedulerInput
from taskmill.core.scheduler.state import SchedulerState
from taskmill.dashboard import service as dashboard
from taskmill.dashboard.monitor import SchedulerMonitor
from taskmill.protocol import ProtocolError, SerializationError, serialize
from taskmill.protocol.vocabulary import (
    CLIENT,
    SCHEDULER,
    WORKER,
    ClientRegistered,
    CloseClient,
    Executing,
    HasWhat,
    Heartbeat,
    Message,
    NoWorkers,
    NThreads,
    PerformanceData,
    RegisterClient,
    RegisterWorker,
    RegistrationRefused,
    Replicate,
    DumpClusterState,
    DumpWorkerState,
    Rebalance,
    Restart,
    RestartWorker,
    RestartWorkers,
    RetireWorkers,
    AdaptiveTarget,
    RunningKeys,
    RunOnScheduler,
    ScatterTargets,
    SchedulerHeartbeat,
    SchedulerInfo,
    SchedulerLogs,
    Story,
    TaskErred,
    TaskFinished,
    TaskStream,
    Unregister,
    UpdateGraph,
    UploadFile,
    WhoHas,
    WorkerExited,
    WorkerRegistered,
    WorkerRemoved,
    WorkerGone,
    arrived,
)
from taskmill import cluster_state
from taskmill.server.node import Node, Status, call_with_node
from taskmill.server import runtime
from taskmill.server.runtime import HeapFreezer
from taskmill.server.replication import ReplicaRequests
from taskmill.server.scheduler_plugins import SchedulerPlugins
from taskmill.server.locks import LockServer
from taskmill.server.shared_values import SharedValuesShell
from taskmill.security import Security, scheduler_started, scheduler_stopped

logger = logging.getLogger("taskmill.scheduler")

NANNY_REPORT_WAIT = 1.0  # seconds to wait for a nanny's word on why its worker died
#: a client message adding at least this many tasks lets other streams in before the next one
YIELD_AFTER_TASKS = 100


class Scheduler(Node):
    """The central scheduler server."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 8786, validate: bool = False,
                 heartbeat_timeout: float | None = None, allowed_failures: int | None = None,
                 dashboard_port: int | None = None, preload: Sequence[str] = (),
                 security: Security | None = None, dashboard_later: bool = False) -> None:
        super().__init__("scheduler", security)
        self.host, self.port = host, port
        self.id = f"scheduler-{uuid.uuid4().hex[:12]}"
        if allowed_failures is None:  # how many workers may die running a task before it errs
            allowed_failures = config.read("scheduler.allowed-failures", config_checks.count)
        self.state = SchedulerState(allowed_failures=allowed_failures, validate=validate,
                                    held_keys_grace=timeouts.HELD_GRACE.get(),
                                    bandwidth=config.read("scheduler.bandwidth", config_checks.size),
                                    look_ahead=config.read("scheduler.look-ahead", config_checks.boolean))
        if heartbeat_timeout is None:  # seconds of silence after which a worker is removed
            heartbeat_timeout = config.read("scheduler.worker-ttl", config_checks.seconds)
        self.heartbeat_timeout = heartbeat_timeout
        #: when each worker was last heard from
        self.liveness: Liveness[str] = Liveness(heartbeat_timeout, self._check_interval)
        #: how long tasks have waited with no worker at all (warnings, the no-workers timeout)
        self.no_workers_clock = NoWorkersClock(
            config.read("scheduler.no-workers-timeout", config_checks.duration))
        self.worker_streams: dict[str, BatchedSend] = {}
        self.worker_comms: dict[str, Any] = {}
        self.worker_extra: dict[str, dict[str, Any]] = {}
        self.client_streams: dict[str, BatchedSend | LocalEnd] = {}
        self.uploads: dict[str, bytes] = {}
        self.exit_reasons: dict[str, str] = {}
        self._exit_reported: dict[str, asyncio.Event] = {}
        self.inproc_address = ""
        self._stimulus = itertools.count()
        self._workers_changed = asyncio.Condition()
        # diagnostics (taskmill.dashboard): a cheap recorder, always on; the web
        # dashboard only when ``dashboard_port`` is not None (0: any free port)
        self.monitor = SchedulerMonitor()
        self.heap_freezer = HeapFreezer()
        self._gc_tuned = False  # see runtime.embedded_scheduler_started
        self.dashboard_port = dashboard_port
        #: the owner starts the dashboard (``start_dashboard``), e.g. once its workers are up
        self._dashboard_later = dashboard_later
        self.replicas = ReplicaRequests(self.state, self._handle, self._sid)
        self.dashboard: Any = None
        #: plugins (``Executor.register_plugin``) and ``--preload`` modules
        self.plugins = SchedulerPlugins(self, preload)
        self._dashboard_starting: asyncio.Task[None] | None = None
        self.serve({
            RegisterClient: self._register_client,
            RegisterWorker: self._register_worker,
            WhoHas: lambda msg, comm: self.state.who_has(msg.keys),
            HasWhat: lambda msg, comm: self.state.has_what(),
            NThreads: lambda msg, comm: self.state.nthreads(),
            RunningKeys: self._running_keys,
            SchedulerInfo: self._scheduler_info,
            ScatterTargets: self._scatter_targets,
            Restart: self._restart,
            RestartWorkers: self._restart_workers,
            DumpClusterState: self._dump_cluster_state,
            UploadFile: self._upload_file,
            WorkerExited: self._worker_exited,
            Replicate: self.replicas.replicate,
            Rebalance: self.replicas.rebalance,
            RetireWorkers: self.replicas.retire,
            AdaptiveTarget: self._adaptive_target,
            Story: lambda msg, comm: [list(e) for k in msg.keys for e in self.state.story(k)],
            TaskStream: lambda msg, comm: dashboard.task_stream(self, msg.start, msg.stop),
            PerformanceData: lambda msg, comm: dashboard.performance_data(self, msg.start, msg.stop),
            RunOnScheduler: self._run_on_scheduler,
            SchedulerLogs: lambda msg, comm: self.log_ring.recent(msg.n),
        })
        self.locks = LockServer(self.client_streams.__contains__, timeouts.LEASE.get())
        self.serve(self.locks.handlers())
        self.shared_values = SharedValuesShell(self.serve, self._handle, self._sid)  # Queue, Variable, datasets
        # one namespace for the primitives: a name is one kind's, whichever machine holds it
        self.locks.machine.taken_elsewhere = self.shared_values.machine.kind_of
        self.shared_values.machine.taken_elsewhere = self.locks.machine.kind_of

    async def start(self) -> Scheduler:
        await self.listen(f"tcp://{self.host}:{self.port}")
        scheduler_started(self.address, self.security)  # for Executor(address) in this process
        # clients in this process (an embedded cluster's Executor) skip the sockets
        self.inproc_address = await self.listen("inproc://")
        self.status = Status.running
        await self.plugins.start()
        runtime.embedded_scheduler_started()
        self._gc_tuned = True
        self.spawn(self._check_heartbeats(), "heartbeat-check")
        if config.read("scheduler.work-stealing", config_checks.boolean):
            self.spawn(self._steal_periodically(
                config.read("scheduler.work-stealing-interval", config_checks.seconds)),
                "work-stealing")
        if not self._dashboard_later:  # starts while workers join (it imports aiohttp)
            self.start_dashboard()
        logger.info("scheduler at %s", self.address)
        return self

    async def _run_on_scheduler(self, msg: RunOnScheduler, comm: Any) -> Any:
        """``Executor.run_on_scheduler``: the user's function on this loop
        (it blocks the scheduler while it runs, as in dask.distributed), given
        this object as ``scheduler=`` / ``dask_scheduler=`` when it asks."""
        fn, args, kwargs = msg.call.deserialize()
        result = await call_with_node(fn, args, kwargs, self, ("scheduler", "dask_scheduler"))
        try:
            return serialize(result)
        except SerializationError as exc:
            raise SerializationError(
                f"run_on_scheduler: the result of {getattr(fn, '__qualname__', fn)!s}() cannot be "
                f"sent back to the client: {exc}") from None

    def start_dashboard(self) -> None:
        """Start serving the dashboard in the background (once; nothing
        without a ``dashboard_port``): at start, or when the owner says so
        (``dashboard_later``; an embedded cluster does once its workers are
        up: importing aiohttp would take a core from their start)."""
        if (self.dashboard_port is not None and self._dashboard_starting is None
                and self.status is Status.running):
            self._dashboard_starting = self.spawn(self._start_dashboard(), "dashboard-start")

    async def _start_dashboard(self) -> None:
        assert self.dashboard_port is not None
        self.dashboard = await dashboard.start_dashboard(self, self.host, self.dashboard_port)

    async def dashboard_ready(self) -> str | None:
        """Wait until the dashboard (if any) is up; its URL or None."""
        self.start_dashboard()  # asked for before the owner started it
        if self._dashboard_starting is not None:
            await asyncio.shield(self._dashboard_starting)
        return self.dashboard_link

    @property
    def dashboard_link(self) -> str | None:
        """Where the owner opens the dashboard, or None when it is not running:
        with a token, a fresh one-time login link each time it is read."""
        return self.dashboard.login_link() if self.dashboard is not None else None

    @property
    def dashboard_url(self) -> str | None:
        """The dashboard's plain URL (no login in it), or None."""
        return self.dashboard.url if self.dashboard is not None else None

    async def _on_close(self) -> None:
        scheduler_stopped(self.address)
        await self.plugins.close()
        self.locks.close()
        for stream in list(self.client_streams.values()):
            if isinstance(stream, LocalEnd):
                stream.abort()  # tells the local client; socket clients see their comms close
        if self.dashboard is not None:
            await self.dashboard.stop()
        if self._gc_tuned:
            self._gc_tuned = False
            runtime.embedded_scheduler_stopped()

    def _sid(self, op: str) -> str:
        return f"{op}-{next(self._stimulus)}"

    # ------------------------------------------------------------------ #
    # Events in, commands out
    # ------------------------------------------------------------------ #
    def _handle(self, *events: SchedulerInput) -> None:
        if not events:
            return
        to_workers: dict[str, list[Message]] = {}
        to_clients: dict[str, list[Message]] = {}
        self.monitor.stamp(events[-1].stimulus_id)
        plugins = self.plugins
        mark = plugins.before_handle() if plugins.watching else None
        try:
            commands = self.state.handle(*events)
        except Exception as exc:  # a bug in the state machine
            self.machine_failed(exc, events)
            return
        if plugins.watching:
            plugins.handled(events, mark)
        self.heap_freezer.observe(len(self.state.tasks))
        for cmd in commands:
            if isinstance(cmd, Message):  # addressed by its worker or client field
                if cmd.receiver == WORKER:
                    to_workers.setdefault(cmd.worker, []).append(cmd)  # type: ignore[attr-defined]
                else:
                    to_clients.setdefault(cmd.client, []).append(cmd)  # type: ignore[attr-defined]
                continue
            match cmd:
                case ev.WorkerRetired():
                    retired = self.replicas.retired(cmd)
                    to_workers.setdefault(cmd.worker, []).append(retired)
                case ev.RetirementAborted():
                    self.replicas.aborted(cmd)
                case ev.StreamMarked():
                    self.shared_values.marked(cmd)
                case ev.TopicAbandoned():
                    self.spawn(self.plugins.forget_if_unwanted(
                        cmd.topic, lambda t: t not in self.state.log_forwarding.topics),
                        f"teardown-{cmd.topic}")
                case ev.TaskStalled():
                    logger.warning("task %r waits for a worker: it %s; it runs when such a worker "
                                   "joins (other tasks needing the same are not logged again)",
                                   cmd.key, cmd.reason)
                case _:
                    raise TypeError(f"scheduler shell cannot run {cmd!r}")
        for worker, msgs in to_workers.items():
            self._send(self.worker_streams.get(worker), msgs)
        for client, reports in to_clients.items():
            self._send(self.client_streams.get(client), reports)
        self.replicas.check_copies()

    @staticmethod
    def _send(stream: BatchedSend | LocalEnd | None, msgs: list[Message]) -> None:
        """Send to a peer (a local link hands the messages over as they are)."""
        if stream is None:
            return
        try:
            stream.send_messages(*msgs)
        except CommClosedError:
            pass  # its reader notices the closed stream and removes the peer

    # ------------------------------------------------------------------ #
    # Clients
    # ------------------------------------------------------------------ #
    async def _register_client(self, msg: RegisterClient, comm: Any) -> None:
        client = msg.client
        await comm.write(ClientRegistered(self.address, self.id).to_wire())
        self._client_joined(client, BatchedSend(comm))
        try:
            while not await self._client_batch(client, await comm.read()):
                pass
        except (CommClosedError, OSError):
            pass
        finally:
            self._client_left(client)

    async def _client_batch(self, client: str, msgs: Any) -> bool:
        """Handle one read of a client's stream; whether the client is leaving.
        A method of its own so that the batch's messages (a big graph's
        specs) are garbage once handled, not kept by the reading loop's
        frame until the client's next message; and the wire dicts they were
        decoded from are dropped before any is handled, so a big graph's
        records are made in the memory its wire dicts took (the scheduler's
        high-water mark is one graph's decoded specs, not those plus the
        dicts)."""
        groups, closing = self._client_events(client, msgs)
        del msgs
        for i, events in enumerate(groups):
            if i:
                await asyncio.sleep(0)  # after a big graph: let others in
            self._handle(*events)
        return closing

    def connect_local_client(self, client: str) -> LocalEnd:
        """Register a client running on this scheduler's event loop; returns
        the client's end of a :mod:`~taskmill.comm.local` link."""
        if self.status is not Status.running:
            raise CommClosedError(f"scheduler {self.address} is {self.status.name}")
        theirs, ours = local_link(asyncio.get_running_loop(), self.address, client, b_at_once=False)

        def on_messages(batch: list[Any]) -> None:
            groups, closing = self._client_events(client, batch)
            for events in groups:
                self._handle(*events)
            if closing:
                ours.abort()
                self._client_left(client)

        ours.on_messages = on_messages
        ours.on_close = lambda: self._client_left(client)
        self._client_joined(client, ours)
        return theirs

    def _client_joined(self, client: str, stream: BatchedSend | LocalEnd) -> None:
        self.client_streams[client] = stream
        logger.info("client %s connected", client)
        self._handle(ev.ClientConnected(self._sid("client-connected"), client))

    def _client_left(self, client: str) -> None:
        if self.client_streams.pop(client, None) is not None and self.status is Status.running:
            logger.info("client %s disconnected", client)
            self._handle(ev.ClientDisconnected(self._sid("client-disconnected"), client))
            self.locks.client_left(client)
            self.shared_values.client_left(client)

    def _client_events(self, client: str, msgs: Any) -> tuple[list[list[SchedulerInput]], bool]:
        """The events of one batch of a client's messages, in groups to handle
        in turn (a new group after each big graph), and whether the client is
        leaving (``close-client``).  Malformed messages are logged and skipped."""
        groups: list[list[SchedulerInput]] = [[]]
        closing = False
        now = time.time()
        for raw in _as_batch(msgs, client):
            op = raw.op if isinstance(raw, Message) else raw.get("op")
            try:
                msg = arrived(raw, CLIENT, SCHEDULER, client=client, stimulus_id=self._sid(str(op)),
                              now=now)
                if isinstance(msg, UpdateGraph):
                    for spec in msg.tasks:
                        if spec.resources:
                            check_resources(spec.resources, "task resources")
            except (ProtocolError, TypeError, ValueError) as exc:
                logger.warning("client %s sent a malformed %r message (%s): ignored", client, op, exc)
                continue
            if isinstance(msg, CloseClient):
                closing = True
                continue
            groups[-1].append(msg)  # type: ignore[arg-type]
            if isinstance(msg, UpdateGraph) and len(msg.tasks) >= YIELD_AFTER_TASKS:
                groups.append([])
        return [g for g in groups if g], closing

    # ------------------------------------------------------------------ #
    # Workers
    # ------------------------------------------------------------------ #
    async def _register_worker(self, msg: RegisterWorker, comm: Any) -> None:
        address = msg.worker
        if address in self.worker_streams:
            await comm.write(RegistrationRefused(f"a worker at {address} is already registered").to_wire())
            return
        try:
            check_resources(msg.resources, "worker resources", allow_zero=True)
            self._check_name_free(msg)
        except (TypeError, ValueError) as exc:
            await comm.write(RegistrationRefused(str(exc)).to_wire())
            return
        await comm.write(WorkerRegistered(self.uploads).to_wire())
        self.worker_streams[address] = BatchedSend(comm)
        self.worker_comms[address] = comm
        self.worker_extra[address] = {"pid": msg.pid, "memory": 0}
        self.liveness.heard(address, time.monotonic())
        self._exit_reported[address] = asyncio.Event()
        logger.info("worker %s joined (%d threads, name %s%s)", address, msg.nthreads, msg.name or "-",
                    f", resources {format_resources(msg.resources)}" if msg.resources else "")
        await self.plugins.worker_joining(address, msg.nanny)  # before it gets any task
        self._handle(replace(msg, stimulus_id=self._sid("worker-joined"), now=time.time()))
        self.plugins.worker_added(address)
        await self._notify_workers_changed()
        reason = "its connection closed"
        try:
            while True:
                msgs = await comm.read()
                self.liveness.heard(address, time.monotonic())
                events, leaving = self._worker_events(address, msgs)
                self._handle(*events)
                if leaving:
                    reason = "it closed"
                    break
        except (CommClosedError, OSError):
            pass
        finally:
            self.worker_streams.pop(address, None)
            self.worker_comms.pop(address, None)
            self.liveness.forget(address)
            exit_reported = self._exit_reported[address]
            if (msg.nanny and reason == "its connection closed" and address not in self.exit_reasons
                    and self.status is Status.running):
                # its nanny knows why the process died (exit code, signal): wait briefly for it
                try:
                    await asyncio.wait_for(exit_reported.wait(), NANNY_REPORT_WAIT)
                except asyncio.TimeoutError:
                    pass
            del self._exit_reported[address]
            self.worker_extra.pop(address, None)
            if self.status is Status.running:
                reason = self.exit_reasons.pop(address, reason)
                logger.info("worker %s left: %s", address, reason)
                self.monitor.worker_left(address, reason)
                self._handle(ev.WorkerLeft(self._sid("worker-left"), address, reason, time.time()))
                for peer, stream in list(self.worker_streams.items()):  # fetches from it end
                    self._send(stream, [WorkerRemoved(peer, address, reason)])
                for client, to_client in list(self.client_streams.items()):  # theirs too
                    self._send(to_client, [WorkerGone("", client, address, reason)])
                self.plugins.worker_removed(address)
                await self._notify_workers_changed()

    def _check_name_free(self, msg: RegisterWorker) -> None:
        """A worker's name (``--name``) is unique among live workers: users tell
        workers apart by it (logs, the dashboard, ``get_worker().name``).  The
        same nanny's next worker process may take over its predecessor's name
        before the predecessor is removed."""
        if not msg.name:
            return
        for ws in self.state.workers.values():
            if ws.name == msg.name and (ws.nanny is None or ws.nanny != msg.nanny):
                raise ValueError(f"the name {msg.name!r} is already taken by the worker at "
                                 f"{ws.address}: give each worker a unique --name")

    def _worker_events(self, worker: str, msgs: Any) -> tuple[list[SchedulerInput], bool]:
        """The events of one batch of a worker's messages, and whether it is
        leaving (``unregister``).  Malformed messages are logged and skipped."""
        events: list[SchedulerInput] = []
        leaving = False
        now = time.time()
        for raw in _as_batch(msgs, worker):
            op = raw.get("op")
            try:
                msg = arrived(raw, WORKER, SCHEDULER, worker=worker, stimulus_id=self._sid(str(op)),
                              now=now)
            except (ProtocolError, TypeError, ValueError) as exc:
                logger.warning("worker %s sent a malformed %r message (%s): ignored", worker, op, exc)
                continue
            if isinstance(msg, Unregister):
                leaving = True
                continue
            if isinstance(msg, (TaskFinished, TaskErred)):
                self.monitor.task_done(msg)
            elif isinstance(msg, Heartbeat):
                self.worker_extra[worker].update(
                    memory=msg.memory, executing=msg.executing, managed=msg.managed,
                    spilled=msg.spilled, paused=msg.paused)
                self.monitor.heartbeat(msg)
            events.append(msg)  # type: ignore[arg-type]
        return events, leaving

    async def _notify_workers_changed(self) -> None:
        async with self._workers_changed:
            self._workers_changed.notify_all()

    @property
    def _check_interval(self) -> float:
        return max(0.05, min(HEARTBEAT_INTERVAL, self.heartbeat_timeout / 4))

    async def _check_heartbeats(self) -> None:
        """Every second (or a quarter of the TTL, if shorter): a heartbeat to
        every worker whose stream carried nothing since the last round, and
        the connection of each silent one dropped."""
        sent_by_round: dict[str, int] = {}  # worker -> messages on its stream as of the last round
        while True:
            await asyncio.sleep(self._check_interval)
            sent_before, sent_by_round = sent_by_round, {}
            for address, stream in list(self.worker_streams.items()):
                sent = stream.messages_sent
                if sent_before.get(address) == sent:  # nothing went there since: say we live
                    try:
                        stream.send_messages(SchedulerHeartbeat(address))
                    except CommClosedError:
                        pass  # its reader sees the close
                    sent += 1
                sent_by_round[address] = sent
            now = time.monotonic()
            for address in self.liveness.expired(now):
                silent = self.liveness.silent_for(address, now)
                self.liveness.forget(address)  # once: its stream's reader removes it
                logger.warning("worker %s silent for %.1fs (option scheduler.worker-ttl: %gs): "
                               "removing it", address, silent, self.heartbeat_timeout)
                self.exit_reasons[address] = (
                    f"it was silent for {silent:.1f}s (option scheduler.worker-ttl: "
                    f"{self.heartbeat_timeout:g}s)")
                comm = self.worker_comms.get(address)
                if comm is not None:
                    comm.abort()
            self._watch_stranded(now)

    async def _steal_periodically(self, interval: float) -> None:
        """Every ``interval`` seconds, the machine balances queued work between
        workers (``core/scheduler/stealing.py``); each worker should then hold
        two intervals' worth of work per thread to stay busy until the next."""
        while True:
            await asyncio.sleep(interval)
            if len(self.state.workers) > 1:
                self._handle(ev.StealTick(self._sid("steal-tick"), 2 * interval))

    def _watch_stranded(self, now: float) -> None:
        """Tasks waiting with no worker connected: a warning (log, clients) at
        growing intervals, and their error once the no-workers timeout passed."""
        waiting = self.state.no_workers.waiting()
        found = self.no_workers_clock.tick(waiting, now)
        self.monitor.waiting_for_workers = (
            {"seconds": round(found.waited, 1), "tasks": waiting} if waiting else None)
        timeout = self.no_workers_clock.timeout
        if found.warn:
            logger.warning("%d tasks have waited %.0fs with no worker connected (option "
                           "scheduler.no-workers-timeout: %s)", waiting, found.waited,
                           "none" if timeout is None else f"{timeout:g}s")
            for client, stream in list(self.client_streams.items()):
                self._send(stream, [NoWorkers("", client, found.waited, waiting, timeout)])
        if found.timed_out and timeout is not None:
            logger.error("no worker for %.0fs (option scheduler.no-workers-timeout): %d waiting "
                         "tasks fail with NoWorkersError", found.waited, waiting)
            self._handle(ev.NoWorkersTimedOut(self._sid("no-workers-timeout"), found.waited, timeout))

    def _worker_exited(self, msg: WorkerExited, comm: Any) -> None:
        """A nanny tells how its worker process ended."""
        worker, reason = msg.worker, msg.reason
        logger.info("worker %s exited: %s", worker, reason)
        ws = self.state.workers.get(worker)
        self.monitor.worker_exited(ws.nanny if ws is not None else None, worker, reason)
        reported = self._exit_reported.get(worker)
        if reported is None:
            return
        self.exit_reasons[worker] = reason
        reported.set()
        comm_ = self.worker_comms.get(worker)
        if comm_ is not None:
            comm_.abort()

    # ------------------------------------------------------------------ #
    # Requests
    # ------------------------------------------------------------------ #
    def _scheduler_info(self, msg: SchedulerInfo, comm: Any) -> dict[str, Any]:
        workers = self.state.workers_info()
        for address, info in workers.items():
            info.update(self.worker_extra.get(address, {}))
            info.pop("last_seen", None)  # the worker's clock: meaningless here
        return {"address": self.address, "id": self.id, "workers": workers,
                "clients": len(self.client_streams), "dashboard": self.dashboard_url,
                "waiting_for_workers": self.monitor.waiting_for_workers}

    def _adaptive_target(self, msg: AdaptiveTarget, comm: Any) -> dict[str, Any]:
        advice = recommend(self.state.membership, self.state.placement, msg.target_duration,
                           msg.threads_per_worker)
        return {"target": advice.target, "close": list(advice.close)}

    async def wait_for_workers(self, n: int, timeout: float,
                               gone: frozenset[str] = frozenset()) -> None:
        """Wait until at least ``n`` workers have joined (the state machine
        knows them: a worker whose stream is open may still be getting its
        plugins) and none of ``gone`` is left."""
        def ready() -> bool:
            workers = self.state.workers
            return len(workers) >= n and not gone & workers.keys()

        async def wait() -> None:
            async with self._workers_changed:
                await self._workers_changed.wait_for(ready)

        try:
            await asyncio.wait_for(wait(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"only {len(self.state.workers)} of {n} workers connected to the scheduler at "
                f"{self.address} within {timeout:.0f}s") from None

    async def _scatter_targets(self, msg: ScatterTargets, comm: Any) -> list[list[str]]:
        n, workers, broadcast = msg.n, msg.workers, msg.broadcast
        await self.wait_for_workers(1, timeouts.CONNECT.get())
        if workers:
            unknown = [w for w in workers if w not in self.worker_streams]
            if unknown:
                raise ValueError(f"scatter to unknown workers {unknown}; known: {sorted(self.worker_streams)}")
            pool = list(workers)
        else:  # not to retiring workers (nor retired ones that are still connected)
            pool = (self.state.workers_for_scatter(n) if not broadcast else
                    [a for a, ws in self.state.workers.items() if not ws.retiring])
        if broadcast:
            return [list(pool) for _ in range(n)]
        return [[w] for w, _ in zip(itertools.cycle(pool), range(n))]

    async def _restart(self, msg: Restart, comm: Any) -> str:
        max_wait = msg.max_wait
        n = len(self.worker_streams)
        nannies = {w: i.get("nanny") for w, i in self.state.workers_info().items()}
        self._handle(ev.RestartRequested(self._sid("restart")))
        logger.info("restarting %d workers", n)

        async def restart_one(worker: str, nanny: str | None) -> None:
            if nanny:
                self.exit_reasons[worker] = "the cluster restarted"
                await self.pool.rpc(nanny).ask(RestartWorker(), timeout=max_wait)
            else:  # no nanny: drop the connection; the worker registers again afresh
                comm_ = self.worker_comms.get(worker)
                if comm_ is not None:
                    comm_.abort()

        await asyncio.gather(*(restart_one(w, nn) for w, nn in nannies.items()))
        if msg.wait_for_workers:
            await self.wait_for_workers(n, max_wait, gone=frozenset(w for w, nn in nannies.items() if nn))
        return "OK"

    async def _restart_workers(self, msg: RestartWorkers, comm: Any) -> dict[str, str]:
        """Restart some worker processes through their nannies; the others keep
        their data, and the keys held only by the restarted ones are lost
        (recomputed, or their futures lost, as when a worker dies)."""
        workers = list(dict.fromkeys(msg.workers))
        info = self.state.workers_info()
        unknown = [w for w in workers if w not in info]
        if unknown:
            raise ValueError(f"restart_workers: no worker at {unknown}; the workers are {sorted(info)}")
        nannies = {w: info[w].get("nanny") for w in workers}
        alone = [w for w, nanny in nannies.items() if not nanny]
        if alone:
            raise ValueError(
                f"restart_workers: {alone} run without a nanny, which is what restarts a worker "
                "process: start them under one (taskmill-worker without --no-nanny), or close "
                "them and start new ones yourself")
        n = len(self.worker_streams)
        logger.info("restarting workers %s", workers)
        for w in workers:
            self.exit_reasons[w] = "restarted by restart_workers"
        await asyncio.gather(*(self.pool.rpc(nanny).ask(RestartWorker(), timeout=msg.max_wait)
                               for nanny in nannies.values() if nanny))
        await self.wait_for_workers(n, msg.max_wait, gone=frozenset(workers))
        return {w: "OK" for w in workers}

    async def _dump_cluster_state(self, msg: DumpClusterState, comm: Any) -> dict[str, Any]:
        """This scheduler's state and every worker's, as plain data (a worker
        that does not answer in time is there with the reason)."""
        workers = list(self.worker_streams)
        replies = await asyncio.gather(
            *(self.pool.rpc(w).ask(DumpWorkerState(), timeout=timeouts.REQUEST) for w in workers),
            return_exceptions=True)
        state = self.state
        return {
            "format": cluster_state.FORMAT, "time": time.time(),
            "scheduler": {
                "address": self.address, "tasks": cluster_state.snapshot_records(state.machine.tasks),
                "workers": cluster_state.snapshot_records(state.workers),
                "clients": cluster_state.snapshot_records(state.clients),
                "info": self._scheduler_info(SchedulerInfo(), comm), "logs": self.log_ring.recent()},
            "workers": {w: ({"error": f"{type(r).__name__}: {r}"} if isinstance(r, BaseException) else r)
                        for w, r in zip(workers, replies)},
        }

    async def _running_keys(self, msg: RunningKeys, comm: Any) -> list[str]:
        """Keys executing on any worker thread (asked of the workers themselves)."""
        replies = await asyncio.gather(
            *(self.pool.rpc(w).ask(Executing(), timeout=timeouts.REQUEST)
              for w in list(self.worker_streams)),
            return_exceptions=True)
        return [k for r in replies if not isinstance(r, BaseException) for k in r]

    async def _upload_file(self, msg: UploadFile, comm: Any) -> dict[str, str]:
        self.uploads[msg.filename] = msg.data
        workers = list(self.worker_streams)
        paths = await asyncio.gather(
            *(self.pool.rpc(w).ask(msg, timeout=timeouts.DATA) for w in workers))
        return dict(zip(workers, paths))


def _as_batch(msgs: Any, peer: str) -> list[Any]:
    """The messages of one stream read: a list of wire dicts (or of messages
    handed over by a local link); anything else is dropped."""
    if isinstance(msgs, list) and all(isinstance(m, (dict, Message)) for m in msgs):
        return msgs
    logger.warning("%s sent a stream batch that is not a list of messages: ignored", peer)
    return [m for m in msgs if isinstance(m, (dict, Message))] if isinstance(msgs, list) else []

