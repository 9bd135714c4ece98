"""The pure worker state machine: which task runs next, which inputs to fetch.

Theory of operation
-------------------
The worker shell (:mod:`taskmill.server.worker`) feeds events to
:meth:`WorkerState.handle` and carries out the commands it returns.  The
events are the machine's own (:mod:`taskmill.core.worker.events`: a run
ended, a fetch came back, memory ran short, a client scattered data) and the
scheduler's wire messages ``ComputeTask``, ``FreeKeys`` and
``AcquireReplicas`` (:mod:`taskmill.protocol.vocabulary`); the commands are
its own (``Execute``, ``Fetch``, ``DeleteData``, ``CancelExecution``,
``AskWhoHas``, ``RejoinGranted``, ``AbandonExecution``, ``ScheduleStartReport``)
and wire messages for the scheduler (``TaskFinished``, ``TaskErred``,
``AddKeys``, ``KeysScattered``, ``ReleasedKeys``, ``MissingData``,
``Paused``, ``Seceded``, ``TasksStarted``, ``StealResponse``, and
``LogRecords``, passed on from ``LogRecordsCaptured``).  Tasks that leave
the thread count (``secede()``/``rejoin()``) are handled by the layer
:mod:`taskmill.core.worker.secession`; steal requests by
:mod:`taskmill.core.worker.stealing`; start reports and abandoned calls by
:mod:`taskmill.core.worker.running_calls`.
Nothing in here touches a socket, a thread, asyncio or the clock, and no
value is ever seen: only keys and sizes.  The shell stores a value *before*
it hands the event that announces it (``ExecuteSucceeded``,
``FetchSucceeded``, ``DataPut``) to ``handle``, and executes the returned
commands in order.

This module holds the event handlers: what each event means for the keys it
names.  The records, their indexes and the moves between states are in
:mod:`taskmill.core.worker.bookkeeping` (the base class); every key this
worker knows has one record in one state:

* scheduler-assigned tasks: ``waiting`` (some input not here yet) ->
  ``ready`` (in the ready heap, ordered by ``priority`` then arrival) ->
  ``executing`` (a thread runs it) -> ``memory`` | ``error``;
* inputs that live elsewhere: ``fetch`` (queued, known holders) -> ``flight``
  (one ``Fetch`` per peer in flight) -> ``memory``; ``missing`` when no known
  holder works (``AskWhoHas`` was sent);
* ``cancelled``: executing or in flight, but nobody here wants the result any
  more; the result is dropped when it arrives (``DeleteData``, not reported).
  A new request for the key before that revives it without redoing the work.

A record lives exactly as long as it is *needed*: the scheduler assigned it
(``assigned``), the scheduler believes its data is here (``held``: a reported
result, a copy it asked for or was told of, scattered data), or a pending
task here depends on it (``dependents``).  When the last reason goes, the
record is released: data in memory is deleted, queued fetches are forgotten,
running work is cancelled.  ``FreeKeys`` clears ``assigned`` and ``held``;
fetched copies otherwise stay until the scheduler frees them (it learnt of
them from ``AddKeys``), so this machine never drops data on its own.

Copies the scheduler asks for (``AcquireReplicas``: ``Executor.replicate``,
retiring a peer) take the ordinary fetch path as records kept because the
scheduler wants the data here (``held``), queued behind the inputs of tasks
(``REPLICA_PRIORITY``), and are announced with ``AddKeys`` on arrival.  A key
already here is announced at once; one this worker is computing or failed to
compute itself is declined with ``ReleasedKeys`` (the scheduler then looks
elsewhere).

Fetching: :class:`~taskmill.core.worker.fetch_queue.FetchQueue` queues every
``fetch`` key with each of its holders, ordered by the priority of the most
urgent task that needs it.  A gather pass at the end of ``handle`` (when
something changed) sends ONE ``Fetch`` of up to ``max_fetch_keys_per_request``
keys to each of the best idle peers, with at most ``max_concurrent_fetches``
requests in flight and one per peer; keys held by several peers travel with
the first chosen one.  A peer that lacks a requested key is struck off that
key's holders (``MissingData``); an unreachable peer (``FetchFailed``) is
struck off every key.  A key with no holder left goes ``missing`` and is asked
for (``AskWhoHas``, batched per ``handle`` call); the answer only adds holders
(it may be older than holders learnt meanwhile).  An empty answer leaves the
key ``missing``: the scheduler has no copy either, so it recomputes the key and
sends the task needing it again (``FreeKeys`` then ``ComputeTask``).

Pause: ``PauseChanged(paused=True)`` (the shell's memory monitor: memory is
short) stops the gather pass and ``_ensure_computing``; running work and
fetches in flight finish, data is still served.  ``PauseChanged(False)``
resumes both at once.

Running calls (reporting starts, abandoning calls): see
:mod:`taskmill.core.worker.running_calls`.

Contract with the shell:

* Within one ``handle`` call, commands come out in event order, with
  ``AskWhoHas``, then the ``RejoinGranted`` of waiting rejoiners, then
  ``Fetch``, then ``Execute`` (with a ``ScheduleStartReport`` after the
  first one since the last tick) last.
  ``DeleteData`` names only keys the shell stored (a result, fetched or
  scattered data), never an input of a task still queued or running.
* Function delivery: the scheduler sends a function's serialized payload
  once per worker, with one ``ComputeTask`` of its ``func_token``.  The
  machine keeps it (``_funcs``) until the first ``Execute`` of that token
  carries it, then sends None for the token (``_delivered``); the shell's
  task runner keeps the payload by token.  It keeps the function whatever
  becomes of the ``ComputeTask`` that brought it: a task freed before it ran,
  or one answered at once (already in memory here, or adopted while running),
  does not take the function with it.
* After ``CancelExecution`` the thread stays counted as busy until the shell
  reports the run's end (``ExecuteSucceeded`` or ``ExecuteFailed``); that
  report is then dropped (a success also yields ``DeleteData``).  After
  ``AbandonExecution`` the thread is free at once and the shell never
  reports that run's end.
* ``ScheduleStartReport``: hand the machine ``StartReportDue`` a few
  milliseconds later (one is issued at a time).
* ``Execute`` may start more calls than ``nthreads`` (short ones run ahead,
  :mod:`taskmill.core.worker.run_ahead`): the shell queues them in order.
* ``TaskFinished`` for a key obtained without running it (fetched while the
  scheduler asked for it, or scattered) carries ``type_name=""`` and zero times.

Determinism: the machine is a pure function of its events in every process,
so that a stimulus log replays identically elsewhere.  No clock and no
randomness, and no ``set`` of keys or addresses is ever iterated: Python
orders those by a per-process salted hash.  Records, indexes and the
collections they link are insertion-ordered dicts (see
:mod:`taskmill.core.worker.records`); plain sets serve membership tests only.

Epochs: each ``ComputeTask``, ``FreeKeys`` and ``AcquireReplicas`` carries the
scheduler's ``epoch``; the machine keeps the last one it handled (``epoch``)
and every ``TaskFinished``, ``TaskErred``, ``AddKeys`` and ``ReleasedKeys`` it
returns carries it as ``seen`` (the shell puts it on heartbeats too).  A
``MissingData`` carries instead the ``epoch`` it had when it sent the request
that came back without the keys (kept per peer in flight, ``_asked``).  That
is how the scheduler tells a message that crossed one of its ``FreeKeys``
from a fresh one, and a copy that was gone from one that did not exist yet
(see "Crossed messages" in ``taskmill.core.scheduler.state``).

Costs: each event costs O(keys it names + their dependents/holders), times
O(log n) for heap operations.  The gather pass costs O(peers with queued
keys); nothing scans all tasks.  ``validate()`` (O(n),
:mod:`taskmill.core.worker.validate`) checks every invariant and runs after
each ``handle`` when ``validate=True`` (tests).  ``handle`` records its events
in a :class:`~taskmill.core.stimulus_log.StimulusLog` and writes it out when
it or ``validate`` fails, so that a failure can be replayed.
"""

