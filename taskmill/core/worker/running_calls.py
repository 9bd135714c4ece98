"""The calls running on a worker's threads: reporting their start, abandoning them.

Theory of operation
-------------------
:class:`RunningCalls` sits between the worker's books
(:class:`~taskmill.core.worker.bookkeeping.WorkerBookkeeping`) and its event
handlers (:class:`~taskmill.core.worker.state.WorkerState`), and owns what
happens to a call while a thread runs it.

Start reports.  ``Future.running()`` is True while the task's call runs on a
worker: the worker tells the scheduler (``tasks-started``), which tells the
clients that hold the key (``keys-running``).  A message each way for every
task would cost the hot path, and most calls end before such a message
could matter: ``task-finished`` implies that the call ran.  So
:class:`StartReports` keeps the keys whose calls started and were not
reported yet, in two generations, and reports only calls that have run for
at least one tick interval (the shell's delay, a few milliseconds):

* the first start while no tick is pending asks the shell for one
  (``ScheduleStartReport``): one timer, armed only while some start is
  unreported;
* a call that ends before its report leaves the sets: it needs none;
* each tick (``StartReportDue``) reports the *older* generation, the calls
  that started before the previous tick and still run for the scheduler
  (not cancelled meanwhile), in one ``TasksStarted``; the calls started
  since become the older generation, and a new tick is asked for if any;
* a run adopted for a new assignment (a compute request for a key already
  executing here, or cancelled and wanted again) is reported again: the
  scheduler's new assignment has not heard of it.

So a call is reported between one and two delays after it started, and a
call shorter than the delay never is: a stream of short tasks costs a tick
every few milliseconds and no message (a single generation would report the
call that happens to be running at each tick, however young).

A call started ahead of a free thread (:mod:`taskmill.core.worker.run_ahead`)
has not started for the user while it waits: the shell's tick names the
calls still queued (``StartReportDue.queued``), and their reports move to the
next tick until a thread has taken them.

Abandoning.  A forced cancel (``Executor.cancel(..., force=True)``) sends
``AbandonTasks`` right after the ``FreeKeys`` that cancelled the keys, so a
call still running is ``cancelled`` here by then.  It is forgotten at once,
its inputs released and its thread no longer counted (``AbandonExecution``:
the shell's runner lets that thread finish the Python call, which cannot be
interrupted, drops its outcome and starts another thread), so the next
ready task starts in its place.

Pure and deterministic, like the rest of the machine: no clock (the shell
owns the timer) and insertion-ordered sets of keys.
"""

from __future__ import annotations

from taskmill.core.worker.bookkeeping import WorkerBookkeeping
from taskmill.core.worker.events import AbandonExecution, ScheduleStartReport, StartReportDue
from taskmill.core.worker.records import CANCELLED, EXECUTING, InvalidWorkerState
from taskmill.protocol.vocabulary import AbandonTasks, Address, Key, TasksStarted

__all__ = ["RunningCalls", "StartReports"]


class StartReports:
    """The keys started and not reported yet (two generations, ordered sets),
    and whether a tick is pending."""

    __slots__ = ("recent", "older", "armed")

    def __init__(self) -> None:
        #: keys whose calls started since the last tick
        self.recent: dict[Key, None] = {}
        #: keys whose calls started before the last tick, reported at the next
        self.older: dict[Key, None] = {}
        #: a ``ScheduleStartReport`` was issued and its tick has not come yet
        self.armed = False

    @property
    def unreported(self) -> list[Key]:
        """Every key started and not reported yet, older first."""
        return [*self.older, *self.recent]

    def started(self, key: Key) -> bool:
        """The call of ``key`` started; whether the shell must be asked for a tick."""
        self.recent[key] = None
        if self.armed:
            return False
        self.armed = True
        return True

    def ended(self, key: Key) -> None:
        """The call of ``key`` ended (or was abandoned) before its report."""
        if self.recent:
            self.recent.pop(key, None)
        if self.older:
            self.older.pop(key, None)

    def keep(self, keys: list[Key]) -> bool:
        """Report ``keys`` (due now, but their calls still wait for a thread)
        at the next tick instead; whether the shell must be asked for it."""
        self.older.update(dict.fromkeys(keys))
        if self.armed:
            return False
        self.armed = True
        return True

    def due(self) -> tuple[list[Key], bool]:
        """The tick came: the keys to report (the older generation, forgotten
        here) and whether the shell must be asked for another tick."""
        keys = list(self.older)
        self.older, self.recent = self.recent, {}
        self.armed = bool(self.older)
        return keys, self.armed


class RunningCalls(WorkerBookkeeping):
    """Start reports and abandoned calls (see the module docstring)."""

    #: the ``epoch`` of the last scheduler message handled (kept by ``WorkerState``)
    epoch: int

    def __init__(self, address: Address, nthreads: int, max_fetch_keys_per_request: int,
                 max_concurrent_fetches: int, story_size: int) -> None:
        super().__init__(address, nthreads, max_fetch_keys_per_request, max_concurrent_fetches,
                         story_size)
        #: calls started and not reported to the scheduler yet
        self.start_reports = StartReports()

    def validate_running_calls(self) -> None:
        """Every unreported start is a call holding a thread, and has a tick coming."""
        reports = self.start_reports
        strays = [k for k in reports.unreported if k not in self.executing]
        if strays:
            raise InvalidWorkerState(f"unreported starts {strays} are not executing")
        if reports.unreported and not reports.armed:
            raise InvalidWorkerState(f"unreported starts {list(reports.unreported)} with no tick coming")

    def _report_start(self, key: Key) -> None:
        """The call of ``key`` runs for the scheduler's current assignment:
        report it at the next tick, unless it ends first."""
        if self.start_reports.started(key):
            self._out.append(ScheduleStartReport(self._stim))

    def _call_ended(self, key: Key) -> None:
        """The call of ``key`` no longer holds a thread."""
        self.executing.discard(key)
        self.start_reports.ended(key)

    def _on_start_report_due(self, ev: StartReportDue) -> None:
        """The shell's tick: report the calls started before the previous tick
        that still run for the scheduler (one ``TasksStarted``)."""
        tasks = self.tasks
        due, again = self.start_reports.due()
        if ev.queued:  # calls run ahead that no thread took yet: not running
            queued = set(ev.queued)  # membership only
            waiting = [k for k in due if k in queued]
            if waiting:
                again = self.start_reports.keep(waiting) or again
                due = [k for k in due if k not in queued]
        keys = tuple([k for k in due
                      if (ts := tasks.get(k)) is not None and ts.state == EXECUTING and ts.assigned])
        if keys:
            self._out.append(TasksStarted(ev.stimulus_id, self.address, keys, self.epoch))
        if again:
            self._out.append(ScheduleStartReport(ev.stimulus_id))

    def _on_abandon(self, ev: AbandonTasks) -> None:
        """A forced cancel (after the ``FreeKeys`` that cancelled these keys):
        drop the calls still running and free their threads now."""
        tasks = self.tasks
        for key in ev.keys:
            ts = tasks.get(key)
            if ts is None or ts.state != CANCELLED or ts.previous != EXECUTING:
                self._note(key, "ignored", f"abandon while {ts.state if ts else 'released'}")
                continue
            self._call_ended(key)
            self._release_deps(ts)
            self._forget(ts)
            self._out.append(AbandonExecution(ev.stimulus_id, key))
