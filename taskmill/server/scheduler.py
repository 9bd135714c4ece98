"""The scheduler shell: sockets around the pure
:class:`~taskmill.core.scheduler_state.SchedulerState`.

Theory of operation
-------------------
* Clients and workers each keep one long-lived stream
  (``register-client`` / ``register-worker``).  Every batch of messages read
  from a stream becomes a batch of typed events; ``_handle`` feeds them to the
  state machine and routes the commands it returns: ``compute-task`` and
  ``free-keys`` to workers, reports to clients, all through ``BatchedSend``:
  one ``send`` per peer per batch of events, written at once when the stream
  is idle, so a tick produces at most two writes per peer.
* A client on the scheduler's own event loop (the Executor of an embedded
  cluster) skips the bytes: ``connect_local_client`` gives it a
  :mod:`~taskmill.comm.local` link, whose batches go through the same
  ``_client_events`` as a socket's.
* Short requests (``who-has``, ``nthreads``, ``scatter-targets``,
  ``restart``, ``upload-file`` ...) use the request/reply convention.
* The scheduler never unpickles user data: functions, arguments, results
  and exceptions pass through as opaque ``Serialized`` payloads.  Functions
  are kept by token, so each is received once and sent once per worker.
* A worker whose stream closes, or that misses heartbeats for
  ``heartbeat_timeout`` seconds, is removed (``WorkerLeft``); the state
  machine reschedules or recomputes what it had.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from taskmill import timeouts
from taskmill.client.waiting import FIRE_AND_FORGET
from taskmill.comm import BatchedSend, CommClosedError
from taskmill.comm.local import LocalEnd, local_link
from taskmill.core import scheduler_events as ev
from taskmill.core.resources import check_resources, format_resources
from taskmill.core.scheduler_state import SchedulerState
from taskmill.dashboard import service as dashboard
from taskmill.dashboard.monitor import SchedulerMonitor
from taskmill.protocol import Serialized
from taskmill.server.node import Node, Status
from taskmill.server import runtime
from taskmill.server.runtime import HeapFreezer
from taskmill.server.replication import ReplicaRequests

logger = logging.getLogger("taskmill.scheduler")

NANNY_REPORT_WAIT = 1.0  # seconds to wait for a nanny's word on why its worker died
#: a client message adding at least this many tasks lets other streams in before the next one
YIELD_AFTER_TASKS = 100


class Scheduler(Node):
    """The central scheduler server."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 8786, validate: bool = False,
                 heartbeat_timeout: float = 60.0, allowed_failures: int | None = None,
                 dashboard_port: int | None = None) -> None:
        super().__init__("scheduler")
        self.host, self.port = host, port
        self.id = f"scheduler-{uuid.uuid4().hex[:12]}"
        if allowed_failures is None:  # how many workers may die running a task before it errs
            allowed_failures = int(os.environ.get("TASKMILL_ALLOWED_FAILURES", "3"))
        self.state = SchedulerState(allowed_failures=allowed_failures, validate=validate)
        self.heartbeat_timeout = heartbeat_timeout
        self.worker_streams: dict[str, BatchedSend] = {}
        self.worker_comms: dict[str, Any] = {}
        self.worker_extra: dict[str, dict[str, Any]] = {}
        self.client_streams: dict[str, BatchedSend | LocalEnd] = {}
        self.functions: dict[str, Serialized] = {}
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
        self.replicas = ReplicaRequests(self)
        self.dashboard: Any = None
        self._dashboard_starting: asyncio.Task[None] | None = None
        self.handlers.update({
            "register-client": self._register_client,
            "register-worker": self._register_worker,
            "who-has": lambda comm=None, keys=None: self.state.who_has(keys),
            "has-what": lambda comm=None: self.state.has_what(),
            "nthreads": lambda comm=None: self.state.nthreads(),
            "running-keys": self._running_keys,
            "scheduler-info": self._scheduler_info,
            "scatter-targets": self._scatter_targets,
            "restart": self._restart,
            "upload-file": self._upload_file,
            "worker-exited": self._worker_exited,
            "replicate": self.replicas.replicate,
            "retire-workers": self.replicas.retire,
            "story": lambda comm=None, keys=(): [list(e) for k in keys for e in self.state.story(k)],
            "task-stream": lambda comm=None, start=0.0, stop=None: dashboard.task_stream(self, start, stop),
            "performance-data": lambda comm=None, start=0.0, stop=None: dashboard.performance_data(
                self, start, stop),
        })
        self._client_ops: dict[str, Callable[..., ev.SchedulerEvent | None]] = {
            "update-graph": self._update_graph,
            "release-keys": lambda client, sid, keys: ev.KeysReleased(sid, client, tuple(keys)),
            "want-keys": lambda client, sid, keys: ev.KeysWanted(sid, client, tuple(keys)),
            "fire-and-forget": lambda client, sid, keys: ev.KeysWanted(sid, FIRE_AND_FORGET, tuple(keys)),
            "cancel-keys": lambda client, sid, keys: ev.CancelRequested(sid, client, tuple(keys)),
            "scatter-done": self._scatter_done,
            "close-client": lambda client, sid: None,
        }

    async def start(self) -> Scheduler:
        await self.listen(f"tcp://{self.host}:{self.port}")
        # clients in this process (an embedded cluster's Executor) skip the sockets
        self.inproc_address = await self.listen("inproc://")
        self.status = Status.running
        runtime.embedded_scheduler_started()
        self._gc_tuned = True
        self.spawn(self._check_heartbeats(), "heartbeat-check")
        if self.dashboard_port is not None:  # starts while workers join (it imports aiohttp)
            self._dashboard_starting = self.spawn(self._start_dashboard(), "dashboard-start")
        logger.info("scheduler at %s", self.address)
        return self

    async def _start_dashboard(self) -> None:
        assert self.dashboard_port is not None
        self.dashboard = await dashboard.start_dashboard(self, self.host, self.dashboard_port)

    async def dashboard_ready(self) -> str | None:
        """Wait until the dashboard (if any) is up; its URL or None."""
        if self._dashboard_starting is not None:
            await asyncio.shield(self._dashboard_starting)
        return self.dashboard_link

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's URL, or None when it is not running."""
        return self.dashboard.url if self.dashboard is not None else None

    async def _on_close(self) -> None:
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
    def _handle(self, *events: ev.SchedulerEvent) -> None:
        if not events:
            return
        to_workers: dict[str, list[dict[str, Any]]] = {}
        to_clients: dict[str, list[dict[str, Any]]] = {}
        forgotten: list[str] = []
        self.monitor.stamp(events[-1].stimulus_id)
        try:
            commands = self.state.handle(*events)
        except Exception as exc:  # a bug: keep serving, keep the evidence
            logger.exception("scheduler state machine failed on %s", [type(e).__name__ for e in events])
            self.errors.append(exc)
            return
        self.heap_freezer.observe(len(self.state.tasks))
        for cmd in commands:
            match cmd:
                case ev.ComputeTask():
                    compute = {
                        "op": "compute-task", "key": cmd.key, "func_token": cmd.func_token,
                        "func": cmd.func, "args": cmd.args, "who_has": cmd.who_has,
                        "nbytes": cmd.nbytes, "priority": cmd.priority,
                        "stimulus_id": cmd.stimulus_id}
                    if cmd.report_value:
                        compute["report_value"] = True
                    to_workers.setdefault(cmd.worker, []).append(compute)
                case ev.FreeKeys():
                    to_workers.setdefault(cmd.worker, []).append(
                        {"op": "free-keys", "keys": cmd.keys, "stimulus_id": cmd.stimulus_id})
                case ev.ReportInMemory():
                    report = {"op": "key-in-memory", "key": cmd.key, "who_has": cmd.who_has,
                              "type_name": cmd.type_name}
                    if cmd.value is not None:
                        report["value"] = cmd.value
                    to_clients.setdefault(cmd.client, []).append(report)
                case ev.ReportErred():
                    to_clients.setdefault(cmd.client, []).append(
                        {"op": "task-erred", "key": cmd.key, "exception": cmd.exception,
                         "traceback": cmd.traceback, "text": cmd.exception_text,
                         "worker": cmd.worker, "error_type": cmd.error_type})
                case ev.ReportLost():
                    to_clients.setdefault(cmd.client, []).append(
                        {"op": "key-lost", "key": cmd.key, "reason": cmd.reason})
                case ev.ReportCancelled():
                    to_clients.setdefault(cmd.client, []).append(
                        {"op": "key-cancelled", "key": cmd.key, "reason": cmd.reason})
                case ev.AcquireReplicas():
                    to_workers.setdefault(cmd.worker, []).append(
                        {"op": "acquire-replicas", "who_has": cmd.who_has, "nbytes": cmd.nbytes,
                         "stimulus_id": cmd.stimulus_id})
                case ev.WorkerRetired():
                    to_workers.setdefault(cmd.worker, []).append(self.replicas.retired(cmd))
                case ev.RetirementAborted():
                    self.replicas.aborted(cmd)
                case ev.TaskStalled():
                    logger.warning("task %r waits for a worker: it %s; it runs when such a worker "
                                   "joins (other tasks needing the same are not logged again)",
                                   cmd.key, cmd.reason)
                case _:
                    raise TypeError(f"scheduler shell cannot run {cmd!r}")
        for worker, msgs in to_workers.items():
            self._send(self.worker_streams.get(worker), msgs)
        for client, msgs in to_clients.items():
            if client == FIRE_AND_FORGET:
                forgotten.extend(m["key"] for m in msgs if m["op"] != "key-lost")
            else:
                self._send(self.client_streams.get(client), msgs)
        if forgotten:  # fire-and-forget keys are done: nobody holds them any more
            self._handle(ev.KeysReleased(self._sid("fire-and-forget-done"), FIRE_AND_FORGET,
                                         tuple(forgotten)))
        self.replicas.check_copies()

    @staticmethod
    def _send(stream: BatchedSend | LocalEnd | None, msgs: list[dict[str, Any]]) -> None:
        if stream is None:
            return
        try:
            stream.send(*msgs)
        except CommClosedError:
            pass  # its reader notices the closed stream and removes the peer

    # ------------------------------------------------------------------ #
    # Clients
    # ------------------------------------------------------------------ #
    async def _register_client(self, comm: Any, client: str) -> None:
        await comm.write({"status": "OK", "address": self.address, "id": self.id})
        self._client_joined(client, BatchedSend(comm))
        try:
            while True:
                groups, closing = self._client_events(client, await comm.read())
                for i, events in enumerate(groups):
                    if i:
                        await asyncio.sleep(0)  # after a big graph: let others in
                    self._handle(*events)
                if closing:
                    break
        except (CommClosedError, OSError):
            pass
        finally:
            self._client_left(client)

    def connect_local_client(self, client: str) -> LocalEnd:
        """Register a client running on this scheduler's event loop; returns
        the client's end of a :mod:`~taskmill.comm.local` link."""
        if self.status is not Status.running:
            raise CommClosedError(f"scheduler {self.address} is {self.status.name}")
        theirs, ours = local_link(asyncio.get_running_loop(), self.address, client)

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

    def _client_events(self, client: str, msgs: Any) -> tuple[list[list[ev.SchedulerEvent]], bool]:
        """The events of one batch of a client's messages, in groups to handle
        in turn (a new group after each big graph), and whether the client is
        leaving (``close-client``).  Malformed messages are logged and skipped."""
        groups: list[list[ev.SchedulerEvent]] = [[]]
        closing = False
        for msg in _as_batch(msgs, client):
            op = msg.pop("op", None)
            closing = closing or op == "close-client"
            make = self._client_ops.get(op)  # type: ignore[arg-type]
            if make is None:
                logger.warning("client %s sent unknown op %r: ignored", client, op)
                continue
            try:
                event = make(client=client, sid=self._sid(op), **msg)
            except Exception as exc:
                logger.warning("client %s sent a malformed %r message (%s): ignored",
                               client, op, exc)
                continue
            if event is not None:
                groups[-1].append(event)
                if isinstance(event, ev.GraphSubmitted) and len(event.tasks) >= YIELD_AFTER_TASKS:
                    groups.append([])
        return [g for g in groups if g], closing

    def _update_graph(self, client: str, sid: str, tasks: list[list[Any]],
                      funcs: dict[str, Serialized], wanted: list[str]) -> ev.GraphSubmitted:
        self.functions.update(funcs)
        functions = self.functions
        new = tuple(
            ev.NewTask(key=key, run_spec=ev.RunSpec(token, functions.get(token), args),
                       dependencies=tuple(deps), priority=tuple(priority), retries=retries,
                       workers=tuple(workers) if workers else None,
                       allow_other_workers=allow_other,
                       resources=check_resources(resources, "task resources") or None)
            for key, token, args, deps, priority, retries, workers, allow_other, resources in tasks
        )
        return ev.GraphSubmitted(sid, client, new, tuple(wanted), time.time())

    def _scatter_done(self, client: str, sid: str, who_has: dict[str, list[str]],
                      nbytes: dict[str, int], type_names: dict[str, str]) -> ev.DataScattered:
        return ev.DataScattered(sid, client, {k: tuple(v) for k, v in who_has.items()}, nbytes,
                                type_names)

    # ------------------------------------------------------------------ #
    # Workers
    # ------------------------------------------------------------------ #
    async def _register_worker(self, comm: Any, address: str, nthreads: int, memory_limit: int,
                               nanny: str | None = None, name: str = "", pid: int = 0,
                               resources: dict[str, float] | None = None) -> None:
        if address in self.worker_streams:
            await comm.write({"status": "error", "text": f"a worker at {address} is already registered"})
            return
        try:
            resources = check_resources(resources, "worker resources", allow_zero=True)
        except (TypeError, ValueError) as exc:
            await comm.write({"status": "error", "text": str(exc)})
            return
        await comm.write({"status": "OK", "files": self.uploads})
        self.worker_streams[address] = BatchedSend(comm)
        self.worker_comms[address] = comm
        self.worker_extra[address] = {"pid": pid, "last_seen": time.monotonic(), "memory": 0}
        self._exit_reported[address] = asyncio.Event()
        logger.info("worker %s joined (%d threads, name %s%s)", address, nthreads, name or "-",
                    f", resources {format_resources(resources)}" if resources else "")
        self._handle(ev.WorkerJoined(self._sid("worker-joined"), address, nthreads, memory_limit,
                                     time.time(), nanny, name, resources))
        await self._notify_workers_changed()
        reason = "its connection closed"
        try:
            while True:
                msgs = await comm.read()
                self.worker_extra[address]["last_seen"] = time.monotonic()
                msgs = _as_batch(msgs, address)
                events = []
                for msg in msgs:
                    try:
                        event = self._worker_event(address, msg)
                    except Exception as exc:
                        logger.warning("worker %s sent a malformed %r message (%s): ignored",
                                       address, msg.get("op"), exc)
                        continue
                    if event is not None:
                        events.append(event)
                self._handle(*events)
                if any(m.get("op") == "unregister" for m in msgs):
                    reason = "it closed"
                    break
        except (CommClosedError, OSError):
            pass
        finally:
            self.worker_streams.pop(address, None)
            self.worker_comms.pop(address, None)
            exit_reported = self._exit_reported[address]
            if (nanny and reason == "its connection closed" and address not in self.exit_reasons
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
                await self._notify_workers_changed()

    def _worker_event(self, worker: str, msg: dict[str, Any]) -> ev.SchedulerEvent | None:
        op = msg["op"]
        sid = self._sid(op)
        if op == "task-finished":
            self.monitor.task_done(worker, msg, True)
            return ev.TaskFinished(sid, worker, msg["key"], msg["nbytes"], msg["type_name"],
                                   msg["start"], msg["stop"], _attached_value(msg))
        if op == "task-erred":
            self.monitor.task_done(worker, msg, False)
            return ev.TaskErred(sid, worker, msg["key"], msg["exception"], msg["traceback"],
                                msg["text"], msg["start"], msg["stop"])
        if op == "add-keys":
            return ev.WorkerHasKeys(sid, worker, msg["nbytes"])
        if op == "released-keys":
            return ev.WorkerReleasedKeys(sid, worker, tuple(msg["keys"]))
        if op == "missing-data":
            return ev.WorkerMissingData(sid, worker, msg["errant_worker"], tuple(msg["keys"]))
        if op == "heartbeat":
            self.worker_extra[worker].update(memory=msg.get("memory", 0),
                                             executing=msg.get("executing", 0),
                                             managed=msg.get("managed", 0),
                                             spilled=msg.get("spilled", 0),
                                             paused=msg.get("paused", False))
            self.monitor.heartbeat(worker, msg)
            return ev.WorkerCapacity(sid, worker, time.time(), msg.get("memory", 0))
        if op == "paused":
            return ev.WorkerPaused(sid, worker, bool(msg["paused"]))
        if op == "unregister":
            return None
        logger.warning("worker %s sent unknown op %r: ignored", worker, op)
        return None

    async def _notify_workers_changed(self) -> None:
        async with self._workers_changed:
            self._workers_changed.notify_all()

    async def _check_heartbeats(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, self.heartbeat_timeout / 4))
            now = time.monotonic()
            for address, extra in list(self.worker_extra.items()):
                if now - extra["last_seen"] > self.heartbeat_timeout:
                    self.exit_reasons[address] = (
                        f"it sent no heartbeat for {self.heartbeat_timeout:.0f}s")
                    comm = self.worker_comms.get(address)
                    if comm is not None:
                        comm.abort()

    def _worker_exited(self, worker: str, reason: str, comm: Any = None) -> None:
        """A nanny tells how its worker process ended."""
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
    def _scheduler_info(self, comm: Any = None) -> dict[str, Any]:
        workers = self.state.workers_info()
        for address, info in workers.items():
            info.update(self.worker_extra.get(address, {}))
            info.pop("last_seen", None)
        return {"address": self.address, "id": self.id, "workers": workers,
                "clients": len(self.client_streams), "dashboard": self.dashboard_link}

    async def wait_for_workers(self, n: int, timeout: float,
                               gone: frozenset[str] = frozenset()) -> None:
        """Wait until at least ``n`` workers are connected and none of ``gone`` is."""
        def ready() -> bool:
            return len(self.worker_streams) >= n and not gone & self.worker_streams.keys()

        async def wait() -> None:
            async with self._workers_changed:
                await self._workers_changed.wait_for(ready)

        try:
            await asyncio.wait_for(wait(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"only {len(self.worker_streams)} of {n} workers connected to the scheduler at "
                f"{self.address} within {timeout:.0f}s") from None

    async def _scatter_targets(self, n: int, workers: list[str] | None, broadcast: bool,
                               comm: Any = None) -> list[list[str]]:
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

    async def _restart(self, max_wait: float = 60.0, comm: Any = None) -> str:
        n = len(self.worker_streams)
        nannies = {w: i.get("nanny") for w, i in self.state.workers_info().items()}
        self._handle(ev.RestartRequested(self._sid("restart")))
        logger.info("restarting %d workers", n)

        async def restart_one(worker: str, nanny: str | None) -> None:
            if nanny:
                self.exit_reasons[worker] = "the cluster restarted"
                await self.pool.rpc(nanny).call("restart", timeout=max_wait)
            else:  # no nanny: drop the connection; the worker registers again afresh
                comm_ = self.worker_comms.get(worker)
                if comm_ is not None:
                    comm_.abort()

        await asyncio.gather(*(restart_one(w, nn) for w, nn in nannies.items()))
        await self.wait_for_workers(n, max_wait, gone=frozenset(w for w, nn in nannies.items() if nn))
        return "OK"

    async def _running_keys(self, comm: Any = None) -> list[str]:
        """Keys executing on any worker thread (asked of the workers themselves)."""
        replies = await asyncio.gather(
            *(self.pool.rpc(w).call("executing", timeout=timeouts.REQUEST)
              for w in list(self.worker_streams)),
            return_exceptions=True)
        return [k for r in replies if not isinstance(r, BaseException) for k in r]

    async def _upload_file(self, filename: str, data: bytes, comm: Any = None) -> dict[str, str]:
        self.uploads[filename] = data
        workers = list(self.worker_streams)
        paths = await asyncio.gather(
            *(self.pool.rpc(w).call("upload-file", filename=filename, data=data, timeout=timeouts.DATA)
              for w in workers))
        return dict(zip(workers, paths))


def _as_batch(msgs: Any, peer: str) -> list[dict[str, Any]]:
    """The messages of one stream read: a list of dicts; anything else is dropped."""
    if isinstance(msgs, list) and all(isinstance(m, dict) for m in msgs):
        return msgs
    logger.warning("%s sent a stream batch that is not a list of messages: ignored", peer)
    return [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []


def _attached_value(msg: dict[str, Any]) -> Serialized | None:
    """The small result a worker attached to ``task-finished``, if well formed."""
    value = msg.get("value")
    return value if isinstance(value, Serialized) else None