from __future__ import annotations

import heapq
import sys
from typing import Any, Callable, Iterable

from taskmill.core.stimulus_log import StimulusLog, log_size
from taskmill.core.worker.secession import SecessionHandlers
from taskmill.core.worker.stealing import StealHandlers
from taskmill.core.worker.events import (
    AskWhoHas,
    DataPut,
    DataRetained,
    DeleteData,
    Execute,
    ExecuteFailed,
    ExecuteSucceeded,
    Fetch,
    FetchFailed,
    FetchSucceeded,
    LogRecordsCaptured,
    PauseChanged,
    RejoinRequested,
    StartReportDue,
    TaskSeceded,
    WhoHasAnswered,
    WorkerInput,
    WorkerOutput,
)
from taskmill.core.worker.records import (
    CANCELLED,
    ERROR,
    EXECUTING,
    FETCH,
    FLIGHT,
    MEMORY,
    MISSING,
    READY,
    TRANSITIONS,
    WAITING,
    InvalidWorkerState,
    InvalidWorkerTransition,
    TaskRecord,
)
from taskmill.core.worker.run_ahead import RunAhead
from taskmill.core.worker.running_calls import RunningCalls
from taskmill.core.worker.validate import validate_worker_state
from taskmill.protocol.vocabulary import (
    AbandonTasks,
    AcquireReplicas,
    AddKeys,
    Address,
    ComputeTask,
    FreeKeys,
    Key,
    KeysScattered,
    LogRecords,
    MissingData,
    Paused,
    Priority,
    ReleasedKeys,
    StealRequest,
    TaskErred,
    TaskFinished,
)

