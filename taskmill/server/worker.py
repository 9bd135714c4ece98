"""The worker shell: sockets, threads and the data store around the pure
:class:`~taskmill.core.worker.state.WorkerState`.

Theory of operation
-------------------
* One long-lived stream to the scheduler (``register-worker``): the
  scheduler's messages (``compute-task``, ``free-keys``, ``acquire-replicas``)
  are decoded through :mod:`taskmill.protocol.vocabulary` and handed to the
  state machine as they are; the wire messages it returns (``task-finished``,
  ``add-keys``, ``paused`` ...) go back on the stream, batched.
* ``Execute`` commands run in a thread pool of ``nthreads`` threads
  (:mod:`taskmill.server.task_runner`), which queues the short calls the
  machine starts ahead of a free thread (option ``worker.run-ahead``); the
  thread posts the outcome back to the loop, which stores the value and
  feeds ``ExecuteSucceeded`` / ``ExecuteFailed``: all the outcomes that one
  turn of the loop finds, in one handling (``_flush_outcomes``).  A task's ``secede()`` and ``rejoin()`` reach the
  machine as ``TaskSeceded`` / ``RejoinRequested``; its ``RejoinGranted``
  lets the waiting thread go on.  ``get_client()`` inside a task makes one
  Executor for the worker (``task_client``), closed with it.
  ``AbandonExecution`` (a forced cancel) tells the runner to drop that
  call's outcome and put another thread in its place.
* ``ScheduleStartReport`` arms one timer: ``START_REPORT_DELAY`` later the
  machine gets ``StartReportDue`` and reports the calls still running.
* ``Fetch`` commands become one ``get-data`` request to a peer for many keys.
* Peers and clients call ``get-data``; clients call ``put-data`` (scatter),
  ``run`` and ``upload-file``; proxies call ``actor-call`` and
  ``actor-attribute`` (:mod:`taskmill.server.actors`, which holds the
  actors).  ``put-data`` waits until the worker is
  registered, so that the machine's ``keys-scattered`` reaches the scheduler,
  and answers with this registration's ``incarnation`` (new at each
  registration), which the client passes on in ``scatter-done``.
* Memory (:mod:`taskmill.server.memory`): with a ``memory_limit``, the data
  store (:mod:`taskmill.server.data_store`) spills least recently used
  values to disk, and a monitor spills more and pauses the state machine
  (``PauseChanged``) when the process's RSS runs high.
* Heartbeats go out every ``heartbeat_interval`` seconds; the scheduler sends
  its own (``scheduler-heartbeat``) every second.  Heard from nothing for
  twice ``scheduler.worker-ttl`` seconds (a cut link, a stopped scheduler),
  the worker drops its stream and registers again, as after a loss: the
  scheduler has removed it by then (:mod:`taskmill.core.liveness`).  Reaching the
  scheduler: at start and after losing it, the worker tries to register for
  ``death_timeout`` seconds (``--death-timeout``, default: option
  ``comm.timeouts.reconnect``), then closes.  After a loss it starts no new
  work (the machine is paused) but keeps its data, and the results of the
  calls that end before it is registered again; it drops the rest of its work
  and registers again with the keys it holds (``RegisterWorker.held``), a fresh state machine starting
  with them in memory (``DataRetained``), so that a restarted scheduler
  reuses them (``taskmill.core.scheduler.held_keys``).  Actors are not
  kept.  A refusal (a name already taken) is not retried.
* ``lifetime`` (``--lifetime``, with ``lifetime_stagger``): after that long
  the worker retires like on SIGTERM (``close_gracefully``: its unique data
  moves to other workers first) and closes; a nanny does not replace it.

* Plugins and ``--preload`` modules (:mod:`taskmill.server.plugins`): the
  scheduler sets plugins up with ``plugin-setup``; their ``transition`` hooks
  are called after ``handle`` only while a plugin overrides it; preloads'
  ``taskmill_setup`` runs before registering, teardowns at close (the
  plugins' first, while the stream is open: ``forward_logging``'s plugin
  sends the records it still holds, through ``forward_log_records``).

All decisions live in the state machine; this module only does I/O.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import psutil

from taskmill import cluster_state, config, config_checks, timeouts
from taskmill.comm import BatchedSend, CommClosedError, connect
from taskmill.comm.auth import AuthenticationError
from taskmill.core.liveness import HEARTBEAT_INTERVAL, Liveness
from taskmill.core.worker import events as ev
from taskmill.core.resources import check_resources
from taskmill.core.worker.events import WorkerInput
from taskmill.core.worker.state import WorkerState
from taskmill.protocol import ProtocolError, Serialized, serialize
from taskmill.protocol.vocabulary import (
    SCHEDULER,
    WORKER,
    Executing,
    GetData,
    Heartbeat,
    Message,
    PutData,
    RegisterWorker,
    RegistrationRefused,
    RetireWorkers,
    Retired,
    SchedulerHeartbeat,
    WorkerRemoved,
    Run,
    TaskErred,
    TaskFinished,
    Unregister,
    UploadFile,
    WhoHas,
    WorkerLogs,
    DumpWorkerState,
    WorkerRegistered,
    arrived,
    decode,
)
from taskmill.server.actors import ActorHost
from taskmill.server.data_store import DataStore
from taskmill.server.memory import MemoryThresholds, WorkerMemoryMonitor
from taskmill.plugins import WorkerPlugin
from taskmill.server.node import Node, Status
from taskmill.server.plugins import PluginHost, Preloads, last_entry
from taskmill.server.task_runner import TaskRunner
from taskmill.server.worker_diagnostics import WorkerDiagnostics
from taskmill.server.uploads import install_upload
from taskmill.security import Security, in_process_security

logger = logging.getLogger("taskmill.worker")


class RegistrationRefusedError(ConnectionError):
    """The scheduler answered and refused this worker (trying again will not help)."""


def staggered(lifetime: float | None, stagger: float) -> float | None:
    """``lifetime`` moved by a random amount within +-``stagger`` (never below 0),
    so that the workers of one job do not all leave at once."""
    if lifetime is None:
        return None
    return max(0.0, lifetime + random.uniform(-stagger, stagger))

#: a worker gives its scheduler this many TTLs of silence before it drops the
#: stream and registers again (empty): the scheduler removes a silent worker
#: after one TTL anyway, and a scheduler that is only busy (a huge graph
#: arriving) must not cost every worker its data
SCHEDULER_TTL_FACTOR = 2.0

#: seconds between a call's start and the report that it runs (if it still
#: does): calls shorter than this cost no message (see
#: :mod:`taskmill.core.worker.running_calls`)
START_REPORT_DELAY = 0.005

#: seconds the reports of a handling may wait for the next ones while other
#: calls still run here (``BatchedSend``'s hold): a map's reports then cost the
#: scheduler one read and one handling per batch, not per task; the report of
#: a worker's last running call goes at once, and none waits while a call
#: here has seceded (it may wait for them)
REPORT_HOLD = 0.001

#: the most calls a worker may run ahead (``worker.run-ahead.depth``): its
#: hand-off queue's pipe holds 64 KiB of wake-up bytes
MAX_RUN_AHEAD = 1024


class Worker(Node):
    """A worker process's server: runs tasks, stores and serves their results."""

    def __init__(self, scheduler_address: str, *, nthreads: int = 1, memory_limit: int = 0,
                 host: str = "127.0.0.1", port: int = 0, nanny: str | None = None, name: str = "",
                 heartbeat_interval: float = HEARTBEAT_INTERVAL, death_timeout: float | None = None,
                 local_directory: str | None = None, validate: bool = False,
                 memory_thresholds: MemoryThresholds | None = None,
                 resources: dict[str, float] | None = None, preload: Sequence[str] = (),
                 security: Security | None = None, lifetime: float | None = None,
                 lifetime_stagger: float = 0.0) -> None:
        # None: the scheduler's when it runs in this process, else the environment's
        super().__init__(name or "worker", in_process_security(scheduler_address, security))
        self.scheduler_address = scheduler_address
        self.nthreads = nthreads
        #: abstract resources declared to the scheduler (e.g. {"GPU": 2}), which
        #: sends tasks needing them only while enough are free here
        self.resources = check_resources(resources, "worker resources", allow_zero=True)
        self.memory_limit = memory_limit
        self.host, self.port = host, port
        self.nanny = nanny
        self.heartbeat_interval = heartbeat_interval
        #: when the scheduler was last heard from on the current stream
        self.scheduler_liveness: Liveness[str] = Liveness(
            SCHEDULER_TTL_FACTOR * config.read("scheduler.worker-ttl", config_checks.seconds),
            heartbeat_interval)
        self._scheduler_comm: Any = None
        #: peer -> its get-data requests in flight (abandoned when the scheduler removes it)
        self._fetching: dict[str, set[asyncio.Task[Any]]] = {}
        #: seconds this worker keeps trying to reach its scheduler (at start, after a loss)
        self.death_timeout = death_timeout if death_timeout is not None else timeouts.RECONNECT.get()
        #: seconds after start when the worker retires on its own (None: never)
        self.lifetime = staggered(lifetime, lifetime_stagger)
        self.local_directory = local_directory or os.path.join(
            os.environ.get("TMPDIR", "/tmp"), f"taskmill-worker-{os.getpid()}-{id(self):x}")
        self._validate = validate
        #: fractions of ``memory_limit`` for spilling and pausing (default: from the configuration)
        self.memory_thresholds = t = memory_thresholds or MemoryThresholds.from_config()
        fraction = t.target or t.spill
        self.data = DataStore(os.path.join(self.local_directory, "spill"),
                              int(memory_limit * fraction) if memory_limit > 0 and fraction else 0)
        self.state: WorkerState | None = None
        self.stream: BatchedSend | None = None
        #: a token of the current registration (``RegisterWorker.incarnation``)
        self.incarnation = ""
        #: set while registered: the stream is open (``put-data`` waits for it)
        self._registered = asyncio.Event()
        self.runner = TaskRunner(nthreads, self._on_task_done, self._on_secede, self._on_rejoin,
                                 worker=self, on_drained=self._flush_outcomes,
                                 still_cancelled=self._still_cancelled)
        #: outcomes the task threads posted, for the machine's next handling
        self._outcomes: list[WorkerInput] = []
        #: (depth, shorter-than) of the machine's run-ahead (:mod:`taskmill.core.worker.run_ahead`)
        self.run_ahead = (config.read("worker.run-ahead.depth", config_checks.count),
                          config.read("worker.run-ahead.shorter-than", config_checks.delay))
        if self.run_ahead[0] > MAX_RUN_AHEAD:
            raise ValueError(f"option worker.run-ahead.depth is {self.run_ahead[0]}: give at most "
                             f"{MAX_RUN_AHEAD} (calls queued for the task threads)")
        #: the Executor that ``get_client()`` returns inside this worker's tasks
        #: (made on first use by :mod:`taskmill.client.worker_client`, closed with the worker)
        self.task_client: Any = None
        self._process = psutil.Process()
        self.diagnostics = WorkerDiagnostics(self._process)
        self.memory_monitor = (
            WorkerMemoryMonitor(self.data, memory_limit, t, self._rss, self._on_pause)
            if memory_limit > 0 and (t.spill or t.pause) else None)
        #: plugins (``Executor.register_plugin``) and ``--preload`` modules
        self.plugins = PluginHost(self, WorkerPlugin)
        self.preloads = Preloads(preload)
        self.serve({
            GetData: self._get_data,
            PutData: self._put_data,
            Run: self._run,
            UploadFile: lambda msg, comm: install_upload(self.local_directory, msg.filename, msg.data),
            Executing: lambda msg, comm: self.runner.running_keys(),
            WorkerLogs: lambda msg, comm: self.log_ring.recent(msg.n),
            DumpWorkerState: self._dump_state,
        })
        #: the actors living here (``submit(Cls, actor=True)``), reached by ``actor-*`` requests
        self.actors = ActorHost(self)
        self.serve(self.actors.handlers())

    # ------------------------------------------------------------------ #
    # Lifecycle
    # ------------------------------------------------------------------ #
    async def start(self) -> Worker:
        await self.listen(f"tcp://{self.host}:{self.port}")
        self.name = self.name if self.name != "worker" else f"worker-{self.address}"
        logger.info("worker listening at %s", self.address)
        self.status = Status.running
        await self.preloads.setup(self)
        await self._reach_scheduler(retry_refusals=False)
        self.spawn(self._heartbeat_loop(), "heartbeat")
        if self.memory_monitor is not None:
            self.spawn(self._memory_loop(), "memory-monitor")
        if self.lifetime is not None:
            self.spawn(self._retire_after(self.lifetime), "lifetime")
        return self

    async def _reach_scheduler(self, retry_refusals: bool, keep_data: bool = False) -> None:
        """Register, trying again for ``death_timeout`` seconds while the
        scheduler cannot be reached (it may start after us) or, with
        ``retry_refusals``, refuses us (after a loss, it may not have noticed
        yet that our old connection is gone); ``keep_data``: register with
        the data held now (after a loss); a ``TimeoutError`` saying so
        when it stays away, else the refusal (``RegistrationRefusedError``,
        or ``AuthenticationError`` for another token)."""
        deadline = time.monotonic() + self.death_timeout
        while True:
            if self.status is not Status.running:
                raise ConnectionError("the worker closed while reaching its scheduler")
            try:
                await self._register(max(0.1, deadline - time.monotonic()), keep_data)
                return
            except (OSError, asyncio.TimeoutError) as exc:
                if self.status is not Status.running:
                    raise
                if isinstance(exc, (RegistrationRefusedError, AuthenticationError)) and not retry_refusals:
                    raise
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"scheduler {self.scheduler_address} unreachable for "
                        f"{self.death_timeout:g}s (--death-timeout; default: option "
                        f"{timeouts.RECONNECT.key}, ${timeouts.RECONNECT.env}): {exc}") from exc
                await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    async def _retire_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        logger.info("worker lifetime of %.0fs reached: retiring (its data moves to other workers)",
                    seconds)
        await self.close_gracefully()

    async def _register(self, connect_timeout: float, keep_data: bool = False) -> None:
        """One registration attempt, connecting for at most ``connect_timeout``
        seconds (and no longer than ``$TASKMILL_CONNECT_TIMEOUT``);
        ``keep_data``: announce the data held now instead of dropping it."""
        self._registered.clear()
        comm = await connect(self.scheduler_address, min(timeouts.CONNECT.get(), connect_timeout),
                             security=self.security)
        # nothing awaits from here to the request: calls that ended while the
        # scheduler was away reached the old (paused) machine, their results are
        # kept; the outcomes of those still running are dropped
        self.runner.discard_all()
        self.incarnation = secrets.token_hex(8)
        self._outcomes = []
        self.state = WorkerState(self.address, self.nthreads, validate=self._validate,
                                 run_ahead=self.run_ahead[0], run_ahead_below=self.run_ahead[1])
        for key in [k for k in self.data.nbytes if k in self.actors or not keep_data]:
            self.data.discard(key)  # an actor's object does not outlive its registration
        self.actors.clear()
        held = dict(self.data.nbytes)
        if held:
            self.state.handle(ev.DataRetained(stimulus_id="data-retained", nbytes=held))
        if self.memory_monitor is not None:
            self.memory_monitor.paused = False  # the new state machine is not paused
        request = RegisterWorker(self.address, self.nthreads, self.memory_limit, self.nanny,
                                 self.name, os.getpid(), self.resources,
                                 incarnation=self.incarnation, held=held or None).to_wire()
        request["reply"] = False  # the answer comes on the stream itself
        await comm.write(request)
        try:
            reply = await asyncio.wait_for(comm.read(), timeouts.REQUEST.get())
        except asyncio.TimeoutError:
            comm.abort()
            raise TimeoutError(
                f"the scheduler at {self.scheduler_address} did not answer this worker's "
                f"registration within {timeouts.REQUEST.get():g}s "
                f"({timeouts.REQUEST.hint})") from None
        try:
            answer = decode(reply)
        except ProtocolError as exc:
            answer = RegistrationRefused(f"malformed answer ({exc})")
        if not isinstance(answer, WorkerRegistered):
            await comm.close()
            reason = answer.reason if isinstance(answer, RegistrationRefused) else repr(answer)
            raise RegistrationRefusedError(
                f"scheduler {self.scheduler_address} refused worker: {reason}")
        for filename, data in answer.files.items():
            install_upload(self.local_directory, filename, data)
        self.stream = BatchedSend(comm)
        self._scheduler_comm = comm
        self.scheduler_liveness.heard(self.scheduler_address, time.monotonic())
        self._registered.set()
        logger.info("registered with scheduler %s%s", self.scheduler_address,
                    f" (holding {len(held)} keys from before)" if held else "")
        self.spawn(self._read_stream(comm), "scheduler-stream")

    async def close_gracefully(self) -> None:
        """Close after handing the data held only here to other workers (the
        scheduler retires this worker first, within ``TASKMILL_RETIRE_TIMEOUT``).
        If that fails (no other worker, scheduler gone, too slow), close anyway:
        the scheduler then recomputes what it can, as for any worker that leaves."""
        if self.status is Status.running and self.stream is not None:
            wait = timeouts.RETIRE.get()
            try:
                retired = await self.pool.rpc(self.scheduler_address).ask(
                    RetireWorkers(workers=(self.address,), close_workers=False, max_wait=wait),
                    timeout=wait + timeouts.REQUEST.get())
            except Exception as exc:  # scheduler gone or too slow: close anyway
                logger.warning("could not hand this worker's data over before closing: %s", exc)
            else:
                if self.address not in retired:
                    logger.warning("the scheduler could not move this worker's data elsewhere "
                                   "before it closes (see the scheduler's log)")
        await self.close()

    def _retired(self, close: bool) -> None:
        """The scheduler retired this worker: its data lives elsewhere now."""
        logger.info("retired by the scheduler%s", "; closing" if close else "")
        if close:
            self.spawn(self.close(), "close-retired")

    async def _on_close(self) -> None:
        await self.plugins.close()  # first: a teardown may still send (forwarded log records)
        if self.stream is not None:
            try:
                self.stream.send_messages(Unregister())
                await asyncio.wait_for(self.stream.close(), 2)
            except (CommClosedError, OSError, asyncio.TimeoutError):
                pass
        await self.preloads.teardown(self)
        self.runner.shutdown()
        self.actors.clear()
        await self._close_task_client()
        self.data.close()

    async def _close_task_client(self) -> None:
        """Close the Executor of ``get_client()``, in a thread of its own: it may
        talk to a scheduler running on this very loop (in-process workers)."""
        client, self.task_client = self.task_client, None
        if client is None:
            return
        try:
            await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, client.close),
                                   timeouts.REQUEST.get())
        except Exception as exc:  # closing anyway: the scheduler forgets a client that left
            logger.warning("could not close the tasks' Executor cleanly: %s", exc)

    # ------------------------------------------------------------------ #
    # The scheduler stream
    # ------------------------------------------------------------------ #
    async def _read_stream(self, comm: Any) -> None:
        try:
            while True:
                events: list[WorkerInput] = []
                batch = await comm.read()
                self.scheduler_liveness.heard(self.scheduler_address, time.monotonic())
                for raw in batch:
                    try:
                        msg = arrived(raw, SCHEDULER, WORKER, worker=self.address)
                    except (ProtocolError, TypeError, ValueError, AttributeError) as exc:
                        logger.warning("malformed message from the scheduler (%s): ignored", exc)
                        continue
                    if isinstance(msg, Retired):
                        self._retired(msg.close)
                    elif isinstance(msg, SchedulerHeartbeat):
                        pass  # a sign of life, noted above
                    elif isinstance(msg, WorkerRemoved):
                        self._abandon_fetches(msg.removed, msg.reason)
                    else:
                        events.append(msg)  # type: ignore[arg-type]
                self._handle(*events)
        except (CommClosedError, OSError):
            pass
        self.scheduler_liveness.forget(self.scheduler_address)
        if self.status is Status.running:
            logger.warning("lost the scheduler at %s; trying to reconnect for %.0fs",
                           self.scheduler_address, self.death_timeout)
            self.spawn(self._reconnect(), "reconnect")

    async def _reconnect(self) -> None:
        if self.state is not None:  # no new work; the calls running may still end and be kept
            self._handle(ev.PauseChanged(stimulus_id="scheduler-lost", paused=True))
        try:
            await self._reach_scheduler(retry_refusals=True, keep_data=True)
        except (OSError, asyncio.TimeoutError) as exc:
            if self.status is Status.running:
                logger.error("%s: worker shuts down", exc)
                await self.close()

    def _handle(self, *events: WorkerInput) -> None:
        assert self.state is not None
        watching = self.plugins.watching
        mark = last_entry(self.state.story_log) if watching else None
        try:
            commands = self.state.handle(*events)
        except Exception as exc:  # a bug in the state machine
            self.machine_failed(exc, events)
            return
        if watching:
            self.plugins.transitions_handled(self.state.story_log, mark)
        # The commands run first and the messages go out together after them,
        # in their order: a task thread starts on its next call (Execute) while
        # this thread writes the report of the last one, in one write.  While
        # calls still run here, more reports follow soon: these wait for them
        # (up to REPORT_HOLD), so a map's reports leave in batches.  Not while
        # a call here has seceded: it waits, likely for these very reports
        # (a recursion), and each level would wait the hold.
        outgoing: list[Message] = []
        for cmd in commands:
            if isinstance(cmd, Message):
                outgoing.append(self._outgoing(cmd))
            else:
                self._dispatch(cmd)
        if outgoing:
            state = self.state
            hold = REPORT_HOLD if state.executing and not state.seceded else 0.0
            self._send(*outgoing, hold=hold)

    def _outgoing(self, msg: Message) -> Message:
        """A message to the scheduler as it leaves: a task's report carries the
        seconds its inputs took to arrive."""
        if isinstance(msg, (TaskFinished, TaskErred)):
            transfer = self.diagnostics.transfer_time(msg.key)
            if transfer:
                return replace(msg, transfer=transfer)
        return msg

    def _dispatch(self, cmd: ev.WorkerCommand) -> None:
        match cmd:
            case ev.Execute():
                self._execute(cmd)
            case ev.Fetch():
                self.spawn(self._fetch(cmd.peer, cmd.keys), "fetch")
            case ev.DeleteData():
                for key in cmd.keys:
                    self.data.discard(key)
                    self.actors.discard(key)
                self.diagnostics.forget(cmd.keys)
            case ev.RejoinGranted():
                self.runner.resume(cmd.key)
            case ev.CancelExecution():
                # a call still queued (run ahead) is skipped; a running one cannot be
                # interrupted: the state machine drops its result
                self.runner.cancel(cmd.key)
            case ev.AbandonExecution():
                self.runner.abandon(cmd.key)
                self.diagnostics.forget((cmd.key,))
            case ev.ScheduleStartReport():
                asyncio.get_running_loop().call_later(START_REPORT_DELAY, self._start_report_due)
            case ev.AskWhoHas():
                self.spawn(self._ask_who_has(cmd.keys), "who-has")
            case _:
                raise TypeError(f"worker shell cannot run {cmd!r}")

    def forward_log_records(self, topic: str, records: tuple[dict[str, Any], ...]) -> None:
        """(On the loop.)  Log records captured under ``topic`` by a forwarding
        plugin (:mod:`taskmill.log_forwarding`) go to the scheduler, through the
        machine; dropped while not registered."""
        if self.state is not None and self.stream is not None and records:
            self._handle(ev.LogRecordsCaptured(stimulus_id=f"log-records-{topic}", topic=topic,
                                               records=records))

    def _send(self, *msgs: Message, hold: float = 0.0) -> None:
        if self.stream is None:
            return
        try:
            self.stream.send_messages(*msgs, hold=hold)
        except CommClosedError:
            pass  # the reader notices and reconnects

    # ------------------------------------------------------------------ #
    # Running tasks
    # ------------------------------------------------------------------ #
    def _execute(self, cmd: ev.Execute) -> None:
        inputs = {k: self.data[k] for k in cmd.dependencies}
        self.diagnostics.executing(cmd.key, cmd.dependencies)
        self.runner.submit(cmd.key, cmd.func_token, cmd.func, cmd.args, inputs,
                           report_value=cmd.report_value)

    def _start_report_due(self) -> None:
        if self.state is not None and self.status is Status.running:
            self._handle(ev.StartReportDue(stimulus_id="start-report",
                                           queued=self.runner.queued_keys()))

    def _on_task_done(self, key: str, ok: bool, value: Any, tb: str, start: float, stop: float,
                      small: Serialized | None) -> None:
        """Called on the loop (through the runner's inbox) when a task ends:
        store its value; the machine hears of it at ``_flush_outcomes``, with
        the other outcomes the threads posted meanwhile.  ``small`` is the
        result serialized when a client wants it and it is small."""
        if self.state is None or self.status is not Status.running:
            return
        if ok:
            type_name = type(value).__name__
            nbytes = self.data.put(key, value)
            del value
            self._outcomes.append(ev.ExecuteSucceeded(
                stimulus_id=f"task-finished-{key}", key=key, nbytes=nbytes,
                type_name=type_name, start=start, stop=stop, value=small))
        else:
            exc_payload, text = value
            self._outcomes.append(ev.ExecuteFailed(
                stimulus_id=f"task-erred-{key}", key=key, exception=exc_payload,
                traceback=tb, exception_text=text, start=start, stop=stop))

    def _still_cancelled(self, key: str) -> bool:
        """(On the loop.)  Whether the machine still has ``key``'s call cancelled."""
        return self.state is not None and self.state.task_state(key) == "cancelled"

    def _flush_outcomes(self) -> None:
        """(On the loop.)  The outcomes posted since the last flush, to the
        machine in one handling (one pass, one write of their reports)."""
        outcomes = self._outcomes
        if outcomes:
            self._outcomes = []
            if self.state is not None and self.status is Status.running:
                self._handle(*outcomes)

    def _on_secede(self, key: str) -> None:
        """(On the loop.)  The task ``key`` called ``secede()``."""
        self._flush_outcomes()  # in the order the threads posted them
        if self.state is not None and self.status is Status.running:
            self._handle(ev.TaskSeceded(stimulus_id=f"secede-{key}", key=key))

    def _on_rejoin(self, key: str) -> None:
        """(On the loop.)  The seceded task ``key`` called ``rejoin()`` and waits."""
        self._flush_outcomes()
        if self.state is not None and self.status is Status.running:
            self._handle(ev.RejoinRequested(stimulus_id=f"rejoin-{key}", key=key))
        else:
            self.runner.resume(key)

    # ------------------------------------------------------------------ #
    # Moving data
    # ------------------------------------------------------------------ #
    def _abandon_fetches(self, peer: str, reason: str) -> None:
        """The scheduler removed ``peer``: stop waiting for its answers."""
        for request in self._fetching.pop(peer, ()):
            request.cancel(f"the scheduler removed worker {peer}: {reason}")

    async def _ask_peer(self, peer: str, keys: tuple[str, ...]) -> Any:
        """``get-data`` from ``peer``; a ``ConnectionError`` if the scheduler
        removes it meanwhile (a silent peer would never answer)."""
        request = asyncio.ensure_future(
            self.pool.rpc(peer).ask(GetData(keys), timeout=timeouts.DATA))
        pending = self._fetching.setdefault(peer, set())
        pending.add(request)
        try:
            return await request
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this fetch itself was cancelled (the worker closes)
            raise ConnectionError(exc.args[0] if exc.args else f"{peer} was removed") from None
        finally:
            pending.discard(request)
            if not pending and self._fetching.get(peer) is pending:
                del self._fetching[peer]

    async def _fetch(self, peer: str, keys: Iterable[str]) -> None:
        keys = tuple(keys)
        start = time.time()
        try:
            reply = await self._ask_peer(peer, keys)
            got = {k: v.deserialize() for k, v in reply["data"].items()}
        except Exception as exc:  # unreachable peer, broken connection, bad payload
            self._handle(ev.FetchFailed(stimulus_id=f"fetch-failed-{peer}", peer=peer, keys=keys,
                                        reason=f"{type(exc).__name__}: {exc}"))
            return
        if self.status is not Status.running:
            return
        nbytes = {k: self.data.put(k, v) for k, v in got.items()}
        del got
        self.diagnostics.fetched(peer, nbytes, start, time.time())
        self._handle(ev.FetchSucceeded(stimulus_id=f"fetched-{peer}", peer=peer, requested=keys,
                                       nbytes=nbytes))

    async def _ask_who_has(self, keys: Iterable[str]) -> None:
        who_has = await self.pool.rpc(self.scheduler_address).ask(
            WhoHas(tuple(keys)), timeout=timeouts.REQUEST)
        self._handle(ev.WhoHasAnswered(stimulus_id="who-has-answer",
                                       who_has={k: tuple(v) for k, v in who_has.items()}))

    def _dump_state(self, msg: DumpWorkerState, comm: Any) -> dict[str, Any]:
        """This worker's state machine and recent log lines, as plain data."""
        state = self.state
        return {"address": self.address, "name": self.name, "nthreads": self.nthreads,
                "status": self.status.name,
                "tasks": cluster_state.snapshot_records(state.tasks) if state else {},
                "executing": sorted(state.executing) if state else [],
                "seceded": list(state.seceded) if state else [],
                "logs": self.log_ring.recent()}

    def _get_data(self, msg: GetData, comm: Any) -> dict[str, Any]:
        return {"data": {k: self.data.get_serialized(k) for k in msg.keys if k in self.data}}

    async def _put_data(self, msg: PutData, comm: Any) -> dict[str, Any]:
        if not self._registered.is_set():  # (re)starting: the report would reach nobody
            await asyncio.wait_for(self._registered.wait(), timeouts.REQUEST.get())
        nbytes = {k: self.data.put(k, v.deserialize()) for k, v in msg.data.items()}
        self._handle(ev.DataPut(stimulus_id="put-data", nbytes=nbytes, client=msg.client))
        return {"incarnation": self.incarnation, "nbytes": nbytes}

    async def _run(self, msg: Run, comm: Any) -> Serialized:
        fn, args, kwargs = msg.call.deserialize()
        result = await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))
        return serialize(result)

    # ------------------------------------------------------------------ #
    def _rss(self) -> int:
        return int(self._process.memory_info().rss)

    def _on_pause(self, paused: bool) -> None:
        if self.state is not None and self.status is Status.running:
            self._handle(ev.PauseChanged(stimulus_id="memory-pause" if paused else "memory-resume",
                                         paused=paused))

    async def _memory_loop(self) -> None:
        assert self.memory_monitor is not None
        interval = self.memory_monitor.thresholds.interval
        while True:
            await asyncio.sleep(interval)
            try:
                self.memory_monitor.check()
            except Exception as exc:  # e.g. disk trouble: keep watching, keep the evidence
                logger.exception("memory monitor check failed")
                self.errors.append(exc)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            state = self.state
            if state is None:
                continue
            cpu, transfers = self.diagnostics.heartbeat_figures()
            self._send(Heartbeat(
                "", self.address, 0.0, memory=self._process.memory_info().rss,
                executing=state.executing_count, in_memory=len(self.data),
                managed=self.data.memory_bytes, spilled=self.data.spilled_bytes,
                paused=state.paused, cpu=cpu, transfers=tuple(transfers), seen=state.epoch))
            self._check_scheduler_alive()

    def _check_scheduler_alive(self) -> None:
        """Drop the stream of a scheduler silent past the TTL (the reader then reconnects)."""
        now = time.monotonic()
        liveness = self.scheduler_liveness
        for address in liveness.expired(now):
            logger.warning("heard nothing from the scheduler at %s for %.1fs (%g times the "
                           "option scheduler.worker-ttl: %gs): dropping the connection", address,
                           liveness.silent_for(address, now), SCHEDULER_TTL_FACTOR,
                           liveness.ttl / SCHEDULER_TTL_FACTOR)
            liveness.forget(address)
            if self._scheduler_comm is not None:
                self._scheduler_comm.abort()
