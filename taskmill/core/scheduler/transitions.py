"""The scheduler's task state machine: records, reference counting, and the
table of legal transitions.

Theory of operation
-------------------
:class:`TaskMachine` owns the task records (``tasks``), the functions clients
sent (``functions``, by token), the story of every transition
(``transition_log``) and the transition table ``(from_state, to_state) ->
function``.  ``SchedulerState`` (``taskmill.core.scheduler.state``) owns it
together with the topic objects it consults and keeps up to date:
``Membership`` (workers, slots), ``Placement`` (queues, where tasks go),
``Replicas`` (copies, retirement) and ``ClientWants`` (wants, reports).

Every change of a task's state goes through :meth:`TaskMachine.transition`,
which looks the edge up in the table, runs its function and records it.  A
transition function takes the event's :class:`~taskmill.core.scheduler.step.Step`,
the task and an argument, does the bookkeeping of that edge and *returns the
commands it makes* (``Made``: None, one command, or a list when several
clients are told); ``transition`` adds them to the step's commands.  A
transition missing from the table raises :class:`InvalidTransition` with the
key's story: a bug in the state machine, never a user error (an edge between
two states that both connect to ``released`` goes through it).

One event is processed in phases, driven by ``SchedulerState.handle``:

1. the event handler makes the direct transitions the event implies
   (``TaskFinished`` -> processing->memory, ...);
2. transitions do not recurse: consequences for *other* tasks are pushed as
   *recommendations* on ``Step.recs`` and drained in FIFO order (``drain``).
   The main recommendation is ``CHECK``: bring a task in line with whether it
   is still needed (``check``), which is what makes reference counting,
   releasing, forgetting and recomputing-from-lineage work.  Deep graphs
   therefore never hit Python's recursion limit;
3. tasks whose inputs are all in memory were collected on ``Step.ready``;
   they are placed in priority order (``schedule_ready``, asking
   ``Placement.where``), then workers whose slots freed up take queued tasks
   (``Placement.pop_for``), then waiting dependents of the tasks that started
   may go ahead to their inputs' worker (``_look_ahead``, decided by
   ``taskmill.core.scheduler.look_ahead``).  Placing a task never makes
   another one ready;
4. the ``FreeKeys`` gathered per worker on the step are flushed (a
   ``ComputeTask`` to a worker first flushes that worker's pending frees, so
   a free never overtakes a compute of the same key).

Neededness (the reference counting): a task is *needed* while a client wants
it or an active dependent (``waiters``) still needs its data.  A task that is
not needed is released (its data freed on every holder); a released or
erred task with no dependents and no wanting client is forgotten.  Released
tasks with dependents stay as lineage so lost data can be recomputed.  A
needed released task is recomputed (or errs as lost if it has no run spec:
scattered data).
"""

from __future__ import annotations

import sys
from collections import deque
from itertools import islice
from operator import attrgetter
from typing import Any, Callable

from taskmill.core.resources import resource_spec
from taskmill.core.scheduler.clients import ClientWants, report_running
from taskmill.core.scheduler.events import TaskStalled
from taskmill.core.scheduler.membership import Membership
from taskmill.core.scheduler.placement import Placement
from taskmill.core.scheduler.policy import MAX_PULLED_SIBLINGS, slot_cost
from taskmill.core.scheduler.records import (
    restriction,
    ACTIVE_STATES,
    ALL_STATES,
    ACTOR_LOST,
    ERRED,
    FORGOTTEN,
    KILLED_WORKER,
    LOST_DATA,
    MEMORY,
    MISSING_DEPENDENCY,
    NO_WORKER,
    PROCESSING,
    QUEUED,
    RELEASED,
    WAITING,
    EMPTY,
    ErrorInfo,
    TaskRecord,
    SortKey,
    WorkerRecord,
    sort_key,
    unlink_dependent,
)
from taskmill.core.scheduler.replicas import Replicas
from taskmill.core.scheduler.step import CHECK, Made, Step, StoryEntry
from taskmill.protocol.serialize import Serialized
from taskmill.protocol.vocabulary import Address, ComputeTask, Key, TaskSpec