__all__ = [
    "WorkerState",
    "TaskRecord",
    "InvalidWorkerTransition",
    "InvalidWorkerState",
    "TRANSITIONS",
    "REPLICA_PRIORITY",
]

#: Copies the scheduler asks for are fetched after the inputs of every task
#: (lower sorts first).
REPLICA_PRIORITY: Priority = (sys.maxsize,)


class WorkerState(SecessionHandlers, StealHandlers, RunningCalls):
    """Decisions of one worker, as a pure function of the events it saw.

    ``handle(*events)`` applies events in order and returns the commands the
    shell must carry out, in order.  Read-only figures for heartbeats:
    ``executing_count``, ``ready_count``, ``in_memory``, ``nbytes_in_memory``,
    ``paused``.  ``validate=True`` checks every invariant after each call.
    """

    def __init__(
        self,
        address: str,
        nthreads: int,
        *,
        validate: bool = False,
        max_fetch_keys_per_request: int = 1000,
        max_concurrent_fetches: int = 10,
        story_size: int = 100_000,
        stimulus_log_size: int | None = None,
        run_ahead: int = 0,
        run_ahead_below: float = 0.002,
    ) -> None:
        if nthreads < 1:
            raise ValueError(f"nthreads must be >= 1, got {nthreads}")
        if max_fetch_keys_per_request < 1 or max_concurrent_fetches < 1:
            raise ValueError("fetch limits must be >= 1")
        super().__init__(address, nthreads, max_fetch_keys_per_request, max_concurrent_fetches, story_size)
        self.validate_each_step = validate
        #: the events of the last calls of ``handle``, to replay a failure
        self.stimulus_log = StimulusLog(WorkerState, dict(
            address=address, nthreads=nthreads, max_fetch_keys_per_request=max_fetch_keys_per_request,
            max_concurrent_fetches=max_concurrent_fetches, story_size=story_size,
            stimulus_log_size=stimulus_log_size, run_ahead=run_ahead,
            run_ahead_below=run_ahead_below), log_size(stimulus_log_size, validate))
        #: short calls started beyond ``nthreads`` (:mod:`taskmill.core.worker.run_ahead`)
        self.run_ahead = RunAhead(run_ahead, run_ahead_below)
        self._record = self.stimulus_log.record
        self._funcs: dict[str, Any] = {}  # token -> serialized func, until an Execute carries it
        self._delivered: set[str] = set()  # tokens whose func went in an Execute (membership only)
        #: the ``epoch`` of the last scheduler message handled (module docstring)
        self.epoch = 0
        #: peer -> ``epoch`` when the request in flight to it was sent
        self._asked: dict[Address, int] = {}
        self._handlers: dict[type, Callable[[Any], None]] = {
            ComputeTask: self._on_compute,
            ExecuteSucceeded: self._on_execute_succeeded,
            ExecuteFailed: self._on_execute_failed,
            FetchSucceeded: self._on_fetch_succeeded,
            FetchFailed: self._on_fetch_failed,
            FreeKeys: self._on_free,
            DataPut: self._on_data_put,
            DataRetained: self._on_data_retained,
            WhoHasAnswered: self._on_who_has,
            PauseChanged: self._on_pause_changed,
            AcquireReplicas: self._on_acquire_replicas,
            TaskSeceded: self._on_task_seceded,
            RejoinRequested: self._on_rejoin_requested,
            StartReportDue: self._on_start_report_due,
            AbandonTasks: self._on_abandon,
            StealRequest: self._on_steal_request,
            LogRecordsCaptured: self._on_log_records,
        }

    def handle(self, *events: WorkerInput) -> list[WorkerOutput]:
        """Apply ``events`` in order; return the commands to carry out, in order."""
        self._record(events)
        try:
            return self._handle(events)
        except Exception as exc:
            self.stimulus_log.failed(exc)
            raise

    def validate(self) -> None:
        """Check every invariant; raise :class:`InvalidWorkerState` if one fails."""
        validate_worker_state(self, self.run_ahead.depth)
        self.validate_running_calls()

    def _handle(self, events: tuple[WorkerInput, ...]) -> list[WorkerOutput]:
        out: list[WorkerOutput] = []
        self._out = out
        handlers = self._handlers
        for ev in events:
            handler = handlers.get(type(ev))
            if handler is None:
                raise TypeError(f"WorkerState cannot handle {type(ev).__name__}")
            self._stim = ev.stimulus_id
            handler(ev)
            if self._delete:
                out.append(DeleteData(ev.stimulus_id, tuple(self._delete)))
                self._delete = []
        if self._ask:
            keys = tuple(k for k in self._ask if k in self._missing)
            self._ask = {}
            if keys:
                out.append(AskWhoHas(self._stim, keys))
        if self.rejoining:  # before new tasks, paused or not (secession.py)
            self._grant_rejoins()
        if self.paused:
            pass  # the gather pass and new executions wait for PauseChanged(False)
        else:
            if self._fq.dirty:
                self._gather()
            if self._ready_count and (len(self.executing) - len(self.seceded)
                                      < self.run_ahead.slots(self.nthreads, self.seceded)):
                self._ensure_computing()
        if self.validate_each_step:
            self.validate()
        return out

    # ------------------------------------------------------------------ #
    # Compute
    # ------------------------------------------------------------------ #
    def _on_compute(self, ev: ComputeTask) -> None:
        """The scheduler assigns ``ev.key`` here: compute it, or reuse what is here or on its way."""
        self.epoch = ev.epoch
        key = ev.key
        if ev.func is not None and ev.func_token not in self._delivered:
            # sent once per worker: kept for the token whatever becomes of this key
            self._funcs[ev.func_token] = ev.func
        ts = self.tasks.get(key)
        if ts is None:
            ts = self._new(key, ev.priority)
            self._setup_compute(ts, ev)
            return
        st = ts.state
        if st == MEMORY:
            ts.assigned = ts.held = True
            self._out.append(
                TaskFinished(ev.stimulus_id, self.address, key, ts.nbytes, ts.type_name, ts.start, ts.stop,
                             seen=self.epoch)
            )
            self._note(key, "note", "compute requested: already in memory")
        elif st == WAITING and ts.assigned:
            # a resend: the scheduler's view of where the inputs live is fresher
            self._note(key, "note", "duplicate compute request: inputs' holders updated")
            tasks = self.tasks
            for dkey in ts.waiting or ():
                holders = ev.who_has.get(dkey)
                if holders:
                    self._track_input(tasks[dkey], holders, ts.priority)
        elif st == WAITING or st == READY or st == EXECUTING:
            if ts.assigned:
                self._note(key, "ignored", "duplicate compute request")
            else:  # executing only for local dependents: adopt the run
                ts.assigned = True
                self._note(key, "note", "compute requested: already executing")
                self._run_adopted(key)
                self._report_start(key)
        elif st == CANCELLED:
            ts.assigned = True
            if ts.previous == FLIGHT:
                self._remember_request(ts, ev)
            assert ts.previous is not None
            self._set_state(ts, ts.previous)
            self._run_adopted(key)
            if ts.state == EXECUTING:  # the run goes on, for this new assignment
                self._report_start(key)
        elif st == FLIGHT:  # resume: keep the fetch, compute if it fails
            ts.assigned = True
            self._remember_request(ts, ev)
            self._note(key, "note", "compute requested while in flight")
        else:  # fetch, missing, error: compute here
            if st == MISSING:
                self._missing.pop(key, None)
            self._fq.clear_holders(ts)
            self._setup_compute(ts, ev)

    def _remember_request(self, ts: TaskRecord, ev: ComputeTask) -> None:
        """``ts`` is to run ``ev`` here (now or if its fetch fails): keep the
        request (its function is kept by ``_on_compute``)."""
        ts.req = ev
        ts.priority = ev.priority

    def _setup_compute(self, ts: TaskRecord, ev: ComputeTask) -> None:
        """Make ``ts`` a task to compute here: track its inputs, then wait or
        become ready."""
        ts.assigned = True
        self._remember_request(ts, ev)
        priority = ev.priority
        who_has = ev.who_has
        if who_has:
            key = ts.key
            ts.deps = tuple(who_has)
            waiting: dict[Key, None] | None = None
            tasks = self.tasks
            for dkey, holders in who_has.items():
                dts = tasks.get(dkey)
                if dts is None:
                    dts = self._new_remote(dkey, priority, ev.nbytes.get(dkey, 0), holders)
                    dts.dependents = {key: None}
                else:
                    if dts.dependents is None:
                        dts.dependents = {key: None}
                    else:
                        dts.dependents[key] = None
                    if dts.state == MEMORY:
                        continue
                    self._track_input(dts, holders, priority)
                if waiting is None:
                    waiting = {dkey: None}
                else:
                    waiting[dkey] = None
            ts.waiting = waiting
            if waiting:
                self._set_state(ts, WAITING)
                return
        self._make_ready(ts)

    def _track_input(self, dts: TaskRecord, holders: Iterable[Address], priority: Priority) -> None:
        """An existing record not in memory is needed as input by a task of
        ``priority``; ``holders`` is the scheduler's current view."""
        st = dts.state
        if st == FETCH:
            if priority < dts.priority:  # more urgent now: requeue everywhere
                dts.priority = priority
                dts.seq = next(self._counter)
                self._fq.push(dts)
            self._fq.add_holders(dts, holders)
        elif st == MISSING:
            self._fq.add_holders(dts, holders)
            if dts.who_has:
                self._missing.pop(dts.key, None)
                dts.priority = min(priority, dts.priority)
                self._to_fetch_or_missing(dts)
        elif st == FLIGHT:
            self._fq.add_holders(dts, holders)
        elif st == CANCELLED:
            assert dts.previous is not None
            self._set_state(dts, dts.previous)  # wanted again: keep going
            self._fq.add_holders(dts, holders)
        elif st == ERROR and holders:  # stale local failure (no holders: look-ahead, wait for a free)
            dts.assigned = dts.held = False
            dts.priority = priority
            self._fq.add_holders(dts, holders)
            self._to_fetch_or_missing(dts)
        # waiting/ready/executing: computed here, its dependents wait for it

    def _ensure_computing(self) -> None:
        """Start ready tasks, most urgent first, while a thread is free."""
        ready = self._ready
        tasks = self.tasks
        executing = self.executing
        out = self._out
        stim = self._stim
        funcs = self._funcs
        seceded = self.seceded
        ahead = self.run_ahead
        nthreads = self.nthreads
        slots = ahead.slots(nthreads, seceded)
        while ready and (busy := len(executing) - len(seceded)) < slots:
            _, seq, key = ready[0]
            ts = tasks.get(key)
            if ts is None or ts.state != READY or ts.seq != seq:
                heapq.heappop(ready)
                continue
            req = ts.req
            assert req is not None
            if busy >= nthreads and not ahead.is_short(req.func_token):
                break
            heapq.heappop(ready)
            self._ready_count -= 1
            self._set_state(ts, EXECUTING)
            executing.add(key)
            ts.req = None
            token = req.func_token
            func = funcs.pop(token, None) if funcs else None  # the first Execute of a token carries it
            if func is not None:
                self._delivered.add(token)
            out.append(Execute(stim, key, token, func, req.args, ts.deps, req.report_value))
            ahead.started(key, token, busy >= nthreads)
            self._report_start(key)

    def _call_ended(self, key: Key) -> None:
        """The call of ``key`` no longer holds a thread (it ended, or was
        abandoned): no start to report, and neither seceded nor rejoining."""
        super()._call_ended(key)
        self.run_ahead.forget(key)
        if self.seceded:
            self._run_left_thread(key)

    def _on_execute_succeeded(self, ev: ExecuteSucceeded) -> None:
        """A run ended with a value (already stored): keep and report it, or drop it if cancelled."""
        key = ev.key
        ts = self.tasks.get(key)
        if ts is None:
            self._note(key, "ignored", "result for unknown key: deleted")
            self._delete.append(key)
            return
        st = ts.state
        if st == EXECUTING:
            self.run_ahead.finished(key, ev.stop - ev.start)
            self._call_ended(key)
            self._release_deps(ts)
            ts.type_name = ev.type_name
            ts.start = ev.start
            ts.stop = ev.stop
            self._put_in_memory(ts, ev.nbytes)
            if ts.assigned:
                ts.held = True
                self._out.append(
                    TaskFinished(ev.stimulus_id, self.address, key, ev.nbytes, ev.type_name, ev.start, ev.stop,
                                     ev.value, seen=self.epoch)
                )
        elif st == CANCELLED and ts.previous == EXECUTING:
            self._call_ended(key)
            self._release_deps(ts)
            self._delete.append(key)
            self._forget(ts)
        else:
            self._note(key, "ignored", f"execution result while {st}")

    def _on_execute_failed(self, ev: ExecuteFailed) -> None:
        """A run raised: report the error, or drop the outcome if cancelled."""
        key = ev.key
        ts = self.tasks.get(key)
        if ts is None:
            self._note(key, "ignored", "failure for unknown key")
            return
        st = ts.state
        if st == EXECUTING:
            self._call_ended(key)
            self._release_deps(ts)
            if ts.assigned:
                self._set_state(ts, ERROR)
                self._out.append(
                    TaskErred(
                        ev.stimulus_id,
                        self.address,
                        key,
                        ev.exception,
                        ev.traceback,
                        ev.exception_text,
                        ev.start,
                        ev.stop,
                        seen=self.epoch,
                    )
                )
            else:  # ran only for local dependents: get it from elsewhere
                self._to_fetch_or_missing(ts)
        elif st == CANCELLED and ts.previous == EXECUTING:
            self._call_ended(key)
            self._release_deps(ts)
            self._forget(ts)
        else:
            self._note(key, "ignored", f"execution failure while {st}")

    # ------------------------------------------------------------------ #
    # Fetch, who-has, copies
    # ------------------------------------------------------------------ #
    def _gather(self) -> None:
        """Send one ``Fetch`` to each of the best idle peers."""
        stim = self._stim
        asked = self._asked
        for peer, keys in self._fq.select(self._take_for_fetch):
            asked[peer] = self.epoch
            self._out.append(Fetch(stim, peer, keys))

    def _take_for_fetch(self, ts: TaskRecord, peer: Address) -> None:
        self._set_state(ts, FLIGHT)

    def _fetch_lost(self, ts: TaskRecord) -> None:
        """A fetch of ``ts`` ended without data: retry, compute or give up."""
        ts.coming_from = None
        if ts.state == CANCELLED:
            self._forget(ts)
        elif ts.assigned:  # resumed compute request: compute it here after all
            req = ts.req
            assert req is not None
            self._fq.clear_holders(ts)
            self._setup_compute(ts, req)
        else:
            self._to_fetch_or_missing(ts)

    def _on_fetch_succeeded(self, ev: FetchSucceeded) -> None:
        """A request to a peer came back: take what came, strike the peer off what did not."""
        peer = ev.peer
        flight = self._fq.request_done(peer)
        asked = self._asked.pop(peer, 0)  # unknown request: as old as can be
        tasks = self.tasks
        announce: dict[Key, int] = {}
        for key, nbytes in ev.nbytes.items():
            ts = tasks.get(key)
            if ts is None:
                self._note(key, "ignored", f"data from {peer} for unknown key: deleted")
                self._delete.append(key)
                continue
            st = ts.state
            if st == FLIGHT or st == FETCH or st == MISSING:
                if st == FLIGHT and ts.coming_from != peer:
                    self._fq.leave_flight(ts)
                ts.coming_from = None
                if st == MISSING:
                    self._missing.pop(key, None)
                self._put_in_memory(ts, nbytes)
                ts.held = True
                if ts.assigned:
                    self._out.append(TaskFinished(ev.stimulus_id, self.address, key, nbytes, "", 0.0, 0.0,
                                                  seen=self.epoch))
                else:
                    announce[key] = nbytes
            elif st == CANCELLED and ts.previous == FLIGHT:
                self._fq.leave_flight(ts)
                self._delete.append(key)
                self._forget(ts)
            elif st == MEMORY:
                self._note(key, "ignored", f"duplicate data from {peer}")
            else:
                self._note(key, "ignored", f"data from {peer} while {st}: deleted")
                self._delete.append(key)
        if announce:
            self._out.append(AddKeys(ev.stimulus_id, self.address, announce, self.epoch))
        lost: list[Key] = []
        requested = flight if flight is not None else dict.fromkeys(ev.requested)
        for key in requested:
            if key in ev.nbytes:
                continue
            ts = tasks.get(key)
            if ts is None:
                continue
            self._fq.remove_holder(ts, peer)
            if ts.coming_from == peer and (ts.state == FLIGHT or ts.state == CANCELLED):
                lost.append(key)
                self._fetch_lost(ts)
            elif ts.state == FETCH and not ts.who_has:
                self._to_fetch_or_missing(ts)
        if lost:
            self._out.append(MissingData(ev.stimulus_id, self.address, peer, tuple(lost), asked))

    def _on_fetch_failed(self, ev: FetchFailed) -> None:
        """A peer could not be reached: strike it off every key; retry, compute or ask."""
        peer = ev.peer
        flight, held_there = self._fq.forget_peer(peer)
        asked = self._asked.pop(peer, 0)
        tasks = self.tasks
        if flight is None:
            flight = {k: None for k in ev.keys if (t := tasks.get(k)) is not None and t.coming_from == peer}
            if not flight:
                self._note("", "ignored", f"fetch failure from {peer} with nothing in flight")
        lost: list[Key] = []
        for key in flight:
            ts = tasks.get(key)
            if ts is not None and ts.coming_from == peer:
                lost.append(key)
                self._fetch_lost(ts)
        for key in held_there:
            ts = tasks.get(key)
            if ts is not None and ts.state == FETCH and not ts.who_has:
                self._to_fetch_or_missing(ts)
        if lost:
            self._out.append(MissingData(ev.stimulus_id, self.address, peer, tuple(lost), asked))

    def _on_who_has(self, ev: WhoHasAnswered) -> None:
        """The scheduler's holders are added to ours for keys still to fetch.

        Only added: the answer may be older than holders learnt since the
        question (a ``ComputeTask`` or ``AcquireReplicas`` after the key was
        freed and requested again, on another channel), and striking those
        off would leave the key ``missing`` with nobody to ask.  A holder
        that is gone by now costs one failed fetch, which strikes it off
        (and asks again when none is left)."""
        tasks = self.tasks
        for key, addrs in ev.who_has.items():
            ts = tasks.get(key)
            if ts is None:
                continue
            st = ts.state
            if not (st == FETCH or st == MISSING or st == FLIGHT or (st == CANCELLED and ts.previous == FLIGHT)):
                self._note(key, "ignored", f"who-has answer while {st}")
                continue
            self._fq.add_holders(ts, [a for a in addrs if a != self.address])
            if st == MISSING:
                if ts.who_has:
                    self._missing.pop(key, None)
                    self._to_fetch_or_missing(ts)
                else:
                    self._note(key, "note", "still missing")

    def _on_acquire_replicas(self, ev: AcquireReplicas) -> None:
        """The scheduler wants copies of keys here: fetch the new ones (behind
        the inputs of tasks), announce those already here, decline those this
        worker computes or failed to compute itself."""
        self.epoch = ev.epoch
        announce: dict[Key, int] = {}
        declined: list[Key] = []
        tasks = self.tasks
        for key, holders in ev.who_has.items():
            ts = tasks.get(key)
            if ts is None:
                self._new_remote(key, REPLICA_PRIORITY, ev.nbytes.get(key, 0), holders).held = True
                continue
            st = ts.state
            if st == MEMORY:
                ts.held = True
                announce[key] = ts.nbytes
            elif st == FETCH or st == FLIGHT or st == MISSING or (st == CANCELLED and ts.previous == FLIGHT):
                ts.held = True
                self._track_input(ts, holders, ts.priority)
            else:
                self._note(key, "ignored", f"copy requested while {st}: declined")
                declined.append(key)
        if announce:
            self._out.append(AddKeys(ev.stimulus_id, self.address, announce, self.epoch))
        if declined:
            self._out.append(ReleasedKeys(ev.stimulus_id, self.address, tuple(declined), self.epoch))

    # ------------------------------------------------------------------ #
    # Free, scatter, pause
    # ------------------------------------------------------------------ #
    def _on_free(self, ev: FreeKeys) -> None:
        """The scheduler no longer wants these keys here: release what nothing else here needs."""
        self.epoch = ev.epoch
        tasks = self.tasks
        for key in ev.keys:
            ts = tasks.get(key)
            if ts is None:
                self._note(key, "ignored", "free of unknown key")
                continue
            self._drop_assignment(ts)

    def _on_data_put(self, ev: DataPut) -> None:
        """A client scattered data here (already stored): it replaces work or
        fetches for those keys.  The scheduler hears it from here
        (``KeysScattered``, tagged with the client) as well as from the
        client, so that it knows which process holds the data."""
        tasks = self.tasks
        stored: dict[Key, int] = {}
        for key, nbytes in ev.nbytes.items():
            ts = tasks.get(key)
            if ts is None:
                ts = self._new(key, (0,))
                self._put_in_memory(ts, nbytes)
                ts.held = True
                stored[key] = nbytes
                continue
            st = ts.state
            if st == MEMORY:
                self.nbytes_in_memory += nbytes - ts.nbytes
                ts.nbytes = nbytes
                ts.held = True
                stored[key] = nbytes
            elif st == EXECUTING or (st == CANCELLED and ts.previous == EXECUTING):
                self._note(key, "ignored", f"data put while {st}: the result will replace it")
            else:
                report = ts.assigned and st in (WAITING, READY, FLIGHT)
                if st == FLIGHT or st == CANCELLED:
                    self._fq.leave_flight(ts)
                elif st == MISSING:
                    self._missing.pop(key, None)
                elif st == READY:
                    self._unready(ts)
                if st == WAITING or st == READY:
                    self._release_deps(ts)
                ts.req = None
                self._put_in_memory(ts, nbytes)
                ts.held = True
                stored[key] = nbytes
                if report:
                    self._out.append(TaskFinished(ev.stimulus_id, self.address, key, nbytes, "", 0.0, 0.0,
                                                  seen=self.epoch))
        if stored:
            self._out.append(KeysScattered(ev.stimulus_id, self.address, ev.client, stored))

    def _on_pause_changed(self, ev: PauseChanged) -> None:
        """Memory ran short or recovered: stop or resume starting tasks and fetches."""
        if ev.paused != self.paused:
            self.paused = ev.paused
            self._note("", "note", "paused" if ev.paused else "unpaused")
            # so that the scheduler sends new tasks elsewhere meanwhile
            self._out.append(Paused(ev.stimulus_id, self.address, ev.paused))


    def _on_log_records(self, ev: LogRecordsCaptured) -> None:
        """Log records captured here go to the scheduler, which relays them to clients."""
        self._out.append(LogRecords(ev.stimulus_id, self.address, ev.topic, ev.records))
