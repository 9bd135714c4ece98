"""Work stealing for the pure scheduler: queued tasks move from saturated
workers to idle ones, when moving costs less than it saves.

Theory of operation
-------------------
Placement decides once, when a task becomes ready, and it may decide badly:
a task goes past a worker's slots to the worker holding its inputs (see
``policy.choose_worker``), durations are unknown until a task of a kind
finishes, and a worker may be given tasks that turn out long while its peer
runs dry.  :class:`WorkStealing` undoes such choices afterwards.  The shell
sends ``StealTick`` every ``scheduler.work-stealing-interval``; the machine
never reads a clock.

**The cost model.**  A worker's *load* is the estimated seconds of work it
holds per thread: the sum over its processing tasks of their kind's average
duration (``Placement.durations``, learnt from finished tasks; a kind never
seen counts ``UNKNOWN_DURATION``), divided by its threads; a seceded task
holds no thread and counts nothing.  Moving task ``ts`` (duration ``d``)
from victim ``V`` to thief ``T`` costs ``transfer = bytes of its inputs not
on T / bandwidth + MOVE_LATENCY``.  Taken from the end of the victim's
line, the task would end there after about ``load(V)``; on the thief after
``load(T) + transfer + d / threads(T)``.  The move is requested only when it
ends the task sooner::

    load(T) + d / threads(T) + transfer  <  load(V)

So a task whose inputs cost more to move than the wait it saves never moves,
and a task moved once is never worth moving back on the same figures (moving
it back would need ``load(V) + transfer < load(T) + d / threads(T)``, the
opposite): no thrash.  On top of that a task moves at
most ``MAX_MOVES`` times while it is processing, and never again once a
victim refused it (it started there).

**Who.**  Nobody while unrestricted tasks wait in the scheduler's queue
(then no worker has a free slot, and the next free one takes from there).
Victims are the workers with more processing tasks than threads (some are
queued there, not running) that hold tasks past their slots (placement put
dependents there to be near their inputs, or steals did), or whose last task
is long (at least ``horizon``), or any such worker while some open worker has
an idle thread: a task queued behind a call that turns out long (its kind's
duration still unknown, say) must not wait for it while a thread elsewhere
idles.  Otherwise workers within their slots with short tasks are left
alone: moving one of their queued tasks saves at most one short task's time.
The inequality below still decides each move, so tiny tasks stay put.
Thieves are the open workers (not paused, not retiring) whose load is below
``StealTick.horizon`` or that have idle threads (fewer tasks than threads:
one long task must not keep the other threads of its worker waiting for the
next tick).  The most loaded
victim gives to the least loaded thief, one task at a time, until the
inequality fails, thieves have their horizon's worth, or
``MAX_REQUESTS_PER_TICK`` requests are out.  Candidates are taken from the
end of the victim's ``processing`` (the last given, usually the last it
would start), skipping tasks reported running, seceded, already in flight, moved
``MAX_MOVES`` times, restricted away from the thief, needing resources
not free there, sent ahead to their inputs' worker, or with a dependent sent
ahead to theirs (``look_ahead``: moving either would strand the other); at most ``MAX_SCAN`` candidates per victim per tick.

**The handshake.**  The victim may have started the task meanwhile, so the
scheduler asks (``StealRequest``, with an ``epoch`` like every message on a
worker's stream) and keeps ``in_flight[ts] = (victim, thief, epoch)``; the
task stays processing on the victim.  The victim answers
``StealResponse(stolen, seen=epoch)`` (:mod:`taskmill.core.worker.stealing`):

* ``stolen``: the victim released it and will not run it.  The task goes
  back to waiting (``FreeKeys`` to the victim settles any word about it still
  on the way) and straight on to the thief with a ``ComputeTask``; if the
  thief is gone, closed, or lacks its resources now, ordinary placement
  decides;
* not stolen: it keeps running there; it is never asked for again.

Crossed messages: a response counts only while its request is the task's
entry in ``in_flight`` (same victim, same ``epoch``), the task still
processes on the victim, and no ``FreeKeys`` of the key crossed it
(``WorkerRecord.crossed``).  So a task that finished on the victim (its
``TaskFinished`` came first on the stream), was released, or was moved by a
worker's death meanwhile ignores the answer; a victim that died takes its
answers with it (its tasks were rescheduled by ``WorkerLeft``); a thief that
died leaves the task to placement.  Entries of tasks that left their
victim are dropped at the next tick.

**Bandwidth.**  ``bandwidth`` starts at the option ``scheduler.bandwidth``
and follows the transfers workers report in their heartbeats (an
exponential average over transfers of at least ``MIN_MEASURED_BYTES``, which
latency does not dominate).

Cost: a tick is O(workers) (their loads, each from at most ``LOAD_SAMPLE``
tasks), plus O(log workers) per request and at most ``MAX_SCAN`` candidates
per victim; O(1) while tasks wait in the scheduler's queue; nothing happens
between ticks.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from itertools import count, islice
from typing import Any

from taskmill.core.scheduler.events import StealTick
from taskmill.core.scheduler.look_ahead import sent_ahead
from taskmill.core.scheduler.membership import Membership
from taskmill.core.scheduler.placement import Placement
from taskmill.core.scheduler.policy import UNKNOWN_DURATION
from taskmill.core.scheduler.records import PROCESSING, WAITING, TaskRecord, WorkerRecord
from taskmill.core.scheduler.resource_index import fits
from taskmill.core.scheduler.step import Step
from taskmill.core.scheduler.transitions import TaskMachine
from taskmill.protocol.vocabulary import Heartbeat, StealRequest, StealResponse

__all__ = ["WorkStealing", "DEFAULT_BANDWIDTH", "MAX_MOVES", "MOVE_LATENCY"]

#: Bytes per second between workers assumed until transfers are measured
#: (the option ``scheduler.bandwidth`` sets it in a scheduler process).
DEFAULT_BANDWIDTH = 100e6
#: A task moves between workers at most this many times while processing.
MAX_MOVES = 3
#: Seconds a move costs besides its inputs' bytes: the request, the answer
#: and the new ``compute-task``, each a message on a stream.
MOVE_LATENCY = 0.002
#: Steal requests one tick may send at most.
MAX_REQUESTS_PER_TICK = 1000
#: Candidates looked at per victim per tick at most.
MAX_SCAN = 2000
#: Tasks of a worker whose durations are summed for its load; a longer line
#: is estimated from them.
LOAD_SAMPLE = 256
#: Transfers smaller than this (bytes) are dominated by latency: they teach
#: nothing about bandwidth.
MIN_MEASURED_BYTES = 1_000_000


class InFlight:
    """A steal request waiting for its answer: from ``victim`` for ``thief``,
    sent with ``epoch`` (its answer's ``seen``), for a task estimated to take
    ``duration`` seconds."""

    __slots__ = ("victim", "thief", "epoch", "duration")

    def __init__(self, victim: WorkerRecord, thief: WorkerRecord, epoch: int,
                 duration: float) -> None:
        self.victim = victim
        self.thief = thief
        self.epoch = epoch
        self.duration = duration


class WorkStealing:
    """Moves queued tasks from saturated workers to idle ones (see the module
    docstring).  Owns the requests in flight (``in_flight``), the moves of
    each processing task (``moves``) and the estimated ``bandwidth``."""

    def __init__(self, machine: TaskMachine, membership: Membership, placement: Placement,
                 bandwidth: float) -> None:
        if not bandwidth > 0:
            raise ValueError(f"bandwidth must be a positive number of bytes per second, "
                             f"got {bandwidth!r} (option scheduler.bandwidth)")
        self.machine = machine
        self.membership = membership
        self.placement = placement
        #: estimated bytes per second between workers
        self.bandwidth = float(bandwidth)
        #: task -> the steal request waiting for its answer
        self.in_flight: dict[TaskRecord, InFlight] = {}
        #: processing task -> how often it moved (``MAX_MOVES``: never again)
        self.moves: dict[TaskRecord, int] = {}
        #: tasks moved since the start (diagnostics: ``bench/stealing.py``)
        self.moved = 0

    def handlers(self) -> dict[type, Callable[[Step, Any], None]]:
        """The events this part handles, for ``SchedulerState``'s table."""
        return {StealTick: self.balance, StealResponse: self.answered}

    # ------------------------------------------------------------------ #
    # Estimates
    # ------------------------------------------------------------------ #
    def learn_transfers(self, ev: Heartbeat) -> None:
        """Follow the bandwidth of the transfers a worker reports."""
        for _peer, start, stop, nbytes, _keys in ev.transfers:
            if nbytes >= MIN_MEASURED_BYTES and stop > start:
                self.bandwidth = 0.9 * self.bandwidth + 0.1 * nbytes / (stop - start)

    def _duration(self, ts: TaskRecord) -> float:
        return self.placement.durations.get(ts.prefix, UNKNOWN_DURATION)

    def _load(self, ws: WorkerRecord) -> float:
        """Seconds of work per thread processing on ``ws`` (seceded tasks hold
        no thread); past ``LOAD_SAMPLE`` tasks, their count times the mean of
        the first ``LOAD_SAMPLE`` (a tick stays cheap however long the line)."""
        duration = self._duration
        processing = ws.processing
        if len(processing) <= LOAD_SAMPLE:
            work = sum(duration(ts) for ts in processing if ts.slot_cost)
        else:
            sample = islice(processing, LOAD_SAMPLE)
            work = sum(duration(ts) for ts in sample if ts.slot_cost) * len(processing) / LOAD_SAMPLE
        return work / ws.nthreads

    def _transfer(self, ts: TaskRecord, thief: WorkerRecord) -> float:
        """Seconds to move ``ts`` to ``thief``: its missing inputs and the messages."""
        missing = 0
        for dts in ts.dependencies:
            if thief not in dts.who_has and dts.nbytes > 0:
                missing += dts.nbytes
        return missing / self.bandwidth + MOVE_LATENCY

    # ------------------------------------------------------------------ #
    # The tick
    # ------------------------------------------------------------------ #
    def balance(self, step: Step, ev: StealTick) -> None:
        """Ask saturated workers for queued tasks that idle ones would start sooner."""
        self._prune()
        if self.placement.queue.peek() is not None:
            return  # tasks wait on the scheduler: no worker has a free slot
        workers = self.membership.workers
        away: dict[WorkerRecord, int] = {}  # tasks asked from a victim, still processing there
        arriving: dict[WorkerRecord, int] = {}  # tasks asked for a thief
        coming: dict[WorkerRecord, float] = {}  # seconds of work asked for a thief
        for entry in self.in_flight.values():
            away[entry.victim] = away.get(entry.victim, 0) + 1
            arriving[entry.thief] = arriving.get(entry.thief, 0) + 1
            coming[entry.thief] = coming.get(entry.thief, 0.0) + entry.duration
            coming[entry.victim] = coming.get(entry.victim, 0.0) - entry.duration
        tiebreak = count()
        # an open worker with an idle thread makes every queued task a
        # candidate, however short its line: it would start there now
        hungry = any(ws.open and len(ws.processing) + arriving.get(ws, 0) < ws.nthreads
                     for ws in workers.values())
        #: victim -> its load; its heap entry is live while it matches
        vload: dict[WorkerRecord, float] = {}
        for ws in workers.values():
            processing = ws.processing
            if len(processing) - away.get(ws, 0) > ws.nthreads and (
                    hungry or ws.used > ws.capacity
                    or self._duration(next(reversed(processing))) >= ev.horizon):
                vload[ws] = self._load(ws) + coming.get(ws, 0.0) / ws.nthreads
        if not vload:
            return
        #: thief -> tasks it holds or was asked for (a thief with idle threads
        #: is hungry whatever its load: long tasks)
        held: dict[WorkerRecord, int] = {}
        thieves: list[tuple[float, int, WorkerRecord]] = []
        for ws in workers.values():
            if ws.open:
                load = vload.get(ws)
                if load is None:
                    load = self._load(ws) + coming.get(ws, 0.0) / ws.nthreads
                held[ws] = len(ws.processing) + arriving.get(ws, 0)
                if load < ev.horizon or held[ws] < ws.nthreads:
                    thieves.append((load, next(tiebreak), ws))
        if not thieves:
            return
        victims = [(-load, next(tiebreak), ws) for ws, load in vload.items()]
        heapq.heapify(victims)
        heapq.heapify(thieves)
        cursors: dict[WorkerRecord, Iterator[TaskRecord]] = {}
        scanned: dict[WorkerRecord, int] = {}
        requests = 0
        while thieves and requests < MAX_REQUESTS_PER_TICK:
            load_t, _, thief = thieves[0]
            if load_t >= ev.horizon and held[thief] >= thief.nthreads:
                heapq.heappop(thieves)  # it has its horizon's worth and no idle thread
                continue
            victim = _busiest(victims, vload, thief)
            if victim is None or vload[victim] <= load_t:
                break  # no victim busier than the idlest thief
            ts = self._candidate(victim, thief, cursors, scanned)
            if ts is None:
                del vload[victim]  # nothing more to take from it: its heap entries die
                continue
            d = self._duration(ts)
            transfer = self._transfer(ts, thief)
            if load_t + d / thief.nthreads + transfer >= vload[victim]:
                if transfer > MOVE_LATENCY:
                    continue  # its inputs cost too much to move there: look at the next one
                break  # balanced as far as moving helps
            self._request(step, ts, victim, thief, d)
            requests += 1
            held[thief] += 1
            heapq.heapreplace(thieves, (load_t + d / thief.nthreads, next(tiebreak), thief))
            away[victim] = away.get(victim, 0) + 1
            if len(victim.processing) - away[victim] > victim.nthreads:
                vload[victim] -= d / victim.nthreads
                heapq.heappush(victims, (-vload[victim], next(tiebreak), victim))
            else:
                del vload[victim]

    def _candidate(self, victim: WorkerRecord, thief: WorkerRecord,
                   cursors: dict[WorkerRecord, Iterator[TaskRecord]],
                   scanned: dict[WorkerRecord, int]) -> TaskRecord | None:
        """The next task of ``victim`` that ``thief`` may take, from the end of
        its ``processing`` (the last it would start); None when none is left
        (or ``MAX_SCAN`` were looked at this tick)."""
        cursor = cursors.get(victim)
        if cursor is None:
            cursor = cursors[victim] = reversed(victim.processing)
        in_flight = self.in_flight
        moves = self.moves
        n = scanned.get(victim, 0)
        for ts in cursor:
            n += 1
            if n > MAX_SCAN:
                break
            if (ts.running or not ts.slot_cost or ts in in_flight
                    or moves.get(ts, 0) >= MAX_MOVES or ts.waiting_on or sent_ahead(ts)):
                continue
            if (ts.restrictions is not None and not ts.allow_other_workers
                    and thief.address not in ts.restrictions):
                continue
            if ts.resources is not None and not fits(thief, ts.resources):
                continue
            scanned[victim] = n
            return ts
        scanned[victim] = n
        return None

    def _request(self, step: Step, ts: TaskRecord, victim: WorkerRecord, thief: WorkerRecord,
                 duration: float) -> None:
        if victim in step.pending_free:
            step.flush_frees(victim)  # in epoch order on its stream
        epoch = step.next_epoch()
        self.in_flight[ts] = InFlight(victim, thief, epoch, duration)
        step.note(ts.key, PROCESSING, PROCESSING,
                  f"steal requested from {victim.address} for {thief.address}")
        step.cmds.append(StealRequest(step.stimulus_id, victim.address, ts.key, epoch))

    def _prune(self) -> None:
        """Forget the requests and move counts of tasks that left their worker."""
        for ts in [ts for ts, e in self.in_flight.items()
                   if ts.processing_on is not e.victim or not e.victim.alive]:
            del self.in_flight[ts]
        for ts in [ts for ts in self.moves if ts.state != PROCESSING]:
            del self.moves[ts]

    # ------------------------------------------------------------------ #
    # The answer
    # ------------------------------------------------------------------ #
    def answered(self, step: Step, ev: StealResponse) -> None:
        """The victim's answer: move the task to the thief if it was released."""
        ts = self.machine.tasks.get(ev.key)
        victim = self.membership.sender(step, ev.worker, ev.seen, "steal-response", ev.key, ts)
        if victim is None:
            return
        entry = self.in_flight.get(ts) if ts is not None else None
        if ts is None or entry is None or entry.victim is not victim or entry.epoch != ev.seen:
            step.ignore(ev.key, ts, f"steal-response from {ev.worker} to no request in flight")
            return
        del self.in_flight[ts]
        if ts.processing_on is not victim or victim.crossed(ev.key, ev.seen):
            step.ignore(ev.key, ts, f"steal-response from {ev.worker}, where it no longer processes")
            return
        if not ev.stolen:
            self.moves[ts] = MAX_MOVES  # it started there (or ended): never ask again
            step.note(ev.key, PROCESSING, PROCESSING, f"not stolen: {ev.worker} started it")
            return
        thief = entry.thief
        moves = self.moves.pop(ts, 0) + 1
        self.moved += 1
        step.note(ev.key, PROCESSING, PROCESSING,
                  f"stolen from {victim.address} for {thief.address}")
        self.machine.transition(step, ts, WAITING)  # off the victim (which let it go)
        if (ts.state == WAITING and not ts.waiting_on and thief.alive and thief.open
                and (ts.resources is None or fits(thief, ts.resources))):
            self.machine.transition(step, ts, PROCESSING, thief)
        # else: placement decides, among the ready tasks of this step
        if ts.state == PROCESSING or ts.state == WAITING:
            self.moves[ts] = moves


def _busiest(victims: list[tuple[float, int, WorkerRecord]], vload: dict[WorkerRecord, float],
             thief: WorkerRecord) -> WorkerRecord | None:
    """The most loaded victim other than ``thief``, from a heap of
    ``(-load, tiebreak, worker)`` whose entries are live only while they
    match ``vload`` (stale ones are dropped on the way)."""
    aside = None  # the thief's own entry, when it is the busiest victim
    found = None
    while victims:
        entry = victims[0]
        if vload.get(entry[2]) != -entry[0]:
            heapq.heappop(victims)
        elif entry[2] is thief:
            aside = heapq.heappop(victims)
        else:
            found = entry[2]
            break
    if aside is not None:
        heapq.heappush(victims, aside)
    return found
