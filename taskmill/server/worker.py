"""The worker shell: sockets, threads and the data store around the pure
:class:`~taskmill.core.worker_state.WorkerState`.

Theory of operation
-------------------
* One long-lived stream to the scheduler (``register-worker``): the
  scheduler's ``compute-task`` / ``free-keys`` messages become events; the
  state machine's ``Send*`` commands become batched messages back.
* ``Execute`` commands run in a thread pool of ``nthreads`` threads
  (:mod:`taskmill.server.task_runner`); the thread posts the outcome back to
  the loop, which stores the value and feeds ``ExecuteSucceeded`` /
  ``ExecuteFailed``.
* ``Fetch`` commands become one ``get-data`` request to a peer for many keys.
* Peers and clients call ``get-data``; clients call ``put-data`` (scatter),
  ``run`` and ``upload-file``.
* Memory (:mod:`taskmill.server.memory`): with a ``memory_limit``, the data
  store (:mod:`taskmill.server.data_store`) spills least recently used
  values to disk, and a monitor spills more and pauses the state machine
  (``PauseChanged``) when the process's RSS runs high.
* Heartbeats go out every ``heartbeat_interval`` seconds.  Losing the
  scheduler: the worker tries to register again for ``reconnect_timeout``
  seconds (starting afresh: a new scheduler knows none of our data), then
  closes.

All decisions live in the state machine; this module only does I/O.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable
from typing import Any

import psutil

from taskmill import timeouts
from taskmill.comm import BatchedSend, CommClosedError, connect
from taskmill.core import worker_events as ev
from taskmill.core.resources import check_resources
from taskmill.core.worker_state import WorkerState
from taskmill.protocol import Serialized, serialize
from taskmill.server.data_store import DataStore
from taskmill.server.memory import MemoryThresholds, WorkerMemoryMonitor
from taskmill.server.node import Node, Status
from taskmill.server.task_runner import TaskRunner
from taskmill.server.worker_diagnostics import WorkerDiagnostics
from taskmill.server.uploads import install_upload

logger = logging.getLogger("taskmill.worker")


class Worker(Node):
    """A worker process's server: runs tasks, stores and serves their results."""

    def __init__(self, scheduler_address: str, *, nthreads: int = 1, memory_limit: int = 0,
                 host: str = "127.0.0.1", port: int = 0, nanny: str | None = None, name: str = "",
                 heartbeat_interval: float = 1.0, reconnect_timeout: float | None = None,
                 local_directory: str | None = None, validate: bool = False,
                 memory_thresholds: MemoryThresholds | None = None,
                 resources: dict[str, float] | None = None) -> None:
        super().__init__(name or "worker")
        self.scheduler_address = scheduler_address
        self.nthreads = nthreads
        #: abstract resources declared to the scheduler (e.g. {"GPU": 2}), which
        #: sends tasks needing them only while enough are free here
        self.resources = check_resources(resources, "worker resources", allow_zero=True)
        self.memory_limit = memory_limit
        self.host, self.port = host, port
        self.nanny = nanny
        self.heartbeat_interval = heartbeat_interval
        self.reconnect_timeout = (reconnect_timeout if reconnect_timeout is not None
                                  else timeouts.RECONNECT.get())
        self.local_directory = local_directory or os.path.join(
            os.environ.get("TMPDIR", "/tmp"), f"taskmill-worker-{os.getpid()}-{id(self):x}")
        self._validate = validate
        #: fractions of ``memory_limit`` for spilling and pausing (default: from the environment)
        self.memory_thresholds = t = memory_thresholds or MemoryThresholds.from_env()
        fraction = t.target or t.spill
        self.data = DataStore(os.path.join(self.local_directory, "spill"),
                              int(memory_limit * fraction) if memory_limit > 0 and fraction else 0)
        self.functions: dict[str, Any] = {}
        #: tasks whose small results go back with ``task-finished`` (a client wants them)
        self.report_values: set[str] = set()
        self.state: WorkerState | None = None
        self.stream: BatchedSend | None = None
        self.runner = TaskRunner(nthreads, self._on_task_done)
        self._process = psutil.Process()
        self.diagnostics = WorkerDiagnostics(self._process)
        self.memory_monitor = (
            WorkerMemoryMonitor(self.data, memory_limit, t, self._rss, self._on_pause)
            if memory_limit > 0 and (t.spill or t.pause) else None)
        self.handlers.update({
            "get-data": self._get_data,
            "put-data": self._put_data,
            "run": self._run,
            "upload-file": self._upload_file,
            "executing": lambda comm=None: sorted(self.state.executing) if self.state else [],
        })

    # ------------------------------------------------------------------ #
    # Lifecycle
    # ------------------------------------------------------------------ #
    async def start(self) -> Worker:
        await self.listen(f"tcp://{self.host}:{self.port}")
        self.name = self.name if self.name != "worker" else f"worker-{self.address}"
        logger.info("worker listening at %s", self.address)
        self.status = Status.running
        await self._register()
        self.spawn(self._heartbeat_loop(), "heartbeat")
        if self.memory_monitor is not None:
            self.spawn(self._memory_loop(), "memory-monitor")
        return self

    async def _register(self) -> None:
        self.state = WorkerState(self.address, self.nthreads, validate=self._validate)
        self.data.clear()
        self.report_values.clear()
        if self.memory_monitor is not None:
            self.memory_monitor.paused = False  # the new state machine is not paused
        comm = await connect(self.scheduler_address)  # within $TASKMILL_CONNECT_TIMEOUT
        await comm.write({
            "op": "register-worker", "reply": False, "address": self.address,
            "nthreads": self.nthreads, "memory_limit": self.memory_limit,
            "nanny": self.nanny, "name": self.name, "pid": os.getpid(),
            "resources": self.resources,
        })
        try:
            reply = await asyncio.wait_for(comm.read(), timeouts.REQUEST.get())
        except asyncio.TimeoutError:
            comm.abort()
            raise TimeoutError(
                f"the scheduler at {self.scheduler_address} did not answer this worker's "
                f"registration within {timeouts.REQUEST.get():g}s "
                f"(set {timeouts.REQUEST.env} to change it)") from None
        if not isinstance(reply, dict) or reply.get("status") != "OK":
            await comm.close()
            raise ConnectionError(f"scheduler {self.scheduler_address} refused worker: {reply!r}")
        for filename, data in reply.get("files", {}).items():
            install_upload(self.local_directory, filename, data)
        self.stream = BatchedSend(comm)
        logger.info("registered with scheduler %s", self.scheduler_address)
        self.spawn(self._read_stream(comm), "scheduler-stream")

    async def close_gracefully(self) -> None:
        """Close after handing the data held only here to other workers (the
        scheduler retires this worker first, within ``TASKMILL_RETIRE_TIMEOUT``).
        If that fails (no other worker, scheduler gone, too slow), close anyway:
        the scheduler then recomputes what it can, as for any worker that leaves."""
        if self.status is Status.running and self.stream is not None:
            wait = timeouts.RETIRE.get()
            try:
                retired = await self.pool.rpc(self.scheduler_address).call(
                    "retire-workers", workers=[self.address], close_workers=False,
                    max_wait=wait, timeout=wait + timeouts.REQUEST.get())
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
        if self.stream is not None:
            try:
                self.stream.send({"op": "unregister"})
                await asyncio.wait_for(self.stream.close(), 2)
            except (CommClosedError, OSError, asyncio.TimeoutError):
                pass
        self.runner.shutdown()
        self.data.close()

    # ------------------------------------------------------------------ #
    # The scheduler stream
    # ------------------------------------------------------------------ #
    async def _read_stream(self, comm: Any) -> None:
        try:
            while True:
                msgs = await comm.read()
                events = []
                for msg in msgs:
                    try:
                        if msg.get("op") == "retired":
                            self._retired(bool(msg.get("close")))
                            continue
                        events.append(self._event_from(msg))
                    except Exception as exc:
                        logger.warning("malformed message from the scheduler (%s): ignored", exc)
                self._handle(*events)
        except (CommClosedError, OSError):
            pass
        if self.status is Status.running:
            logger.warning("lost the scheduler at %s; trying to reconnect for %.0fs",
                           self.scheduler_address, self.reconnect_timeout)
            self.spawn(self._reconnect(), "reconnect")

    async def _reconnect(self) -> None:
        self.runner.discard_all()
        deadline = time.monotonic() + self.reconnect_timeout
        while self.status is Status.running and time.monotonic() < deadline:
            try:
                await self._register()
                return
            except (OSError, asyncio.TimeoutError, ConnectionError):
                await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        if self.status is Status.running:
            logger.error("scheduler %s unreachable for %.0fs: worker shuts down",
                         self.scheduler_address, self.reconnect_timeout)
            await self.close()

    def _event_from(self, msg: dict[str, Any]) -> ev.WorkerEvent:
        op = msg["op"]
        if op == "compute-task":
            func = msg.get("func")
            if func is not None:
                self.functions.setdefault(msg["func_token"], func)
            if msg.get("report_value"):
                self.report_values.add(msg["key"])
            return ev.ComputeRequested(
                stimulus_id=msg.get("stimulus_id", "compute"), key=msg["key"],
                func_token=msg["func_token"], func=None, args=msg["args"],
                who_has={k: tuple(v) for k, v in msg["who_has"].items()},
                nbytes=msg["nbytes"], priority=tuple(msg["priority"]))
        if op == "free-keys":
            self.report_values.difference_update(msg["keys"])
            return ev.FreeRequested(stimulus_id=msg.get("stimulus_id", "free"), keys=tuple(msg["keys"]))
        if op == "acquire-replicas":
            return ev.AcquireRequested(
                stimulus_id=msg.get("stimulus_id", "acquire"),
                who_has={k: tuple(v) for k, v in msg["who_has"].items()}, nbytes=msg["nbytes"])
        raise ValueError(f"unknown message from the scheduler: {op!r}")

    def _handle(self, *events: ev.WorkerEvent) -> None:
        assert self.state is not None
        try:
            commands = self.state.handle(*events)
        except Exception as exc:  # a bug: keep serving, keep the evidence
            logger.exception("worker state machine failed on %s", [type(e).__name__ for e in events])
            self.errors.append(exc)
            return
        for cmd in commands:
            self._dispatch(cmd)

    def _dispatch(self, cmd: ev.WorkerCommand) -> None:
        match cmd:
            case ev.Execute():
                self._execute(cmd)
            case ev.SendTaskFinished():
                self._send({"op": "task-finished", "key": cmd.key, "nbytes": cmd.nbytes,
                            "type_name": cmd.type_name, "start": cmd.start, "stop": cmd.stop,
                            "transfer": self.diagnostics.transfer_time(cmd.key), "value": cmd.value})
            case ev.SendTaskErred():
                self._send({"op": "task-erred", "key": cmd.key, "exception": cmd.exception,
                            "traceback": cmd.traceback, "text": cmd.exception_text,
                            "start": cmd.start, "stop": cmd.stop,
                            "transfer": self.diagnostics.transfer_time(cmd.key)})
            case ev.Fetch():
                self.spawn(self._fetch(cmd.peer, cmd.keys), "fetch")
            case ev.DeleteData():
                for key in cmd.keys:
                    self.data.discard(key)
                self.diagnostics.forget(cmd.keys)
            case ev.CancelExecution():
                pass  # a running thread cannot be interrupted; the state machine drops its result
            case ev.AskWhoHas():
                self.spawn(self._ask_who_has(cmd.keys), "who-has")
            case ev.SendHasKeys():
                self._send({"op": "add-keys", "nbytes": cmd.nbytes})
            case ev.SendReleasedKeys():
                self._send({"op": "released-keys", "keys": list(cmd.keys)})
            case ev.SendMissingData():
                self._send({"op": "missing-data", "errant_worker": cmd.errant_worker,
                            "keys": list(cmd.keys)})
            case _:
                raise TypeError(f"worker shell cannot run {cmd!r}")

    def _send(self, msg: dict[str, Any]) -> None:
        if self.stream is None:
            return
        try:
            self.stream.send(msg)
        except CommClosedError:
            pass  # the reader notices and reconnects

    # ------------------------------------------------------------------ #
    # Running tasks
    # ------------------------------------------------------------------ #
    def _execute(self, cmd: ev.Execute) -> None:
        func = cmd.func if cmd.func is not None else self.functions.get(cmd.func_token)
        inputs = {k: self.data[k] for k in cmd.dependencies}
        self.diagnostics.executing(cmd.key, cmd.dependencies)
        self.runner.submit(cmd.key, cmd.func_token, func, cmd.args, inputs,
                           report_value=cmd.key in self.report_values)

    def _on_task_done(self, key: str, ok: bool, value: Any, tb: str, start: float, stop: float,
                      small: Serialized | None) -> None:
        """Called on the loop (via call_soon_threadsafe) when a task ends;
        ``small`` is the result serialized when a client wants it and it is small."""
        if self.state is None or self.status is not Status.running:
            return
        self.report_values.discard(key)
        if ok:
            type_name = type(value).__name__
            nbytes = self.data.put(key, value)
            del value
            self._handle(ev.ExecuteSucceeded(
                stimulus_id=f"task-finished-{key}", key=key, nbytes=nbytes,
                type_name=type_name, start=start, stop=stop, value=small))
        else:
            exc_payload, text = value
            self._handle(ev.ExecuteFailed(
                stimulus_id=f"task-erred-{key}", key=key, exception=exc_payload,
                traceback=tb, exception_text=text, start=start, stop=stop))

    # ------------------------------------------------------------------ #
    # Moving data
    # ------------------------------------------------------------------ #
    async def _fetch(self, peer: str, keys: Iterable[str]) -> None:
        keys = tuple(keys)
        start = time.time()
        try:
            reply = await self.pool.rpc(peer).call("get-data", keys=list(keys), timeout=timeouts.DATA)
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
        who_has = await self.pool.rpc(self.scheduler_address).call(
            "who-has", keys=list(keys), timeout=timeouts.REQUEST)
        self._handle(ev.WhoHasAnswered(stimulus_id="who-has-answer",
                                       who_has={k: tuple(v) for k, v in who_has.items()}))

    def _get_data(self, keys: list[str], comm: Any = None) -> dict[str, Any]:
        return {"data": {k: self.data.get_serialized(k) for k in keys if k in self.data}}

    def _put_data(self, data: dict[str, Serialized], comm: Any = None) -> dict[str, int]:
        nbytes = {k: self.data.put(k, v.deserialize()) for k, v in data.items()}
        self._handle(ev.DataPut(stimulus_id="put-data", nbytes=nbytes))
        return nbytes

    async def _run(self, call: Serialized, comm: Any = None) -> Serialized:
        fn, args, kwargs = call.deserialize()
        result = await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))
        return serialize(result)

    def _upload_file(self, filename: str, data: bytes, comm: Any = None) -> str:
        return install_upload(self.local_directory, filename, data)

    # ------------------------------------------------------------------ #
    def _rss(self) -> int:
        return int(self._process.memory_info().rss)

    def _on_pause(self, paused: bool) -> None:
        if self.state is not None and self.status is Status.running:
            self._handle(ev.PauseChanged(stimulus_id="memory-pause" if paused else "memory-resume",
                                         paused=paused))
            self._send({"op": "paused", "paused": paused})  # so new tasks go elsewhere

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
            self._send({"op": "heartbeat", "now": time.time(), "memory": self._process.memory_info().rss,
                        "executing": state.executing_count, "in_memory": len(self.data),
                        "managed": self.data.memory_bytes, "spilled": self.data.spilled_bytes,
                        "paused": state.paused,
                        **self.diagnostics.heartbeat_fields()})