Transition = Callable[[Step, TaskRecord, Any], Made]
#: a worker record's address (no Python frame per holder, as a comprehension has)
_address: Callable[[WorkerRecord], Address] = attrgetter("address")


class InvalidTransition(RuntimeError):
    """A transition that is not in the table was requested (a bug)."""


class TaskMachine:
    """The core: task records, reference counting and the transition table.

    Owns ``tasks`` (key -> record), ``functions`` (token -> serialized
    function) and ``transition_log``.  Invariants (``records``): the links
    between records are symmetric; a task is in memory iff some worker holds
    it; an active or in-memory task is needed; a released one is not, and
    has dependents (lineage); ``waiting_on`` is the set of inputs not in
    memory while active (see the module docstring)."""

    def __init__(self, membership: Membership, placement: Placement, replicas: Replicas,
                 wants: ClientWants, allowed_failures: int) -> None:
        self.membership = membership
        self.placement = placement
        self.replicas = replicas
        self.wants = wants
        #: deaths of workers running a task after which it errs ``KilledWorker``
        self.allowed_failures = allowed_failures
        #: key -> its record, for every task not forgotten
        self.tasks: dict[Key, TaskRecord] = {}
        #: function token -> the serialized function (sent once to each worker)
        self.functions: dict[str, Serialized] = {}
        #: every transition and ignored stimulus, for ``story``
        self.transition_log: deque[StoryEntry] = deque(maxlen=100_000)
        #: submission counter: the second part of every task's sort key
        self._seq = 0
        edges: dict[tuple[str, str], Transition] = {
            (RELEASED, WAITING): self._released_waiting,
            (RELEASED, MEMORY): self._to_memory_scattered,
            (RELEASED, ERRED): self._to_erred,
            (RELEASED, FORGOTTEN): self._forget,
            (WAITING, PROCESSING): self._start,
            (WAITING, QUEUED): self._enqueue,
            (WAITING, NO_WORKER): self._to_no_worker,
            (WAITING, RELEASED): self._active_released,
            (WAITING, ERRED): self._active_erred,
            (QUEUED, PROCESSING): self._start,
            (QUEUED, NO_WORKER): self._to_no_worker,
            (QUEUED, RELEASED): self._active_released,
            (QUEUED, ERRED): self._active_erred,
            (NO_WORKER, PROCESSING): self._start,
            (NO_WORKER, QUEUED): self._enqueue,
            (NO_WORKER, RELEASED): self._active_released,
            (NO_WORKER, ERRED): self._active_erred,
            (PROCESSING, MEMORY): self._processing_memory,
            (PROCESSING, RELEASED): self._active_released,
            (PROCESSING, ERRED): self._active_erred,
            (MEMORY, RELEASED): self._memory_released,
            (MEMORY, ERRED): self._memory_erred,
            (ERRED, RELEASED): self._erred_released,
            (ERRED, FORGOTTEN): self._forget,
        }
        #: from_state -> to_state -> function (two lookups, no key tuple to make)
        self._table: dict[str, dict[str, Transition]] = {state: {} for state in ALL_STATES}
        for (start, finish), fn in edges.items():
            self._table[start][finish] = fn

    # ------------------------------------------------------------------ #
    # Story
    # ------------------------------------------------------------------ #
    def story(self, key: Key) -> list[StoryEntry]:
        """Every recorded transition (and ignored stimulus) of ``key``:
        ``(key, from_state, to_state, stimulus_id, note)``."""
        return [e for e in self.transition_log if e[0] == key]

    def story_text(self, key: Key) -> str:
        """The last entries of ``key``'s story, for error messages."""
        return "\n".join(f"  {e}" for e in self.story(key)[-30:])

    # ------------------------------------------------------------------ #
    # Transition machinery
    # ------------------------------------------------------------------ #
    def transition(self, step: Step, ts: TaskRecord, finish: str, arg: Any = None) -> None:
        """Move ``ts`` to state ``finish`` (``arg``: what that edge needs),
        adding the commands it makes to ``step``."""
        start = ts.state
        if start == finish:
            return
        fn = self._table[start].get(finish)
        if fn is None:
            if RELEASED in self._table[start] and finish in self._table[RELEASED]:
                self.transition(step, ts, RELEASED)
                self.transition(step, ts, finish, arg)
                return
            raise InvalidTransition(
                f"no transition {start} -> {finish} for task {ts.key!r}; story:\n"
                + self.story_text(ts.key)
            )
        made = fn(step, ts, arg)
        step.story.append((ts.key, start, finish, step.stimulus_id, ""))
        if made is not None:
            if isinstance(made, list):
                step.cmds.extend(made)
            else:
                step.cmds.append(made)

    def drain(self, step: Step) -> None:
        """Apply ``step``'s recommendations until none is left."""
        recs = step.recs
        i = 0
        while i < len(recs):
            ts, what, arg = recs[i]
            i += 1
            state = ts.state
            if state == FORGOTTEN:
                continue
            if what == CHECK:
                self.check(step, ts)
            elif what == WAITING:
                if state == QUEUED or state == PROCESSING or state == NO_WORKER:
                    self.transition(step, ts, WAITING)
            elif what == ERRED:
                if state in ACTIVE_STATES:
                    self.transition(step, ts, ERRED, arg)
            else:  # pragma: no cover - programming error
                raise AssertionError(f"unknown recommendation {what!r}")
        recs.clear()

    def check(self, step: Step, ts: TaskRecord) -> None:
        """Bring ``ts`` in line with whether it is still needed."""
        state = ts.state
        if ts.who_wants or ts.waiters:
            if state == RELEASED:
                if ts.func_token is None:
                    self.transition(step, ts, ERRED, ErrorInfo(
                        None, None, f"key {ts.key!r} was scattered data whose every copy is gone",
                        "", LOST_DATA))
                    return
                for dts in ts.dependencies:
                    if dts.state == ERRED:
                        assert dts.error is not None
                        self.transition(step, ts, ERRED, _derived_error(dts.error))
                        return
                self.transition(step, ts, WAITING)
        elif state == MEMORY or state in ACTIVE_STATES:
            self.transition(step, ts, RELEASED)
        elif (state == RELEASED or state == ERRED) and not ts.dependents:
            self.transition(step, ts, FORGOTTEN)

    # ------------------------------------------------------------------ #
    # Records
    # ------------------------------------------------------------------ #
    def new_record(self, step: Step, key: Key, spec: TaskSpec | None) -> TaskRecord:
        """A record for the new key ``key``: a task (``spec``) or scattered data (None)."""
        self._seq += 1
        if spec is None:
            ts = TaskRecord(key, None, (0,), self._seq)
        else:
            ts = TaskRecord(
                key,
                spec,
                spec.priority,
                self._seq,
                spec.retries,
                restriction(spec.workers),
                spec.allow_other_workers,
                resource_spec(spec.resources),
            )
        self.tasks[key] = ts
        step.note(key, FORGOTTEN, RELEASED, "new")
        return ts

    def redefine(self, step: Step, ts: TaskRecord, spec: TaskSpec | None) -> None:
        """Give a released task (that had erred) a new definition."""
        for dts in ts.dependencies:
            unlink_dependent(dts, ts)
            step.recs.append((dts, CHECK, None))
        ts.dependencies = EMPTY
        self._seq += 1
        ts.suspicious = 0
        ts.deaths = ()
        priority = ts.priority
        ts.define(spec)
        if spec is None:
            ts.restrictions = None
            ts.allow_other_workers = False
            ts.resources = None
        else:
            priority = spec.priority
            ts.retries = spec.retries
            ts.restrictions = restriction(spec.workers)
            ts.allow_other_workers = spec.allow_other_workers
            ts.resources = resource_spec(spec.resources)
        ts.sort_key = sort_key(priority, self._seq)
        self.wants.renew(ts)

    def add_replica(self, step: Step, ts: TaskRecord, ws: WorkerRecord) -> None:
        """``ws`` holds a copy of ``ts`` (a copy it held already keeps its ``epoch``)."""
        who_has = ts.who_has
        if ws not in who_has:
            if not who_has:
                ts.who_has = ws.alone
            elif type(who_has) is dict:
                who_has[ws] = None
            else:  # another worker's shared map: a dict of its own from now on
                ts.who_has = {**who_has, ws: None}
            ws.has_what[ts] = step.epoch
            if ts.nbytes > 0:
                ws.nbytes += ts.nbytes
            if ts.acquiring_on:
                self.replicas.arrived(ts, ws)
            if self.replicas.retiring:
                step.retire_dirty = True

    def learn_size(self, ts: TaskRecord, nbytes: int) -> None:
        """The size of ``ts``, unknown until now (scattered without one), is
        ``nbytes``: the holders recorded so far count it from now on."""
        ts.nbytes = nbytes
        for ws in ts.who_has:
            ws.nbytes += nbytes

    def remove_replica(self, step: Step, ts: TaskRecord, ws: WorkerRecord) -> None:
        """``ws`` no longer holds a copy of ``ts``."""
        who_has = ts.who_has
        if ws in who_has:
            if type(who_has) is dict and len(who_has) > 1:
                del who_has[ws]
            else:  # its only holder
                ts.who_has = EMPTY
            del ws.has_what[ts]
            if ts.nbytes > 0:
                ws.nbytes -= ts.nbytes
            if self.replicas.retiring:
                step.retire_dirty = True

    def lost(self, step: Step, ts: TaskRecord, reason: str) -> None:
        """The last copy of ``ts`` (in memory) is gone: data without lineage
        is lost, an actor errs (a new object would be one nobody can reach),
        anything else is computed again if still needed."""
        if ts.func_token is None:
            self.transition(step, ts, ERRED, ErrorInfo(None, None, reason, "", LOST_DATA))
        elif ts.actor:
            text = (f"actor {ts.key!r} is lost: {reason}; its object lived only there. "
                    "Make a new actor with submit(..., actor=True)")
            self.transition(step, ts, ERRED, ErrorInfo(None, None, text, "", ACTOR_LOST))
        else:
            step.note(ts.key, MEMORY, MEMORY, "lost: " + reason)
            self.transition(step, ts, RELEASED)  # recomputed by the CHECK if still needed

    def worker_lost(self, step: Step, ws: WorkerRecord, reason: str, expected: bool) -> None:
        """``ws`` (already out of ``Membership``) is gone: reschedule its
        tasks, recompute (or report lost) what only it held.  ``expected``:
        it was retired, so its tasks do not count as suspicious."""
        address = ws.address
        # Only the tasks it was most likely running count as suspects: the
        # ``nthreads`` it was given first (it runs them in that order, and a
        # finished one leaves ``processing``).  The rest were only queued there,
        # and a look-ahead task (inputs not reported finished) cannot have started.
        rank = 0
        for ts in list(ws.processing):
            if expected or rank >= ws.nthreads or ts.waiting_on:
                self.transition(step, ts, WAITING)
                continue
            rank += 1
            ts.suspicious += 1
            ts.deaths += ((address, reason),)
            if ts.suspicious >= self.allowed_failures:
                deaths = ", ".join(f"{a} ({r})" for a, r in ts.deaths)
                text = (
                    f"task {ts.key!r} was processing on {ts.suspicious} workers that "
                    f"died while running it: {deaths}"
                )
                self.transition(step, ts, ERRED, ErrorInfo(None, None, text, "", KILLED_WORKER))
            else:
                self.transition(step, ts, WAITING)
        for ts in list(ws.has_what):
            self.remove_replica(step, ts, ws)
            if not ts.who_has:
                self.lost(step, ts, f"key {ts.key!r} was held only on worker {address} which left: {reason}")
            else:
                self.replicas.insure(step, ts)

    # ------------------------------------------------------------------ #
    # Helpers of the transitions
    # ------------------------------------------------------------------ #
    @staticmethod
    def _leave_active(step: Step, ts: TaskRecord) -> None:
        """``ts`` no longer needs its inputs: re-check each of them."""
        recs = step.recs
        for dts in ts.dependencies:
            waiters = dts.waiters
            waiters.pop(ts, None)
            if not waiters:
                dts.waiters = EMPTY  # its table would stay allocated
            recs.append((dts, CHECK, None))
        ts.waiting_on = EMPTY

    @staticmethod
    def _data_in_memory(step: Step, ts: TaskRecord) -> None:
        """Tell active dependents that ``ts``'s data is available."""
        ready = step.ready
        for dts in ts.waiters:
            waiting_on = dts.waiting_on
            waiting_on.pop(ts, None)
            if not waiting_on:
                dts.waiting_on = EMPTY
                if dts.state == WAITING:
                    ready.append(dts)

    def _free_everywhere(self, step: Step, ts: TaskRecord) -> None:
        """``ts`` leaves memory: every holder and fetcher drops it."""
        if ts.acquiring_on:
            self.replicas.cancel(step, ts)
        for ws in list(ts.who_has):
            step.free(ws, ts.key)
            self.remove_replica(step, ts, ws)

    # ------------------------------------------------------------------ #
    # Transitions
    # ------------------------------------------------------------------ #
    def _released_waiting(self, step: Step, ts: TaskRecord, _: Any) -> Made:
        ts.state = WAITING
        waiting_on = ts.waiting_on
        computing = False  # an input is processing: ``ts`` may go ahead to its worker
        for dts in ts.dependencies:
            waiters = dts.waiters
            if waiters is EMPTY:
                waiters = dts.waiters = {}
            waiters[ts] = None
            if dts.state != MEMORY:
                if waiting_on is EMPTY:
                    waiting_on = ts.waiting_on = {}
                waiting_on[dts] = None
                if dts.state == RELEASED:
                    step.recs.append((dts, CHECK, None))
                elif dts.state == ERRED:
                    assert dts.error is not None
                    step.recs.append((ts, ERRED, _derived_error(dts.error)))
                elif dts.state == PROCESSING:
                    computing = True
        if not waiting_on:
            step.ready.append(ts)
        elif computing and self.placement.look_ahead.enabled:
            step.look_ahead([ts])
        return None

    def _start(self, step: Step, ts: TaskRecord, ws: WorkerRecord) -> Made:
        """waiting/queued/no-worker -> processing on ``ws``."""
        if ts.state != WAITING:
            self.placement.unindex(ts)
        ts.state = PROCESSING
        self.membership.assign(ts, ws, slot_cost(self.placement.durations.get(ts.prefix)))
        if ts.waiters and self.placement.look_ahead.enabled:
            step.look_ahead(self.placement.look_ahead.candidates(ts))
        if ws in step.pending_free:
            step.flush_frees(ws)
        token = ts.func_token
        assert token is not None
        if token in ws.funcs:
            func = None
        else:
            ws.funcs.add(token)
            func = self.functions.get(token)
        who_has: dict[Key, tuple[Address, ...]] = {}
        nbytes: dict[Key, int] = {}
        if ts.dependencies:
            for dts in ts.dependencies:
                who_has[dts.key] = tuple(map(_address, dts.who_has))
                nbytes[dts.key] = dts.nbytes
        return ComputeTask(
            step.stimulus_id,
            ws.address,
            ts.key,
            token,
            func,
            ts.payload(),
            who_has,
            nbytes,
            ts.priority,
            bool(ts.who_wants),
            step.next_epoch(),
        )

    def _enqueue(self, step: Step, ts: TaskRecord, _: Any) -> Made:
        """waiting/no-worker -> queued (``Placement.enqueue`` says where)."""
        ts.state = QUEUED
        self.placement.enqueue(ts)
        return None

    def _to_no_worker(self, step: Step, ts: TaskRecord, _: Any) -> Made:
        made: Made = None
        why, first = self.placement.stall(ts)
        step.note(ts.key, ts.state, NO_WORKER, why)
        if first:
            made = TaskStalled(step.stimulus_id, ts.key, why)
        ts.state = NO_WORKER
        return made

    def _leave_processing_or_queues(self, step: Step, ts: TaskRecord) -> None:
        """An active ``ts`` stops being computed: off its worker (which is
        told to drop it) or out of the queues, and its inputs re-checked."""
        state = ts.state
        if state == PROCESSING:
            ws = self.membership.unassign(step, ts)
            step.free(ws, ts.key)  # also drops the worker's record of a failure
            for dts in ts.waiters:  # dependents sent ahead to ``ws`` wait again
                if dts.state == PROCESSING:
                    step.recs.append((dts, WAITING, None))
        elif state == NO_WORKER or state == QUEUED:
            self.placement.unindex(ts)
        self._leave_active(step, ts)

    def _active_released(self, step: Step, ts: TaskRecord, _: Any) -> Made:
        """waiting/queued/no-worker/processing -> released (stop computing);
        the clients told that its call runs hear that it no longer does."""
        if ts.running and ts.who_wants:
            report_running(step, (ts,), False)
        self._leave_processing_or_queues(step, ts)
        ts.state = RELEASED
        step.recs.append((ts, CHECK, None))
        return None

    def _active_erred(self, step: Step, ts: TaskRecord, info: ErrorInfo) -> Made:
        self._leave_processing_or_queues(step, ts)
        return self._to_erred(step, ts, info)

    def _to_erred(self, step: Step, ts: TaskRecord, info: ErrorInfo) -> Made:
        """-> erred: report it, and err every active dependent (transitively)."""
        ts.state = ERRED
        ts.error = info
        made = self.wants.report_erred(step, ts)
        if ts.waiters:
            derived = _derived_error(info)
            for dts in ts.waiters:
                step.recs.append((dts, ERRED, derived))
        step.recs.append((ts, CHECK, None))
        return made

    def _processing_memory(
        self, step: Step, ts: TaskRecord, arg: tuple[WorkerRecord, int, str, Any]
    ) -> Made:
        ws, nbytes, type_name, value = arg
        self.membership.unassign(step, ts)
        ts.state = MEMORY
        ts.nbytes = nbytes
        ts.type_name = sys.intern(type_name)  # one string per type, not per task
        self.add_replica(step, ts, ws)
        if ts.dependencies:
            self._leave_active(step, ts)
        if ts.waiters:
            self._data_in_memory(step, ts)
        if ts.who_wants:
            return self.wants.report_memory(step, ts, value)
        return None

    def _to_memory_scattered(
        self, step: Step, ts: TaskRecord, arg: tuple[list[WorkerRecord], int, str]
    ) -> Made:
        holders, nbytes, type_name = arg
        ts.state = MEMORY
        if nbytes >= 0 or ts.nbytes < 0:
            ts.nbytes = nbytes
        if type_name:
            ts.type_name = type_name
        for ws in holders:
            self.add_replica(step, ts, ws)
        self._data_in_memory(step, ts)
        made = self.wants.report_memory(step, ts)
        step.recs.append((ts, CHECK, None))
        return made

    def _memory_released(self, step: Step, ts: TaskRecord, _: Any) -> Made:
        """Data freed (not needed) or lost (no holder left)."""
        self._free_everywhere(step, ts)
        ts.state = RELEASED
        recs = step.recs
        for dts in ts.waiters:
            _put(dts, ts)
            if dts.state != WAITING:
                recs.append((dts, WAITING, None))
        recs.append((ts, CHECK, None))
        return None

    def _memory_erred(self, step: Step, ts: TaskRecord, info: ErrorInfo) -> Made:
        """The last copy of a key without lineage is gone."""
        self._free_everywhere(step, ts)
        for dts in ts.waiters:
            _put(dts, ts)
        return self._to_erred(step, ts, info)

    def _erred_released(self, step: Step, ts: TaskRecord, _: Any) -> Made:
        ts.error = None
        ts.state = RELEASED
        step.recs.append((ts, CHECK, None))
        return None

    def _forget(self, step: Step, ts: TaskRecord, _: Any) -> Made:
        """released/erred -> forgotten: drop the record and every link to it."""
        ts.state = FORGOTTEN
        del self.tasks[ts.key]
        recs = step.recs
        for dts in ts.dependencies:
            unlink_dependent(dts, ts)
            dts.waiters.pop(ts, None)
            recs.append((dts, CHECK, None))
        for dts in ts.dependents:  # only on a forced forget (cancel)
            dts.dependencies.pop(ts, None)
            dts.waiting_on.pop(ts, None)
        if ts.who_wants:  # only on a forced forget (cancel)
            self.wants.forget(ts)
        return None

    # ------------------------------------------------------------------ #
    # Placing ready tasks
    # ------------------------------------------------------------------ #
    def schedule_ready(self, step: Step) -> None:
        """Place the tasks that became ready, best priority first, then let
        workers whose slots freed take queued work."""
        ready = step.ready
        if ready:
            if len(ready) > 1:
                ready.sort(key=_sort_key)
            for ts in ready:
                state = ts.state
                if (state == WAITING or state == NO_WORKER) and not ts.waiting_on:
                    self._schedule(step, ts)
            ready.clear()
        freed = step.freed
        if freed:
            look_ahead = self.placement.look_ahead
            for ws in freed:
                if ws.alive:
                    self._fill(step, ws)
                    if ws in look_ahead.blocked and ws.used < ws.capacity:
                        step.look_ahead(look_ahead.unblock(ws))
            freed.clear()
        if step.ahead:
            self._look_ahead(step, step.ahead)

    def _look_ahead(self, step: Step, candidates: list[TaskRecord]) -> None:
        """Send the candidates that may go ahead to the worker computing
        their inputs (the list grows as they start: a chain goes ahead link
        by link while that worker has free slots)."""
        eligible = self.placement.look_ahead.eligible
        i = 0
        while i < len(candidates):
            ts = candidates[i]
            i += 1
            ws = eligible(ts)
            if ws is not None:
                step.note(ts.key, WAITING, WAITING, f"look-ahead on {ws.address}: inputs "
                          + ", ".join(repr(d.key) for d in ts.waiting_on) + " processing there")
                self.transition(step, ts, PROCESSING, ws)
        candidates.clear()

    def _schedule(self, step: Step, ts: TaskRecord) -> None:
        where = self.placement.where(ts)
        if isinstance(where, str):
            self.transition(step, ts, where)
        else:
            self.transition(step, ts, PROCESSING, where)
            if ts.resources is None:
                self._pull_siblings(step, ts, where)

    def _fill(self, step: Step, ws: WorkerRecord) -> None:
        """Give ``ws`` queued tasks until its slots are full."""
        pop_for = self.placement.pop_for
        while ws.used < ws.capacity:
            ts = pop_for(ws)
            if ts is None:
                return
            self.transition(step, ts, PROCESSING, ws)
            self._pull_siblings(step, ts, ws)

    def _pull_siblings(self, step: Step, ts: TaskRecord, ws: WorkerRecord) -> None:
        """Root task ``ts`` just went to ``ws``: send its queued root *siblings*
        (the other inputs of its dependents) along, even past ``ws``'s slots,
        when tasks of this kind make big results.  The dependent then finds
        all its inputs on one worker instead of moving one of them (blocks
        (i, j) and (j, i) of ``x + x.T`` are queued next to each other, but
        workers freeing slots in turn would split every pair).  Bounded:
        at most ``MAX_PULLED_SIBLINGS`` tasks, dependents with few inputs only."""
        if ts.dependencies or not ts.dependents or not self.placement.big_results(ts):
            return
        pulled = 0
        for dts in islice(ts.dependents, MAX_PULLED_SIBLINGS):
            if len(dts.dependencies) > MAX_PULLED_SIBLINGS + 1:
                continue  # a wide reduction: its inputs move anyway
            for sts in dts.dependencies:
                if (sts.state == QUEUED and not sts.dependencies and sts.restrictions is None
                        and sts.resources is None and pulled < MAX_PULLED_SIBLINGS):
                    self.transition(step, sts, PROCESSING, ws)
                    pulled += 1


def _derived_error(info: ErrorInfo) -> ErrorInfo:
    """The error a dependent of a task that failed with ``info`` gets."""
    if info.error_type == LOST_DATA:
        return ErrorInfo(
            None,
            None,
            f"a dependency's data was lost: {info.exception_text}",
            "",
            MISSING_DEPENDENCY,
        )
    return info


def _put(ts: TaskRecord, dts: TaskRecord) -> None:
    """``ts`` waits on ``dts`` again (its data is gone)."""
    waiting_on = ts.waiting_on
    if waiting_on is EMPTY:
        waiting_on = ts.waiting_on = {}
    waiting_on[dts] = None


def _sort_key(ts: TaskRecord) -> SortKey:
    return ts.sort_key
