"""The pure scheduler state machine: ``SchedulerState.handle(*events) -> commands``.

Theory of operation
-------------------
The scheduler shell (``taskmill.server.scheduler``) turns wire messages into
the typed events of ``taskmill.core.scheduler.events`` and feeds them to
:meth:`SchedulerState.handle`, which returns the commands to send
(``ComputeTask``/``FreeKeys`` to workers, ``Report*`` to clients).  Nothing in
here touches sockets, threads, asyncio or the clock: time arrives on events.

This module holds the *event handlers* (what each event means) and the
read-only queries the shell answers clients with; the task transitions, the
reference counting and placement live in ``scheduler_transitions`` (and
``placement``), the invariants in ``scheduler_validate``.

Decisions the shell relies on
-----------------------------
* **Reports.**  Each wanting client gets one report per outcome:
  ``KeyInMemory`` when the key reaches memory, ``KeyErred`` when it
  fails, ``KeyLost`` when its data is gone and it has no lineage
  (scattered data), ``KeyCancelled`` on cancel/restart.  A key recomputed
  after its data was lost is *not* reported again (the client was told it
  finished; it learns the new holders through ``who_has``); if that
  recomputation fails, the client does get ``KeyErred``.  A client that
  starts wanting a key already in memory/erred is told at once.
* **Unknown keys** in ``WantKeys`` (or a wanted key absent from a
  submission and unknown) get ``KeyLost`` with a reason; nothing is kept.
* **Failures.**  ``TaskErred`` errs the task and every active dependent
  (transitively) with the same error; ``retries`` re-run it first.  The
  erring worker also gets ``FreeKeys`` for the key (drop its error record).
* **Stale results.**  A ``TaskFinished`` from a worker the key is not
  processing on is ignored and answered with ``FreeKeys`` to that worker
  (unless it is already a known holder): the worker may have been told to
  drop the key meanwhile, so recording its copy could point others at data
  that is gone.  Stale ``TaskErred`` is ignored the same way.
* **Missing data** (``MissingData``): the errant worker's copy is
  struck off.  If other copies remain nothing else happens (the asking worker
  tries them, or asks ``who_has``).  If none remain the key is recomputed
  from lineage, and every task processing anywhere that needs it goes back to
  waiting (``FreeKeys`` to its worker); it is sent again, possibly to the same
  worker, once the input is back in memory.  Without lineage the key errs as
  lost (``KeyLost``) and its dependents err ``MissingDependencyError``.
  ``ReleasedKeys`` dropping a last copy is handled the same way.
* **Worker loss.**  Tasks processing there are rescheduled; the ``nthreads``
  it was given first (the ones it was most likely running) each count a
  suspicious death, and after ``allowed_failures`` deaths err
  ``KilledWorker``.  Keys whose only copy was there are recomputed (if still
  needed) or reported lost.  ``RegisterWorker`` for an address already known
  is treated as that worker leaving and a new process joining.  For a while
  after such a death small results get insurance copies (``AcquireReplicas``,
  see ``taskmill.core.scheduler.replicas``).
* **Replicas** reported by ``AddKeys`` are recorded only for keys in
  memory; any other key is answered with ``FreeKeys``.
* **Copies, retirement, pause** (``ReplicateRequested``, ``RetireRequested``,
  ``RetireCancelled``, ``Paused``) and worker removal are handled in
  ``taskmill.core.scheduler.replicas``: a retired worker's tasks are
  rescheduled without counting as suspicious; paused and retiring workers get
  no new task.
* **Restrictions.**  ``workers=`` with ``allow_other_workers=False`` runs
  only there; with no allowed worker alive the task is ``no-worker`` until
  one joins.  With ``allow_other_workers=True`` the allowed workers are
  preferred when they have a free slot.
* **Resources** (``TaskSpec.resources``, ``RegisterWorker.resources``): a task
  runs only on a worker declaring enough, while enough is free there; it
  waits ``queued`` while they are busy and ``no-worker`` (with a
  ``TaskStalled`` warning and a story entry saying what is missing) while no
  live worker declares enough.  See ``taskmill.core.scheduler.resource_index``.
* Unknown workers, unknown keys, duplicate or stale events are ignored with a
  story entry, never an exception.  An unknown event *type* raises TypeError.
* Commands of one ``handle`` call come out in causal order; a ``FreeKeys``
  to a worker is never emitted after a ``ComputeTask`` of the same key to it
  that it should precede.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from taskmill.core.stimulus_log import DEFAULT_SIZE, StimulusLog
from taskmill.core.scheduler.placement import queue_push, worker_capacity
from taskmill.core.resources import resource_spec
from taskmill.core.scheduler.events import (
    ClientConnected,
    ClientDisconnected,
    ReplicateRequested,
    RestartRequested,
    RetireCancelled,
    RetireRequested,
    SchedulerInput,
    SchedulerOutput,
    WorkerLeft,
)
from taskmill.protocol.vocabulary import (
    AddKeys,
    Address,
    CancelKeys,
    FireAndForget,
    Heartbeat,
    Key,
    KeyCancelled,
    KeyLost,
    MissingData,
    Paused,
    RegisterWorker,
    ReleaseKeys,
    ReleasedKeys,
    ScatterDone,
    TaskErred,
    TaskFinished,
    TaskSpec,
    UpdateGraph,
    WantKeys,
)
from taskmill.core.scheduler.records import (
    ERRED,
    FORGOTTEN,
    LOST_DATA,
    MAX_PREFIXES,
    MEMORY,
    MISSING_DEPENDENCY,
    NO_WORKER,
    PROCESSING,
    QUEUED,
    RELEASED,
    WAITING,
    ClientRecord,
    FIRE_AND_FORGET,
    ErrorInfo,
    TaskRecord,
    WorkerRecord,
)
from taskmill.core.scheduler.replicas import ReplicaManagement
from taskmill.core.scheduler.transitions import CHECK, InvalidTransition
from taskmill.core.scheduler.validate import validate_state

__all__ = ["SchedulerState", "InvalidTransition"]


class SchedulerState(ReplicaManagement):
    """All of the scheduler's decisions, as a pure state machine.

    ``handle(*events)`` is the only way to change state.  With
    ``validate=True`` every invariant is checked after every event."""

    def __init__(self, *, allowed_failures: int = 3, validate: bool = False,
                 stimulus_log_size: int = DEFAULT_SIZE) -> None:
        super().__init__(allowed_failures=allowed_failures, validate=validate)
        #: the events of the last calls of ``handle``, to replay a failure
        self.stimulus_log = StimulusLog(SchedulerState, dict(
            allowed_failures=allowed_failures, stimulus_log_size=stimulus_log_size),
            stimulus_log_size)
        self._handlers: dict[type, Callable[[Any], None]] = {
            UpdateGraph: self._on_graph_submitted,
            TaskFinished: self._on_task_finished,
            TaskErred: self._on_task_erred,
            ReleaseKeys: self._on_keys_released,
            WantKeys: self._on_keys_wanted,
            FireAndForget: self._on_fire_and_forget,
            ClientConnected: self._on_client_connected,
            ClientDisconnected: self._on_client_disconnected,
            CancelKeys: self._on_cancel_requested,
            ScatterDone: self._on_data_scattered,
            RestartRequested: self._on_restart_requested,
            RegisterWorker: self._on_worker_joined,
            WorkerLeft: self._on_worker_left,
            AddKeys: self._on_worker_has_keys,
            ReleasedKeys: self._on_worker_released_keys,
            MissingData: self._on_worker_missing_data,
            Heartbeat: self._on_worker_capacity,
            Paused: self._on_worker_paused,
            ReplicateRequested: self._on_replicate_requested,
            RetireRequested: self._on_retire_requested,
            RetireCancelled: self._on_retire_cancelled,
        }

    # ------------------------------------------------------------------ #
    # The entry point
    # ------------------------------------------------------------------ #
    def handle(self, *events: SchedulerInput) -> list[SchedulerOutput]:
        """Apply ``events`` in order; return the commands they cause.  A
        failure (a broken invariant under ``validate``, a bug) writes the
        stimulus log out and names the file in the exception."""
        self.stimulus_log.record(events)
        try:
            return self._handle(events)
        except Exception as exc:
            self.stimulus_log.failed(exc)
            raise

    def _handle(self, events: tuple[SchedulerInput, ...]) -> list[SchedulerOutput]:
        queue = list(events)
        for event in queue:
            handler = self._handlers.get(type(event))
            if handler is None:
                raise TypeError(f"not a scheduler event: {event!r}")
            self._stimulus_id = event.stimulus_id
            try:
                handler(event)
                self._drain()
                self._schedule_ready()
                while self._retire_dirty:  # retirement may remove workers: drain again
                    self._progress_retirement()
                    self._drain()
                    self._schedule_ready()
                if self._acquire_batch:
                    self._flush_copies()
            except BaseException:
                # A bug: drop this event's pending work so the next call starts
                # clean; commands already made are returned by the next call.
                self._recs.clear()
                self._ready.clear()
                self._freed.clear()
                self._acquire_batch.clear()
                self._retire_dirty = False
                self._flush_frees()
                raise
            if self._pending_free:
                self._flush_frees()
            if self.validate_each_event:
                self.validate()
            if self._forgotten_done:  # fire-and-forget keys done: nobody holds them now
                keys, self._forgotten_done = tuple(self._forgotten_done), []
                queue.append(ReleaseKeys(event.stimulus_id, FIRE_AND_FORGET, keys))
        cmds = self._cmds
        self._cmds = []
        return cmds

    def validate(self) -> None:
        """Check every invariant; raise AssertionError with the key's story."""
        validate_state(self)

    # ------------------------------------------------------------------ #
    # Queries (read-only)
    # ------------------------------------------------------------------ #
    def who_has(self, keys: Iterable[Key] | None = None) -> dict[Key, list[Address]]:
        """Holders of ``keys`` (empty list: not in memory or unknown); with
        no ``keys``, of every key in memory."""
        if keys is None:
            return {
                k: [ws.address for ws in ts.who_has]
                for k, ts in self.tasks.items()
                if ts.state == MEMORY
            }
        out: dict[Key, list[Address]] = {}
        for k in keys:
            ts = self.tasks.get(k)
            out[k] = [ws.address for ws in ts.who_has] if ts is not None else []
        return out

    def has_what(self) -> dict[Address, list[Key]]:
        """The keys each worker holds."""
        return {a: [ts.key for ts in ws.has_what] for a, ws in self.workers.items()}

    def nthreads(self) -> dict[Address, int]:
        return {a: ws.nthreads for a, ws in self.workers.items()}

    def workers_info(self) -> dict[Address, dict[str, Any]]:
        return {
            a: {
                "nthreads": ws.nthreads,
                "memory_limit": ws.memory_limit,
                "nanny": ws.nanny,
                "name": ws.name,
                "processing": len(ws.processing),
                "in_memory": len(ws.has_what),
                "nbytes": ws.nbytes,
                "memory": ws.memory,
                "last_seen": ws.last_seen,
                "paused": ws.paused,
                "retiring": ws.retiring,
                "resources": dict(ws.resources),
                "resources_used": dict(ws.resources_used),
            }
            for a, ws in self.workers.items()
        }

    def task_state(self, key: Key) -> str | None:
        ts = self.tasks.get(key)
        return ts.state if ts is not None else None

    def workers_for_scatter(self, n: int) -> list[Address]:
        """Where to put ``n`` scattered items: spread over the workers, least
        loaded (bytes held per thread, then tasks in flight) first."""
        if n <= 0 or not self.workers:
            return []
        open_workers = [ws for ws in self.workers.values() if ws.open]
        order = sorted(
            open_workers or self.workers.values(),
            key=lambda ws: (ws.nbytes / max(1, ws.nthreads), ws.used / ws.capacity),
        )
        return [order[i % len(order)].address for i in range(n)]

    # ------------------------------------------------------------------ #
    # Clients
    # ------------------------------------------------------------------ #
    def _client(self, client: str) -> ClientRecord:
        cs = self.clients.get(client)
        if cs is None:
            cs = self.clients[client] = ClientRecord(client)
        return cs

    def _want(self, cs: ClientRecord, ts: TaskRecord) -> None:
        """``cs`` wants ``ts``: report its outcome at once if it has one,
        compute it if it is only lineage."""
        if cs.client not in ts.who_wants:
            ts.who_wants[cs.client] = ""
            cs.wants[ts] = None
        state = ts.state
        if state == MEMORY or state == ERRED:
            self._report_current(ts)
        elif state == RELEASED:
            self._recs.append((ts, CHECK, None))

    def _unknown_wanted(self, client: str, key: Key) -> None:
        self._ignore(key, f"client {client} wants an unknown key")
        if client == FIRE_AND_FORGET:
            return
        self._cmds.append(
            KeyLost(
                self._stimulus_id,
                client,
                key,
                f"key {key!r} is not known to the scheduler "
                "(never submitted, or released and forgotten)",
            )
        )

    def _release_want(self, cs: ClientRecord, ts: TaskRecord) -> None:
        if cs.wants.pop(ts, 0) is None:
            del ts.who_wants[cs.client]
            self._recs.append((ts, CHECK, None))

    def _on_client_connected(self, ev: ClientConnected) -> None:
        self._client(ev.client)

    def _on_client_disconnected(self, ev: ClientDisconnected) -> None:
        cs = self.clients.pop(ev.client, None)
        if cs is None:
            return
        for ts in list(cs.wants):
            self._release_want(cs, ts)

    def _on_keys_released(self, ev: ReleaseKeys) -> None:
        cs = self.clients.get(ev.client)
        for key in ev.keys:
            ts = self.tasks.get(key)
            if ts is None or cs is None or ts not in cs.wants:
                self._ignore(key, f"client {ev.client} released a key it did not want")
                continue
            self._release_want(cs, ts)

    def _on_fire_and_forget(self, ev: FireAndForget) -> None:
        self._want_keys(FIRE_AND_FORGET, ev.keys)

    def _on_keys_wanted(self, ev: WantKeys) -> None:
        self._want_keys(ev.client, ev.keys)

    def _want_keys(self, client: str, keys: tuple[Key, ...]) -> None:
        cs = self._client(client)
        for key in keys:
            ts = self.tasks.get(key)
            if ts is None:
                self._unknown_wanted(client, key)
            else:
                self._want(cs, ts)

    # ------------------------------------------------------------------ #
    # Graphs
    # ------------------------------------------------------------------ #
    def _new_record(self, key: Key, nt: TaskSpec | None) -> TaskRecord:
        self._seq += 1
        if nt is None:
            ts = TaskRecord(key, None, (0,), self._seq)
        else:
            ts = TaskRecord(
                key,
                nt,
                nt.priority,
                self._seq,
                nt.retries,
                frozenset(nt.workers) if nt.workers is not None else None,
                nt.allow_other_workers,
                resource_spec(nt.resources),
            )
        self.tasks[key] = ts
        self._log(key, FORGOTTEN, RELEASED, "new")
        return ts

    def _redefine(self, ts: TaskRecord, nt: TaskSpec | None) -> None:
        """Give a released task (that had erred) a new definition."""
        for dts in ts.dependencies:
            dts.dependents.pop(ts, None)
            self._recs.append((dts, CHECK, None))
        ts.dependencies = {}
        self._seq += 1
        ts.seq = self._seq
        ts.suspicious = 0
        ts.deaths = ()
        if nt is None:
            ts.run_spec = None
            ts.restrictions = None
            ts.allow_other_workers = False
            ts.resources = None
        else:
            ts.run_spec = nt
            ts.priority = nt.priority
            ts.retries = nt.retries
            ts.restrictions = frozenset(nt.workers) if nt.workers is not None else None
            ts.allow_other_workers = nt.allow_other_workers
            ts.resources = resource_spec(nt.resources)
        ts.sort_key = (ts.priority, ts.seq)
        for client in ts.who_wants:
            ts.who_wants[client] = ""  # the new attempt's outcome is news to all

    def _on_graph_submitted(self, ev: UpdateGraph) -> None:
        if ev.funcs:
            self.functions.update(ev.funcs)
        cs = self._client(ev.client)
        added: list[tuple[TaskRecord, TaskSpec]] = []
        seen: set[Key] = set()
        for nt in ev.tasks:
            key = nt.key
            if key in seen:
                continue
            seen.add(key)
            ts = self.tasks.get(key)
            if ts is None:
                ts = self._new_record(key, nt)
            elif ts.state == ERRED:
                self._transition(ts, RELEASED)
                self._redefine(ts, nt)
            else:
                continue  # known and fine: reuse it
            added.append((ts, nt))
        missing: list[tuple[TaskRecord, Key]] = []
        for ts, nt in added:
            for dep in nt.dependencies:
                dts = self.tasks.get(dep)
                if dts is None or dts is ts:
                    missing.append((ts, dep))
                    continue
                ts.dependencies[dts] = None
                dts.dependents[ts] = None
        wants = cs.wants
        client = cs.client
        for key in ev.wanted:
            ts = self.tasks.get(key)
            if ts is None:
                self._unknown_wanted(ev.client, key)
            elif ts.state == RELEASED:  # new ones get their CHECK below
                if client not in ts.who_wants:
                    ts.who_wants[client] = ""
                    wants[ts] = None
                    if ts.dependents:  # old lineage: not in ``added``
                        self._recs.append((ts, CHECK, None))
            else:
                self._want(cs, ts)
        for ts, dep in missing:
            if ts.state == RELEASED:
                self._transition(
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
        check = self._check
        for ts, _ in added:
            if ts.state == RELEASED:
                check(ts)

    def _on_cancel_requested(self, ev: CancelKeys) -> None:
        closure: dict[TaskRecord, None] = {}
        stack: list[TaskRecord] = []
        for key in ev.keys:
            ts = self.tasks.get(key)
            if ts is None:
                self._ignore(key, f"client {ev.client} cancelled an unknown key")
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
        for ts in closure:
            for client in ts.who_wants:
                self._cmds.append(KeyCancelled(self._stimulus_id, client, ts.key, reason))
                cs = self.clients.get(client)
                if cs is not None:
                    cs.wants.pop(ts, None)
            ts.who_wants.clear()
        for ts in closure:
            self._transition(ts, RELEASED)
        for ts in closure:
            self._transition(ts, FORGOTTEN)

    def _on_data_scattered(self, ev: ScatterDone) -> None:
        cs = self._client(ev.client)
        for key, addrs in ev.who_has.items():
            holders = [self.workers[a] for a in addrs if a in self.workers]
            nbytes = ev.nbytes.get(key, -1)
            type_name = ev.type_names.get(key, "") if ev.type_names else ""
            ts = self.tasks.get(key)
            if ts is None:
                ts = self._new_record(key, None)
            elif ts.state == ERRED:
                self._transition(ts, RELEASED)
                self._redefine(ts, None)
            if cs.client not in ts.who_wants:
                ts.who_wants[cs.client] = ""
                cs.wants[ts] = None
            if ts.state == MEMORY:
                for ws in holders:
                    self._add_replica(ts, ws)
                self._report_current(ts)
            elif holders:
                self._transition(ts, RELEASED)
                self._transition(ts, MEMORY, (holders, nbytes, type_name))
            else:
                self._transition(
                    ts,
                    ERRED,
                    ErrorInfo(
                        None,
                        None,
                        f"key {key!r} was scattered to unknown workers {list(addrs)}",
                        "",
                        LOST_DATA,
                    ),
                )

    def _on_restart_requested(self, ev: RestartRequested) -> None:
        for key, ts in self.tasks.items():
            for client in ts.who_wants:
                self._cmds.append(KeyCancelled(self._stimulus_id, client, key, ev.reason))
            self._log(key, ts.state, FORGOTTEN, "restart")
            ts.state = FORGOTTEN
        self.tasks.clear()
        for cs in self.clients.values():
            cs.wants.clear()
        for ws in list(self.retiring):
            self._stop_retiring(ws, ev.reason)
        for ws in self.workers.values():
            ws.processing.clear()
            ws.has_what.clear()
            ws.acquiring.clear()
            ws.restricted_queue.clear()
            ws.resources_used.clear()
            ws.used = 0
            ws.nbytes = 0
            if ws.open:
                self.idle[ws] = None
        self.queue.clear()
        self.restricted_waiting.clear()
        self._uninsured.clear()
        self.resource_index.clear_tasks()
        self._recs.clear()
        self._ready.clear()
        self._freed.clear()
        self._pending_free.clear()
        self._acquire_batch.clear()

    # ------------------------------------------------------------------ #
    # Task results
    # ------------------------------------------------------------------ #
    def _on_task_finished(self, ev: TaskFinished) -> None:
        ws = self.workers.get(ev.worker)
        if ws is None:
            self._ignore(ev.key, f"TaskFinished from unknown worker {ev.worker}")
            return
        ts = self.tasks.get(ev.key)
        if ts is None or ts.processing_on is not ws:
            if ts is not None and ws in ts.who_has:
                self._ignore(ev.key, f"duplicate TaskFinished from {ev.worker}")
            else:
                self._ignore(ev.key, f"stale TaskFinished from {ev.worker}: freeing it there")
                self._free(ws, ev.key)
            return
        duration = ev.stop - ev.start
        if duration >= 0 and ev.stop > 0:  # zero times: obtained without running it
            old = self.durations.get(ts.prefix)
            if old is not None:
                self.durations[ts.prefix] = 0.5 * old + 0.5 * duration
            elif len(self.durations) < MAX_PREFIXES:
                self.durations[ts.prefix] = duration
            old_bytes = self.output_bytes.get(ts.prefix)
            if old_bytes is not None:
                self.output_bytes[ts.prefix] = 0.5 * old_bytes + 0.5 * ev.nbytes
            elif len(self.output_bytes) < MAX_PREFIXES:
                self.output_bytes[ts.prefix] = ev.nbytes
        self._transition(ts, MEMORY, (ws, ev.nbytes, ev.type_name or ts.type_name, ev.value))
        self._insure(ts)

    def _on_task_erred(self, ev: TaskErred) -> None:
        ws = self.workers.get(ev.worker)
        if ws is None:
            self._ignore(ev.key, f"TaskErred from unknown worker {ev.worker}")
            return
        ts = self.tasks.get(ev.key)
        if ts is None or ts.processing_on is not ws:
            self._ignore(ev.key, f"stale TaskErred from {ev.worker}")
            if ts is None or ws not in ts.who_has:
                self._free(ws, ev.key)
            return
        if ts.retries > 0:
            ts.retries -= 1
            self._log(ts.key, PROCESSING, PROCESSING, f"retry ({ts.retries} left)")
            self._transition(ts, WAITING)
            return
        info = ErrorInfo(ev.exception, ev.traceback, ev.exception_text, ws.address, "")
        self._transition(ts, ERRED, info)

    # ------------------------------------------------------------------ #
    # Workers
    # ------------------------------------------------------------------ #
    def _on_worker_joined(self, ev: RegisterWorker) -> None:
        if ev.worker in self.workers:
            self._remove_worker(ev.worker, "worker re-registered at the same address")
        ws = WorkerRecord(
            ev.worker,
            ev.nthreads,
            ev.memory_limit,
            worker_capacity(ev.nthreads),
            ev.nanny,
            ev.name,
            ev.now,
            dict(ev.resources or {}),
        )
        self.workers[ev.worker] = ws
        self.idle[ws] = None
        self._freed[ws] = None
        self._ready.extend(self.resource_index.add_worker(ws))
        for ts in self.restricted_waiting.get(ev.worker, ()):
            if ts.state == NO_WORKER:
                self._ready.append(ts)
            elif ts.state == QUEUED:
                queue_push(ws.restricted_queue, ts)
        if self.retiring:  # a new place for the data of retiring workers
            self._retire_dirty = True
        self._insure_pending()

    def _on_worker_left(self, ev: WorkerLeft) -> None:
        self._tick(ev.now)
        if ev.worker not in self.workers:
            self._log("", "", "", f"ignored: WorkerLeft for unknown worker {ev.worker}")
            return
        self._remove_worker(ev.worker, ev.reason)

    def _on_worker_has_keys(self, ev: AddKeys) -> None:
        ws = self.workers.get(ev.worker)
        if ws is None:
            self._log("", "", "", f"ignored: AddKeys from unknown worker {ev.worker}")
            return
        for key, nbytes in ev.nbytes.items():
            ts = self.tasks.get(key)
            if ts is not None and ts.state == MEMORY:
                if ts.nbytes < 0 and nbytes >= 0:
                    ts.nbytes = nbytes
                self._add_replica(ts, ws)
            else:
                self._ignore(key, f"{ev.worker} has an unneeded copy: freeing it")
                self._free(ws, key)

    def _on_worker_released_keys(self, ev: ReleasedKeys) -> None:
        ws = self.workers.get(ev.worker)
        if ws is None:
            self._log("", "", "", f"ignored: ReleasedKeys from unknown {ev.worker}")
            return
        for key in ev.keys:
            ts = self.tasks.get(key)
            if ts is not None and ws in ts.acquiring_on:
                self._log(key, ts.state, ts.state, f"{ev.worker} declined to fetch a copy")
                self._drop_acquisition(ts, ws)
                continue
            if ts is None or ws not in ts.who_has:
                self._ignore(key, f"{ev.worker} released a copy it was not known to hold")
                continue
            self._remove_replica(ts, ws)
            if not ts.who_has:
                self._lost(ts, f"key {key!r} was held only on worker {ev.worker} which released it")

    def _on_worker_missing_data(self, ev: MissingData) -> None:
        errant = self.workers.get(ev.errant_worker)
        for key in ev.keys:
            ts = self.tasks.get(key)
            if ts is None or ts.state != MEMORY:
                self._ignore(key, f"{ev.worker} misses it on {ev.errant_worker}")
                continue
            if errant is None or errant not in ts.who_has:
                self._ignore(key, f"{ev.worker} misses it on non-holder {ev.errant_worker}")
                continue
            self._remove_replica(ts, errant)
            self._log(key, MEMORY, MEMORY, f"{ev.worker} could not get it from {ev.errant_worker}")
            if not ts.who_has:
                self._lost(
                    ts,
                    f"key {key!r} was held only on worker {ev.errant_worker} which "
                    f"no longer has it (reported by {ev.worker})",
                )

    def _on_worker_capacity(self, ev: Heartbeat) -> None:
        self._tick(ev.now)
        ws = self.workers.get(ev.worker)
        if ws is not None:
            ws.memory = ev.memory
            ws.last_seen = ev.now

