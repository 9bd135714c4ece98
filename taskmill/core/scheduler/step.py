"""The work of one event: :class:`Step`.

Theory of operation
-------------------
``SchedulerState.handle`` makes a fresh :class:`Step` for each event it
applies and passes it down to every part of the machine that acts on that
event.  The step carries the event's ``stimulus_id`` (so story entries and
commands name their cause) and the work the event has started but not
finished:

* ``recs``: recommendations for other tasks, drained in FIFO order after the
  event's direct transitions (``TaskMachine.drain``; a list read by index,
  cheaper to make than a deque);
* ``ready``: tasks whose inputs are all in memory, placed in priority order;
* ``freed``: workers that got a free slot, filled from the queues;
* ``ahead``: candidates for look-ahead placement (``look_ahead``), looked
  at after the ready tasks are placed;
* ``pending_free``: ``FreeKeys`` gathered per worker, flushed at the end (or
  before a ``ComputeTask`` or ``AcquireReplicas`` to that worker, so a free
  never overtakes a compute of the same key);
* ``acquire_batch``: copies requested per worker (``Replicas.flush``);
* ``retire_dirty``: a replica or the set of open workers changed while
  workers retire (``Replicas.progress``);
* ``forgotten_done``: fire-and-forget keys that finished (released by a
  ``ReleaseKeys`` event after this one);
* ``cmds``: the commands made so far, shared by the events of one ``handle``
  call and returned by it;
* ``epoch``: the ``epoch`` of the last message to a worker made so far (the
  machine's counter, handed on from step to step): each ``ComputeTask``,
  ``FreeKeys`` and ``AcquireReplicas`` takes the next one (``next_epoch``),
  and each ``FreeKeys`` is entered in its worker's ledger
  (``WorkerRecord.freeing``), see "Crossed messages" in
  ``taskmill.core.scheduler.state``.

A step is made for every event, so it must be cheap: the containers that
few events use (``acquire_batch``, ``forgotten_done``) start as None.

Nothing here outlives its event: when a step raises, ``handle`` drops it, so
no scratch space is ever reset by hand.  The step is pure data plus a few
helpers that only touch it (and the story log it writes to).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from taskmill.core.scheduler.events import SchedulerOutput
from taskmill.core.scheduler.records import FORGOTTEN, TaskRecord, WorkerRecord
from taskmill.protocol.vocabulary import FreeKeys, Key

#: A story entry: ``(key, from_state, to_state, stimulus_id, note)``.
StoryEntry = tuple[Key, str, str, str, str]
#: A recommendation: ``(task, CHECK or a target state, argument)``.
Recommendation = tuple[TaskRecord, str, Any]
#: What a transition makes: no command, one, or several (one per client told).
Made = SchedulerOutput | list[SchedulerOutput] | None

#: The recommendation to bring a task in line with whether it is still needed.
CHECK = "check"


def also(made: Made, cmd: SchedulerOutput) -> list[SchedulerOutput] | SchedulerOutput:
    """``made`` plus ``cmd``: a single command stays unwrapped."""
    if made is None:
        return cmd
    if isinstance(made, list):
        made.append(cmd)
        return made
    return [made, cmd]


class Step:
    """The work of one event (see the module docstring)."""

    __slots__ = ("stimulus_id", "story", "cmds", "epoch", "recs", "ready", "freed", "pending_free",
                 "acquire_batch", "retire_dirty", "forgotten_done", "ahead")

    def __init__(self, stimulus_id: str, story: deque[StoryEntry],
                 cmds: list[SchedulerOutput], epoch: int = 0) -> None:
        self.stimulus_id = stimulus_id
        self.epoch = epoch
        #: the machine's transition log, which this step's notes go to
        self.story = story
        self.cmds = cmds
        self.recs: list[Recommendation] = []
        self.ready: list[TaskRecord] = []
        self.freed: dict[WorkerRecord, None] = {}
        self.pending_free: dict[WorkerRecord, list[Key]] = {}
        #: (rare, made when needed)
        self.acquire_batch: dict[WorkerRecord, list[TaskRecord]] | None = None
        self.retire_dirty = False
        #: (rare, made when needed)
        self.forgotten_done: list[Key] | None = None
        #: candidates for look-ahead placement (made when needed)
        self.ahead: list[TaskRecord] | None = None

    def look_ahead(self, tasks: list[TaskRecord]) -> None:
        """Consider ``tasks`` for look-ahead placement after the ready ones."""
        if self.ahead is None:
            self.ahead = tasks
        else:
            self.ahead.extend(tasks)

    def note(self, key: Key, start: str, finish: str, note: str = "") -> None:
        """A story entry caused by this step."""
        self.story.append((key, start, finish, self.stimulus_id, note))

    def ignore(self, key: Key, ts: TaskRecord | None, note: str) -> None:
        """A stimulus about ``key`` (record ``ts``, None if unknown) that changes nothing."""
        state = ts.state if ts is not None else FORGOTTEN
        self.story.append((key, state, state, self.stimulus_id, "ignored: " + note))

    def fire_and_forget_done(self, key: Key) -> None:
        """``key``, wanted by ``FIRE_AND_FORGET``, is done: release it after this event."""
        if self.forgotten_done is None:
            self.forgotten_done = [key]
        else:
            self.forgotten_done.append(key)

    def emit(self, made: Made) -> None:
        """Add what a transition or report made to the commands."""
        if made is not None:
            if isinstance(made, list):
                self.cmds.extend(made)
            else:
                self.cmds.append(made)

    def next_epoch(self) -> int:
        """The ``epoch`` of a new message to a worker."""
        self.epoch += 1
        return self.epoch

    def free(self, ws: WorkerRecord, key: Key) -> None:
        """Tell ``ws`` (if alive) to drop ``key``, with its other frees of this step."""
        if ws.alive:
            pending = self.pending_free.get(ws)
            if pending is None:
                self.pending_free[ws] = [key]
            else:
                pending.append(key)

    def flush_frees(self, ws: WorkerRecord) -> None:
        """Emit the frees gathered for ``ws`` now (before another command to it)."""
        keys = self.pending_free.pop(ws, None)
        if keys:
            self._free_now(ws, tuple(keys))

    def flush_all_frees(self) -> None:
        """Emit every gathered free, one ``FreeKeys`` per worker."""
        for ws, keys in self.pending_free.items():
            self._free_now(ws, tuple(keys))
        self.pending_free.clear()

    def _free_now(self, ws: WorkerRecord, keys: tuple[Key, ...]) -> None:
        epoch = self.epoch = self.epoch + 1
        ws.freeing(keys, epoch)
        self.cmds.append(FreeKeys(self.stimulus_id, ws.address, keys, epoch))

    def forget_worker(self, ws: WorkerRecord) -> None:
        """``ws`` left: nothing of this step goes to it any more."""
        self.freed.pop(ws, None)
        self.pending_free.pop(ws, None)
