"""Tasks that leave the worker's thread count and come back: ``secede()`` and ``rejoin()``.

Theory of operation
-------------------
A task that waits on other tasks (it submitted them through ``get_client()``
and gathers them) would hold one of the worker's ``nthreads`` threads while
doing nothing; on a worker with one thread its children could never run.
``secede()`` takes it out of the count, ``rejoin()`` puts it back.  This
module is the part of the pure worker machine that keeps that count; it is a
layer of :class:`~taskmill.core.worker.state.WorkerState`, between the books
(:mod:`taskmill.core.worker.bookkeeping`) and the event handlers.

* ``TaskSeceded(key)`` (the shell: the task's thread called ``secede()``):
  an executing key enters ``seceded``.  ``busy_threads`` (executing less
  seceded) is what is compared with ``nthreads``, so the next ready task
  starts at the end of this ``handle`` call.  The scheduler hears
  ``Seceded(key, seceded=True)`` and frees the task's slot in its
  accounting while the task stays processing here, so it sends more work.
  A key not executing (its run ended meanwhile, or it belongs to a run the
  machine never knew: the shell started afresh) is ignored.
* ``RejoinRequested(key)`` (the thread called ``rejoin()`` and blocks): the
  key joins ``rejoining``, first come first served.  At the end of every
  ``handle`` call, *before* ready tasks are started, waiting rejoiners take
  the free threads (:meth:`SecessionHandlers._grant_rejoins`): each leaves
  ``seceded`` and ``rejoining``, the shell gets ``RejoinGranted(key)`` (the
  thread goes on) and the scheduler ``Seceded(key, seceded=False)`` (the
  slot counts again).  Rejoiners go first because they hold a thread and
  memory already, and they finish work that others wait for.  A pause for
  memory does not hold them back: they are running work, not new work.  A
  rejoin of a key not seceded is granted at once (the thread of a run the
  machine does not know must not block for ever).
* A seceded run the scheduler did not count as its own (cancelled, or run
  only for a task here) and now assigns here again is adopted as it is, so
  the scheduler hears ``Seceded(key, seceded=True)`` again
  (:meth:`SecessionHandlers._run_adopted`): the slot it has just taken for
  the task must not be held by a run that waits outside the thread count.
* The end of a run (``ExecuteSucceeded`` / ``ExecuteFailed``, or a forced
  cancel abandoning it) takes its key out of both
  (:meth:`SecessionHandlers._run_left_thread`): a task may secede and never
  rejoin.  The scheduler needs no word of it: a seceded
  task holds no slot, so its ``task-finished`` frees none.

Invariants (checked by :mod:`taskmill.core.worker.validate`): ``rejoining``
is within ``seceded``, which is within ``executing``; ``busy_threads`` never
exceeds ``nthreads``; no rejoiner waits while a thread is free.
"""

from __future__ import annotations

from taskmill.core.worker.bookkeeping import WorkerBookkeeping
from taskmill.core.worker.events import RejoinGranted, RejoinRequested, TaskSeceded
from taskmill.protocol.vocabulary import Key, Seceded

__all__ = ["SecessionHandlers"]


class SecessionHandlers(WorkerBookkeeping):
    """The ``secede()``/``rejoin()`` handlers of the worker machine (see the module docstring)."""

    def _on_task_seceded(self, ev: TaskSeceded) -> None:
        """A running task left the thread count: its thread is free for the next ready task."""
        key = ev.key
        if key not in self.executing:
            self._note(key, "ignored", "secede of a task not executing")
            return
        if key in self.seceded:
            self._note(key, "ignored", "secede of a task already seceded")
            return
        self.seceded[key] = None
        self._note(key, "note", "seceded: its thread no longer counts")
        self._out.append(Seceded(ev.stimulus_id, self.address, key, True))

    def _on_rejoin_requested(self, ev: RejoinRequested) -> None:
        """A seceded task waits for a thread (granted at the end of the ``handle`` call)."""
        key = ev.key
        if key not in self.seceded:
            self._note(key, "ignored", "rejoin of a task not seceded: it goes on at once")
            self._out.append(RejoinGranted(ev.stimulus_id, key))
            return
        self.rejoining[key] = None
        self._note(key, "note", "asks to rejoin: waits for a thread")

    def _grant_rejoins(self) -> None:
        """Give free threads to waiting rejoiners, oldest first."""
        rejoining = self.rejoining
        seceded = self.seceded
        stim = self._stim
        while rejoining and self.busy_threads < self.nthreads:
            key = next(iter(rejoining))
            del rejoining[key]
            del seceded[key]
            self._note(key, "note", "rejoined: its thread counts again")
            self._out.append(RejoinGranted(stim, key))
            self._out.append(Seceded(stim, self.address, key, False))

    def _run_adopted(self, key: Key) -> None:
        """The scheduler assigned ``key`` here again while its run goes on: if
        that run is seceded, say so again (the scheduler counted a slot)."""
        if key in self.seceded:
            self._note(key, "note", "adopted while seceded: the scheduler is told again")
            self._out.append(Seceded(self._stim, self.address, key, True))

    def _run_left_thread(self, key: Key) -> None:
        """The run of ``key`` ended: it is neither seceded nor rejoining any more."""
        if key in self.seceded:
            del self.seceded[key]
            self.rejoining.pop(key, None)
            self._note(key, "note", "ended while seceded")
