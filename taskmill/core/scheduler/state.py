"""The pure scheduler state machine: ``SchedulerState.handle(*events) -> commands``.

Theory of operation
-------------------
The scheduler shell (``taskmill.server.scheduler``) turns wire messages into
the typed events of ``taskmill.core.scheduler.events`` and feeds them to
:meth:`SchedulerState.handle`, which returns the commands to send
(``ComputeTask``/``FreeKeys`` to workers, ``Report*`` to clients).  Nothing in
here touches sockets, threads, asyncio or the clock: time arrives on events.

:class:`SchedulerState` is the one class of the machine.  It owns the task
machine and the topic objects, each the only home of its data:

* :class:`~taskmill.core.scheduler.transitions.TaskMachine`: the task
  records, reference counting and the transition table (the core);
* :class:`~taskmill.core.scheduler.membership.Membership`: the live workers,
  the ``idle`` index and the slot accounting;
* :class:`~taskmill.core.scheduler.placement.Placement`: the queues, the
  per-prefix estimates, where ready tasks go;
* :class:`~taskmill.core.scheduler.resource_index.ResourceIndex`: workers by
  declared resource and the queues of tasks needing resources;
* :class:`~taskmill.core.scheduler.replicas.Replicas`: copy requests,
  insurance copies and retirement;
* :class:`~taskmill.core.scheduler.clients.ClientWants`: clients, their
  wants and the reports they get;
* :class:`~taskmill.core.scheduler.scatters.Scatters`: scatters under way
  (the client's ``ScatterDone`` and the workers' ``KeysScattered``);
* :class:`~taskmill.core.scheduler.held_keys.HeldKeys`: data that workers
  registering again still hold (a restarted scheduler), until claimed;
* :class:`~taskmill.core.scheduler.log_forwarding.LogForwarding`: which
  clients get which workers' log records (``forward_logging``);
* :class:`~taskmill.core.scheduler.graphs.GraphIntake`: submitted graphs
  becoming records, cancels and restarts;
* :class:`~taskmill.core.scheduler.stealing.WorkStealing`: queued tasks
  moved from saturated workers to idle ones (``StealTick``, the
  ``StealRequest``/``StealResponse`` handshake).

This module holds ``handle``, the *event handlers* (what each event means,
in terms of those objects) and the read-only queries the shell answers
clients with; the invariants are checked by ``validate``.  Each event gets a
fresh :class:`~taskmill.core.scheduler.step.Step` for the work it starts;
``handle`` runs the event's phases (see ``transitions``) and drops the step
at the end, or when the event raises.

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
* **Running.**  ``TasksStarted`` from the worker a task is processing on
  marks it ``running`` and tells its wanting clients (``KeysRunning``, one
  per client per event); a report from another worker, or one that crossed
  a ``FreeKeys`` of the key, is ignored.  A running task sent back to
  waiting (its worker died, a retry, a lost input) tells them
  ``KeysRunning(running=False)``.
* **Cancel.**  ``CancelKeys`` cancels the keys and their dependents for
  every wanting client (``KeyCancelled``) and frees them where they run;
  with ``force`` each worker running one also gets ``AbandonTasks`` for them,
  right after its ``FreeKeys``.
* **Unknown keys** in ``WantKeys`` (or a wanted key absent from a
  submission and unknown) get ``KeyLost`` with a reason; nothing is kept.
* **Failures.**  ``TaskErred`` errs the task and every active dependent
  (transitively) with the same error; ``retries`` re-run it first.  The
  erring worker also gets ``FreeKeys`` for the key (drop its error record).
* **Crossed messages (epochs).**  Every ``ComputeTask``, ``FreeKeys`` and
  ``AcquireReplicas`` carries an ``epoch``: one more than the previous
  message to any worker (``SchedulerState.epoch``).  A worker's messages carry
  ``seen``, the ``epoch`` of the last of ours it had handled.  Each worker
  record keeps a ledger of the ``FreeKeys`` sent there that it has not shown
  it handled yet (``WorkerRecord.crossed``; every message from it,
  heartbeats too, settles the ledger up to its ``seen``).  A
  ``TaskFinished``, ``TaskErred``, ``AddKeys`` or ``ReleasedKeys`` about a key
  that crossed a ``FreeKeys`` of that key is ignored: the worker drops the
  key when the free arrives, and whatever it was told after the free (a new
  ``ComputeTask``, ``AcquireReplicas``) gets its own answer.  So an earlier
  run's result is never taken for a new assignment's, and a copy that is
  being freed is never recorded.
* **Stale results.**  A ``TaskFinished`` that crossed no free, from a worker
  the key is not processing on, is ignored and answered with ``FreeKeys`` to
  that worker (unless it is already a known holder): its copy is nobody's
  business.  Stale ``TaskErred`` is ignored the same way.
* **Missing data** (``MissingData``): the errant worker's copy is
  struck off, unless it was recorded at an ``epoch`` not before the
  ``MissingData``'s ``seen`` (the asking worker asked before it could know of
  that copy: the errant worker may have got the key only since, and keeps it).
  If other copies remain nothing else happens (the asking worker
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
* **Scattered data** (``ScatterDone`` from the client, ``KeysScattered``
  from each worker that took it) is credited only to the workers that took
  it and are still the same registration; data of a client gone before its
  ``ScatterDone`` is freed.  See ``taskmill.core.scheduler.scatters``.
* **Replicas** reported by ``AddKeys`` are recorded only for keys in
  memory; a key the reporting worker computes now is ignored (it answers the
  ``ComputeTask`` with that copy); any other key is answered with
  ``FreeKeys``.
* **Rebalancing** (``RebalanceRequested``): moves of data between workers,
  each a copy first and a drop once the copy arrived (``Rebalancer``,
  ``taskmill.core.scheduler.rebalance``).
* **Copies, retirement, pause** (``ReplicateRequested``, ``RetireRequested``,
  ``RetireCancelled``, ``Paused``) are handled with
  ``taskmill.core.scheduler.replicas`` and ``membership``: a retired worker's tasks are
  rescheduled without counting as suspicious; paused and retiring workers get
  no new task.
* **Secession** (``Seceded`` from a worker: a task there called ``secede()``
  or ``rejoin()``): the task stays processing, its slot is freed or taken
  again (``Membership.secede``/``rejoin``), so a worker whose threads wait on
  child tasks gets those children.
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
* A bug (an exception inside ``handle``) drops the commands of that call,
  and the stimulus log is written out: the machine's state is suspect from
  then on, and the shell stops (``TASKMILL_STRICT``) or logs it.
* Commands of one ``handle`` call come out in causal order; a ``FreeKeys``
  to a worker is never emitted after a ``ComputeTask`` of the same key to it
  that it should precede.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Iterable

from taskmill.core.scheduler.clients import ClientWants, report_running
from taskmill.core.scheduler.events import (
    ClientConnected,
    ClientDisconnected,
    RebalanceRequested,
    PinKeys,
    ReplicateRequested,
    RetireCancelled,
    RetireRequested,
    SchedulerInput,
    UnpinKeys,
    SchedulerOutput,
    StreamMarked,
    WorkerLeft,
    WorkerRetired,
)
from taskmill.core.scheduler.graphs import GraphIntake
from taskmill.core.scheduler.held_keys import HeldKeys
from taskmill.core.scheduler.log_forwarding import LogForwarding
from taskmill.core.scheduler.membership import Membership
from taskmill.core.scheduler.no_workers import NoWorkers
from taskmill.core.scheduler.placement import Placement
from taskmill.core.scheduler.policy import slot_cost
from taskmill.core.scheduler.records import (
    ERRED,
    FIRE_AND_FORGET,
    MEMORY,
    NO_WORKER,
    PROCESSING,
    WAITING,
    ClientRecord,
    ErrorInfo,
    TaskRecord,
    WorkerRecord,
)
from taskmill.core.scheduler.rebalance import Rebalancer
from taskmill.core.scheduler.replicas import Replicas
from taskmill.core.scheduler.resource_index import ResourceIndex
from taskmill.core.scheduler.scatters import Scatters
from taskmill.core.scheduler.step import Step, StoryEntry
from taskmill.core.scheduler.stealing import DEFAULT_BANDWIDTH, WorkStealing
from taskmill.core.scheduler.transitions import InvalidTransition, TaskMachine
from taskmill.core.scheduler.validate import validate_state, validate_step
from taskmill.core.shared_values import handover_holder, handover_prefix
from taskmill.core.stimulus_log import StimulusLog, log_size
from taskmill.protocol.serialize import Serialized
from taskmill.protocol.vocabulary import (
    AddKeys,
    Address,
    FireAndForget,
    HandoverDone,
    Heartbeat,
    Key,
    KeysScattered,
    MissingData,
    Paused,
    Seceded,
    StreamMark,
    RegisterWorker,
    ReleaseKeys,
    ReleasedKeys,
    ScatterDone,
    TaskErred,
    TaskFinished,
    TasksStarted,
    WantKeys,
)

__all__ = ["SchedulerState", "InvalidTransition"]


class SchedulerState:
    """All of the scheduler's decisions, as a pure state machine.

    ``handle(*events)`` is the only way to change state.  With
    ``validate=True`` every invariant is checked after every event."""

    def __init__(self, *, allowed_failures: int = 3, validate: bool = False,
                 stimulus_log_size: int | None = None, held_keys_grace: float = 90.0,
                 bandwidth: float = DEFAULT_BANDWIDTH, look_ahead: bool = True) -> None:
        self.validate_each_event = validate
        #: the events of the last calls of ``handle``, to replay a failure
        self.stimulus_log = StimulusLog(SchedulerState, dict(
            allowed_failures=allowed_failures, stimulus_log_size=stimulus_log_size,
            held_keys_grace=held_keys_grace, bandwidth=bandwidth, look_ahead=look_ahead),
            log_size(stimulus_log_size, validate))
        self._record = self.stimulus_log.record
        self.membership = Membership()
        self.resource_index = ResourceIndex()
        self.placement = Placement(self.membership, self.resource_index, look_ahead)
        self.replicas = Replicas(self.membership)
        self.wants = ClientWants()
        self.machine = TaskMachine(self.membership, self.placement, self.replicas, self.wants,
                                   allowed_failures)
        #: the ``epoch`` of the last message sent to a worker (see "Crossed messages")
        self.epoch = 0
        self.scatters = Scatters(self.machine, self.membership, self.wants)
        #: data re-registering workers hold that no client claimed yet
        self.held = HeldKeys(self.machine, self.membership, held_keys_grace)
        self.rebalancer = Rebalancer(self.machine, self.membership, self.replicas)
        self._handlers: dict[type, Callable[[Step, Any], None]] = {
            TaskFinished: self._on_task_finished,
            TaskErred: self._on_task_erred,
            TasksStarted: self._on_tasks_started,
            ReleaseKeys: self._on_keys_released,
            WantKeys: self._on_keys_wanted,
            FireAndForget: self._on_fire_and_forget,
            PinKeys: self._on_keys_pinned,
            UnpinKeys: self._on_keys_unpinned,
            HandoverDone: self._on_handover_done,
            StreamMark: self._on_stream_mark,
            ClientConnected: self._on_client_connected,
            ClientDisconnected: self._on_client_disconnected,
            ScatterDone: self.scatters.scatter_done,
            KeysScattered: self.scatters.keys_scattered,
            RegisterWorker: self._on_worker_joined,
            WorkerLeft: self._on_worker_left,
            AddKeys: self._on_worker_has_keys,
            ReleasedKeys: self._on_worker_released_keys,
            MissingData: self._on_worker_missing_data,
            Heartbeat: self._on_heartbeat,
            Paused: self._on_worker_paused,
            Seceded: self._on_task_seceded,
            ReplicateRequested: self._on_replicate_requested,
            RebalanceRequested: self._on_rebalance_requested,
            RetireRequested: self._on_retire_requested,
            RetireCancelled: self._on_retire_cancelled,
        }
        self.log_forwarding = LogForwarding()  # Executor.forward_logging's topics and clients
        self.no_workers = NoWorkers(self.machine, self.membership)  # tasks stranded without workers
        self.graphs = GraphIntake(self.machine, self.wants, self.held, self.membership,
                                  self.placement, self.replicas)  # submissions, cancels, restarts
        self.stealing = WorkStealing(self.machine, self.membership, self.placement,
                                     bandwidth)  # queued tasks moving to idle workers
        self._handlers.update({**self.log_forwarding.handlers(), **self.no_workers.handlers(),
                               **self.graphs.handlers(), **self.stealing.handlers()})

    # ------------------------------------------------------------------ #
    # The state, as the shell, the dashboard and the tests see it
    # ------------------------------------------------------------------ #
    @property
    def tasks(self) -> dict[Key, TaskRecord]:
        """Key -> record of every task not forgotten (``TaskMachine``)."""
        return self.machine.tasks

    @property
    def workers(self) -> dict[Address, WorkerRecord]:
        """Address -> record of every live worker (``Membership``)."""
        return self.membership.workers

    @property
    def clients(self) -> dict[str, ClientRecord]:
        """Client id -> record of every known client (``ClientWants``)."""
        return self.wants.clients

    @property
    def functions(self) -> dict[str, Serialized]:
        """Function token -> serialized function (``TaskMachine``)."""
        return self.machine.functions

    @property
    def durations(self) -> dict[str, float]:
        """Task prefix -> average duration in seconds (``Placement``)."""
        return self.placement.durations

    @property
    def transition_log(self) -> deque[StoryEntry]:
        """Every recorded transition and ignored stimulus, oldest first."""
        return self.machine.transition_log

    # ------------------------------------------------------------------ #
    # The entry point
    # ------------------------------------------------------------------ #
    def handle(self, *events: SchedulerInput) -> list[SchedulerOutput]:
        """Apply ``events`` in order; return the commands they cause.  A
        failure (a broken invariant under ``validate``, a bug) writes the
        stimulus log out and names the file in the exception."""
        self._record(events)
        try:
            return self._handle(events)
        except Exception as exc:
            self.stimulus_log.failed(exc)
            raise

    def _handle(self, events: tuple[SchedulerInput, ...]) -> list[SchedulerOutput]:
        cmds: list[SchedulerOutput] = []
        machine = self.machine
        story = machine.transition_log
        queue = list(events)
        for event in queue:
            handler = self._handlers.get(type(event))
            if handler is None:
                raise TypeError(f"not a scheduler event: {event!r}")
            step = Step(event.stimulus_id, story, cmds, self.epoch)
            handler(step, event)
            # the phases after the handler: drain the recommendations, place
            # ready tasks and fill freed slots, move retiring workers' data
            # (which may retire workers: drain again), send copies and frees
            machine.drain(step)
            machine.schedule_ready(step)
            while step.retire_dirty:
                self.replicas.progress(step, self._retired)
                machine.drain(step)
                machine.schedule_ready(step)
            if self.rebalancer.moving:
                self.rebalancer.progress(step)
            if step.acquire_batch:
                self.replicas.flush(step)
            if step.pending_free:
                step.flush_all_frees()
            self.epoch = step.epoch
            if self.validate_each_event:
                self.validate()
                validate_step(step)
            if step.forgotten_done:  # fire-and-forget keys done: nobody holds them now
                queue.append(ReleaseKeys(event.stimulus_id, FIRE_AND_FORGET,
                                         tuple(step.forgotten_done)))
        return cmds

    def validate(self) -> None:
        """Check every invariant; raise AssertionError with the key's story."""
        validate_state(self.machine)

    # ------------------------------------------------------------------ #
    # Queries (read-only)
    # ------------------------------------------------------------------ #
    def story(self, key: Key) -> list[StoryEntry]:
        """Every recorded transition (and ignored stimulus) of ``key``:
        ``(key, from_state, to_state, stimulus_id, note)``."""
        return self.machine.story(key)

    def who_has(self, keys: Iterable[Key] | None = None) -> dict[Key, list[Address]]:
        """Holders of ``keys`` (empty list: not in memory or unknown); with
        no ``keys``, of every key in memory."""
        tasks = self.machine.tasks
        if keys is None:
            return {
                k: [ws.address for ws in ts.who_has]
                for k, ts in tasks.items()
                if ts.state == MEMORY
            }
        out: dict[Key, list[Address]] = {}
        for k in keys:
            ts = tasks.get(k)
            out[k] = [ws.address for ws in ts.who_has] if ts is not None else []
        return out

    def task_state(self, key: Key) -> str | None:
        """The state of ``key`` (None: unknown or forgotten)."""
        ts = self.machine.tasks.get(key)
        return ts.state if ts is not None else None

    def has_what(self) -> dict[Address, list[Key]]:
        """The keys each worker holds."""
        return self.membership.has_what()

    def nthreads(self) -> dict[Address, int]:
        """The threads of each worker."""
        return self.membership.nthreads()

    def workers_info(self) -> dict[Address, dict[str, Any]]:
        """What the shell and the dashboard show of each worker."""
        return self.membership.workers_info()

    def workers_for_scatter(self, n: int) -> list[Address]:
        """Where to put ``n`` scattered items: spread over the workers, least
        loaded (bytes held per thread, then tasks in flight) first."""
        return self.membership.for_scatter(n)

    def workers_to_retire(self, n: int) -> list[Address]:
        """The ``n`` workers (not already retiring) cheapest to retire: least
        data held first."""
        return self.membership.to_retire(n)

    def copies_pending(self, keys: list[Key]) -> list[Key]:
        """Those of ``keys`` that some worker is still fetching a copy of."""
        return self.replicas.copies_pending(keys, self.machine.tasks)

    # ------------------------------------------------------------------ #
    # Clients
    # ------------------------------------------------------------------ #
    def _on_client_connected(self, step: Step, ev: ClientConnected) -> None:
        self.wants.get(ev.client)

    def _on_client_disconnected(self, step: Step, ev: ClientDisconnected) -> None:
        self.wants.disconnected(step, ev.client)
        prefix = handover_prefix(ev.client)  # the values handed to it that it never took up
        for holder in [h for h in self.wants.clients if h.startswith(prefix)]:
            self.wants.disconnected(step, holder)
        self.scatters.client_gone(step, ev.client)
        self.log_forwarding.client_gone(ev.client)

    def _on_keys_released(self, step: Step, ev: ReleaseKeys) -> None:
        self.wants.release_keys(step, ev.client, ev.keys, self.machine.tasks)

    def _on_fire_and_forget(self, step: Step, ev: FireAndForget) -> None:
        self.wants.want_keys(step, FIRE_AND_FORGET, ev.keys, self.machine.tasks)

    def _on_keys_wanted(self, step: Step, ev: WantKeys) -> None:
        self.wants.want_keys(step, ev.client, ev.keys, self.machine.tasks)

    def _on_keys_pinned(self, step: Step, ev: PinKeys) -> None:
        # a pseudo-client: the reports it is made go nowhere (the shell has no
        # stream for it), and an unknown key is only noted
        tasks = self.machine.tasks
        holder = self.wants.get(ev.holder)
        for key in ev.keys:
            ts = tasks.get(key)
            if ts is None:
                step.ignore(key, None, f"{ev.holder} pins an unknown key")
            else:
                self.wants.want(step, holder, ts)

    def _on_keys_unpinned(self, step: Step, ev: UnpinKeys) -> None:
        self.wants.release_keys(step, ev.holder, ev.keys, self.machine.tasks)

    def _on_handover_done(self, step: Step, ev: HandoverDone) -> None:
        self.wants.disconnected(step, handover_holder(ev.client, ev.token))

    def _on_stream_mark(self, step: Step, ev: StreamMark) -> None:
        step.cmds.append(StreamMarked(step.stimulus_id, ev.client, ev.mark))

    # ------------------------------------------------------------------ #
    # Task results
    # ------------------------------------------------------------------ #
    def _on_task_finished(self, step: Step, ev: TaskFinished) -> None:
        ts = self.machine.tasks.get(ev.key)
        ws = self.membership.sender(step, ev.worker, ev.seen, "TaskFinished", ev.key, ts)
        if ws is None:
            return
        if ws.crossed(ev.key, ev.seen):
            step.ignore(ev.key, ts, f"TaskFinished from {ev.worker} crossed a FreeKeys of it")
            return
        if ts is None or ts.processing_on is not ws:
            if ts is not None and ws in ts.who_has:
                step.ignore(ev.key, ts, f"duplicate TaskFinished from {ev.worker}")
            else:
                step.ignore(ev.key, ts, f"stale TaskFinished from {ev.worker}: freeing it there")
                step.free(ws, ev.key)
            return
        self.placement.learn(ts, ev)
        self.machine.transition(step, ts, MEMORY,
                                (ws, ev.nbytes, ev.type_name or ts.type_name, ev.value))
        self.replicas.insure(step, ts)

    def _on_tasks_started(self, step: Step, ev: TasksStarted) -> None:
        ws = self.membership.sender(step, ev.worker, ev.seen, "TasksStarted")
        if ws is None:
            return
        tasks = self.machine.tasks
        started: list[TaskRecord] = []
        for key in ev.keys:
            ts = tasks.get(key)
            if ts is None or ts.processing_on is not ws or ws.crossed(key, ev.seen):
                step.ignore(key, ts, f"stale TasksStarted from {ev.worker}")
            elif not ts.running:
                ts.running = True
                step.note(key, PROCESSING, PROCESSING, f"running on {ev.worker}")
                started.append(ts)
        if started:
            report_running(step, started, True)

    def _on_task_erred(self, step: Step, ev: TaskErred) -> None:
        ts = self.machine.tasks.get(ev.key)
        ws = self.membership.sender(step, ev.worker, ev.seen, "TaskErred", ev.key, ts)
        if ws is None:
            return
        if ws.crossed(ev.key, ev.seen):
            step.ignore(ev.key, ts, f"TaskErred from {ev.worker} crossed a FreeKeys of it")
            return
        if ts is None or ts.processing_on is not ws:
            step.ignore(ev.key, ts, f"stale TaskErred from {ev.worker}")
            if ts is None or ws not in ts.who_has:
                step.free(ws, ev.key)
            return
        if ts.retries > 0:
            ts.retries -= 1
            step.note(ts.key, PROCESSING, PROCESSING, f"retry ({ts.retries} left)")
            self.machine.transition(step, ts, WAITING)
            return
        info = ErrorInfo(ev.exception, ev.traceback, ev.exception_text, ws.address, "")
        self.machine.transition(step, ts, ERRED, info)

    # ------------------------------------------------------------------ #
    # Workers
    # ------------------------------------------------------------------ #
    def _on_worker_joined(self, step: Step, ev: RegisterWorker) -> None:
        if ev.worker in self.membership.workers:
            self._remove_worker(step, ev.worker, "worker re-registered at the same address")
        ws = self.membership.join(ev)
        if ev.held:
            self.held.worker_joined(step, ws, ev.held, ev.now)
        step.freed[ws] = None
        step.ready.extend(self.placement.worker_joined(ws))
        self.replicas.new_room(step)

    def _on_worker_left(self, step: Step, ev: WorkerLeft) -> None:
        self.replicas.tick(ev.now)
        if ev.worker not in self.membership.workers:
            step.note("", "", "", f"ignored: WorkerLeft for unknown worker {ev.worker}")
            return
        self._remove_worker(step, ev.worker, ev.reason)

    def _remove_worker(self, step: Step, address: Address, reason: str,
                       expected: bool = False) -> None:
        """``address`` is gone: see "Worker loss" in the module docstring.
        ``expected``: it was retired, so its tasks do not count as suspicious."""
        ws = self.membership.remove(address)
        step.forget_worker(ws)
        self.replicas.worker_gone(step, ws, reason, expected)
        self.scatters.worker_gone(ws)
        self.held.worker_gone(ws)
        self.machine.worker_lost(step, ws, reason, expected)
        for ts in self.placement.worker_left(ws):
            self.machine.transition(step, ts, NO_WORKER)  # no live worker may run it any more

    def _retired(self, step: Step, ws: WorkerRecord) -> None:
        """Retiring ``ws`` holds no key without a copy elsewhere: remove it."""
        self._remove_worker(step, ws.address, "it was retired", expected=True)
        step.cmds.append(WorkerRetired(step.stimulus_id, ws.address))

    def _on_worker_has_keys(self, step: Step, ev: AddKeys) -> None:
        ws = self.membership.sender(step, ev.worker, ev.seen, "AddKeys")
        if ws is None:
            return
        for key, nbytes in ev.nbytes.items():
            ts = self.machine.tasks.get(key)
            if ws.crossed(key, ev.seen):
                step.ignore(key, ts, f"AddKeys from {ev.worker} crossed a FreeKeys of it")
            elif ts is not None and ts.state == MEMORY:
                if ts.nbytes < 0 and nbytes >= 0:
                    self.machine.learn_size(ts, nbytes)
                self.machine.add_replica(step, ts, ws)
            elif ts is not None and ts.processing_on is ws:
                # sent before it handled the ComputeTask, which it answers with this copy
                step.ignore(key, ts, f"AddKeys from {ev.worker}, which computes it")
            else:
                step.ignore(key, ts, f"{ev.worker} has an unneeded copy: freeing it")
                step.free(ws, key)

    def _on_worker_released_keys(self, step: Step, ev: ReleasedKeys) -> None:
        ws = self.membership.sender(step, ev.worker, ev.seen, "ReleasedKeys")
        if ws is None:
            return
        for key in ev.keys:
            ts = self.machine.tasks.get(key)
            if ws.crossed(key, ev.seen):
                step.ignore(key, ts, f"ReleasedKeys from {ev.worker} crossed a FreeKeys of it")
                continue
            if ts is not None and ws in ts.acquiring_on:
                step.note(key, ts.state, ts.state, f"{ev.worker} declined to fetch a copy")
                self.replicas.drop(step, ts, ws)
                continue
            if ts is None or ws not in ts.who_has:
                step.ignore(key, ts, f"{ev.worker} released a copy it was not known to hold")
                continue
            self.machine.remove_replica(step, ts, ws)
            if not ts.who_has:
                self.machine.lost(
                    step, ts, f"key {key!r} was held only on worker {ev.worker} which released it")

    def _on_worker_missing_data(self, step: Step, ev: MissingData) -> None:
        errant = self.membership.workers.get(ev.errant_worker)
        for key in ev.keys:
            ts = self.machine.tasks.get(key)
            if ts is None or ts.state != MEMORY:
                step.ignore(key, ts, f"{ev.worker} misses it on {ev.errant_worker}")
                continue
            if errant is None or errant not in ts.who_has:
                step.ignore(key, ts, f"{ev.worker} misses it on non-holder {ev.errant_worker}")
                continue
            if ev.seen <= errant.has_what[ts]:
                step.ignore(key, ts, f"{ev.worker} misses it on {ev.errant_worker}, but asked "
                                     "before that copy was known")
                continue
            self.machine.remove_replica(step, ts, errant)
            step.note(key, MEMORY, MEMORY, f"{ev.worker} could not get it from {ev.errant_worker}")
            if not ts.who_has:
                self.machine.lost(
                    step,
                    ts,
                    f"key {key!r} was held only on worker {ev.errant_worker} which "
                    f"no longer has it (reported by {ev.worker})",
                )

    def _on_heartbeat(self, step: Step, ev: Heartbeat) -> None:
        self.replicas.tick(ev.now)
        self.held.tick(step, ev.now)
        self.membership.heartbeat(ev)
        if ev.transfers:
            self.stealing.learn_transfers(ev)

    def _on_worker_paused(self, step: Step, ev: Paused) -> None:
        ws = self.membership.workers.get(ev.worker)
        if ws is None:
            step.note("", "", "", f"ignored: Paused from unknown worker {ev.worker}")
            return
        if self.membership.pause(step, ws, ev.paused) and not ev.paused:
            self.replicas.new_room(step)

    def _on_task_seceded(self, step: Step, ev: Seceded) -> None:
        """A task processing on ``ev.worker`` left its thread count or came back.

        Applied whenever the task is processing there, even if the message
        crossed a ``FreeKeys`` of it: the worker keeps a cancelled run (and
        its secession) when the key comes back to it, and a slot wrongly
        freed only over-fills that worker a little until the task ends,
        where one wrongly held could starve a worker whose every thread waits
        on tasks not sent to it."""
        ts = self.machine.tasks.get(ev.key)
        ws = self.membership.workers.get(ev.worker)
        if ts is None or ws is None or ts.processing_on is not ws:
            step.ignore(ev.key, ts, f"{'secede' if ev.seceded else 'rejoin'} on {ev.worker}, "
                                    "where it is not processing")
            return
        if ev.seceded:
            if self.membership.secede(step, ts):
                step.note(ev.key, ts.state, ts.state, f"seceded on {ev.worker}: its slot is free")
        elif self.membership.rejoin(ts, slot_cost(self.placement.durations.get(ts.prefix))):
            step.note(ev.key, ts.state, ts.state, f"rejoined on {ev.worker}: it takes a slot again")

    # ------------------------------------------------------------------ #
    # Copies and retirement
    # ------------------------------------------------------------------ #
    def _on_rebalance_requested(self, step: Step, ev: RebalanceRequested) -> None:
        self.rebalancer.plan(step, ev)

    def _on_replicate_requested(self, step: Step, ev: ReplicateRequested) -> None:
        self.replicas.replicate(step, ev, self.machine.tasks)

    def _on_retire_requested(self, step: Step, ev: RetireRequested) -> None:
        self.replicas.retire(step, ev.workers)

    def _on_retire_cancelled(self, step: Step, ev: RetireCancelled) -> None:
        for address in ev.workers:
            ws = self.membership.workers.get(address)
            if ws is not None and ws.retiring:
                self.replicas.stop_retiring(step, ws, ev.reason)
