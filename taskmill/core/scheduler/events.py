"""The scheduler state machine's own events and commands.

Most of what the scheduler machine handles and returns are wire messages
(:mod:`taskmill.protocol.vocabulary`: ``UpdateGraph``, ``TaskFinished``,
``ComputeTask``, ``KeyInMemory`` ...).  The classes below never cross a
process boundary: the shell makes these events from what it observes itself
(a stream opening or closing, a request it serves) and acts on these commands
itself (a log line, an answer to a waiting request).  Each carries a
``stimulus_id`` so every state change can be traced back to its cause
(``story(key)``).
"""

from __future__ import annotations

from taskmill.frozen import frozen
from typing import Protocol

from taskmill.protocol.vocabulary import Address, Key, Message


# --------------------------------------------------------------------------- #
# Events
# --------------------------------------------------------------------------- #
@frozen
class SchedulerEvent:
    """Base of the scheduler's own events; ``stimulus_id`` names the cause."""

    stimulus_id: str


@frozen
class ClientConnected(SchedulerEvent):
    """A client opened its stream (it wants nothing yet)."""

    client: str


@frozen
class ClientDisconnected(SchedulerEvent):
    """The client is gone: everything it wanted is released."""

    client: str


@frozen
class RestartRequested(SchedulerEvent):
    """Every worker is being restarted: all tasks and data are dropped and
    every wanted key is reported cancelled to its clients.  Workers are
    removed with ``WorkerLeft`` and come back with ``RegisterWorker``."""

    reason: str = "cluster restarted"


@frozen
class WorkerLeft(SchedulerEvent):
    """A worker is gone (closed connection, missed heartbeats, killed).
    ``reason`` says why, e.g. "worker process exited with signal SIGKILL"."""

    worker: Address
    reason: str
    now: float = 0.0


@frozen
class NoWorkersTimedOut(SchedulerEvent):
    """No worker has been connected for ``waited`` seconds, past the option
    ``scheduler.no-workers-timeout`` (``timeout``): the tasks waiting to run
    err with ``NoWorkersError`` (see :mod:`taskmill.core.scheduler.no_workers`)."""

    waited: float
    timeout: float


@frozen
class StealTick(SchedulerEvent):
    """Time to move queued work from saturated workers to idle ones (the
    shell sends it every ``scheduler.work-stealing-interval`` while
    ``scheduler.work-stealing`` is on).  ``horizon``: seconds of work per
    thread a worker should have queued to stay busy until the next tick; a
    worker with less may steal (see :mod:`taskmill.core.scheduler.stealing`)."""

    horizon: float


@frozen
class ReplicateRequested(SchedulerEvent):
    """Keep copies of ``keys`` on ``n`` workers (all when None), chosen among
    ``workers`` (all when None).  Keys not in memory are skipped."""

    keys: tuple[Key, ...]
    n: int | None = None
    workers: tuple[Address, ...] | None = None


@frozen
class RebalanceRequested(SchedulerEvent):
    """Even out the bytes held by ``workers`` (all open ones when None),
    moving ``keys`` (all in memory when None); see
    ``taskmill.core.scheduler.rebalance``."""

    keys: tuple[Key, ...] | None = None
    workers: tuple[Address, ...] | None = None


@frozen
class RetireRequested(SchedulerEvent):
    """Retire ``workers`` gracefully: no new task goes there, the data held
    only there is copied elsewhere, then each is removed (``WorkerRetired``)."""

    workers: tuple[Address, ...]


@frozen
class RetireCancelled(SchedulerEvent):
    """Give up retiring ``workers`` (e.g. it took too long): those still
    retiring go back to work (``RetirementAborted`` with ``reason``)."""

    workers: tuple[Address, ...]
    reason: str


@frozen
class PinKeys(SchedulerEvent):
    """The pseudo-client ``holder`` wants ``keys`` (a shared value refers to
    them, or they are handed over to a client): their data stays while it does."""

    holder: str
    keys: tuple[Key, ...]


@frozen
class UnpinKeys(SchedulerEvent):
    """The pseudo-client ``holder`` no longer wants ``keys``."""

    holder: str
    keys: tuple[Key, ...]


# --------------------------------------------------------------------------- #
# Commands
# --------------------------------------------------------------------------- #
@frozen
class SchedulerCommand:
    """Base of the scheduler's own commands; ``stimulus_id`` names the cause."""

    stimulus_id: str


@frozen
class TaskStalled(SchedulerCommand):
    """``key`` waits in no-worker because no live worker could ever run it
    (``reason``, e.g. the resources it needs that no worker declares); it
    runs when such a worker joins.  The shell logs a warning."""

    key: Key
    reason: str


@frozen
class WorkerRetired(SchedulerCommand):
    """``worker`` was retired: every key it held has a copy elsewhere and it
    is no longer part of the cluster.  The shell tells it (``Retired``)."""

    worker: Address


@frozen
class RetirementAborted(SchedulerCommand):
    """``worker`` could not be retired (``reason``) and is back at work."""

    worker: Address
    reason: str


@frozen
class StreamMarked(SchedulerCommand):
    """The ``stream-mark`` ``mark`` of ``client`` came through its stream
    (everything it sent before is handled): the shell lets the request
    waiting for it go ahead (:mod:`taskmill.server.shared_values`)."""

    client: str
    mark: str


@frozen
class TopicAbandoned(SchedulerCommand):
    """No client wants the log records of ``topic`` any more (the last one
    called ``unforward_logging``): the shell tears down the worker plugin
    that captures them (:mod:`taskmill.core.scheduler.log_forwarding`)."""

    topic: str


class SchedulerInput(Protocol):
    """What the scheduler machine handles: its own events and the wire
    messages it takes (each with the ``stimulus_id`` its shell gave it)."""

    @property
    def stimulus_id(self) -> str:
        """The cause of this input, for ``story``."""
        ...


#: What it returns: its own commands and wire messages (addressed by their
#: ``worker`` or ``client`` field).
SchedulerOutput = SchedulerCommand | Message
