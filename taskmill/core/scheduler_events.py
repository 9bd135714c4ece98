"""Typed events into, and commands out of, the pure scheduler state machine.

The scheduler shell (``taskmill.server.scheduler``) turns wire messages into the
events below, feeds them to :meth:`SchedulerState.handle`, and turns the
returned commands into wire messages.  Plain dicts exist only at the wire
boundary; in here every stimulus is a frozen dataclass with a ``stimulus_id``
so every state change can be traced back to its cause (``story(key)``).

Payloads the scheduler must never look inside (functions, arguments,
exceptions) travel as opaque objects (``taskmill.protocol.Serialized``); the
state machine only stores and forwards them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Key = str
Address = str
Priority = tuple[int, ...]


# --------------------------------------------------------------------------- #
# What a client submits
# --------------------------------------------------------------------------- #
@dataclass(frozen=True, slots=True)
class RunSpec:
    """How to run one task: an opaque function (sent to each worker once,
    identified by ``func_token``) and opaque arguments in which dependencies
    appear as references to their keys."""

    func_token: str
    func: Any
    args: Any


@dataclass(frozen=True, slots=True)
class NewTask:
    """One task of a submitted graph."""

    key: Key
    run_spec: RunSpec
    dependencies: tuple[Key, ...] = ()
    priority: Priority = (0,)
    retries: int = 0
    workers: tuple[Address, ...] | None = None  # restrictions
    allow_other_workers: bool = False
    #: abstract resources it holds while it runs, e.g. {"GPU": 1} (always strict)
    resources: dict[str, float] | None = None


# --------------------------------------------------------------------------- #
# Events
# --------------------------------------------------------------------------- #
@dataclass(frozen=True, slots=True)
class SchedulerEvent:
    stimulus_id: str


@dataclass(frozen=True, slots=True)
class ClientConnected(SchedulerEvent):
    client: str


@dataclass(frozen=True, slots=True)
class ClientDisconnected(SchedulerEvent):
    """The client is gone: everything it wanted is released."""

    client: str


@dataclass(frozen=True, slots=True)
class GraphSubmitted(SchedulerEvent):
    """A client adds tasks and declares which keys it wants (holds futures for).

    Tasks whose key already exists are not re-added (pure tasks submitted twice
    share one task); a key that failed or was forgotten is re-added.  A
    dependency that is neither in ``tasks`` nor already known to the scheduler
    makes the dependent task err at once with an error naming the key."""

    client: str
    tasks: tuple[NewTask, ...]
    wanted: tuple[Key, ...]
    now: float = 0.0


@dataclass(frozen=True, slots=True)
class KeysWanted(SchedulerEvent):
    """A client holds futures for existing keys (e.g. futures unpickled from
    another client, or ``fire_and_forget``)."""

    client: str
    keys: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class KeysReleased(SchedulerEvent):
    """A client no longer holds any future for these keys."""

    client: str
    keys: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class CancelRequested(SchedulerEvent):
    """A client cancels keys: they (and their dependents) stop and are
    reported cancelled to every client that wants them."""

    client: str
    keys: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class DataScattered(SchedulerEvent):
    """A client put data directly on workers; ``who_has`` says where."""

    client: str
    who_has: dict[Key, tuple[Address, ...]]
    nbytes: dict[Key, int]
    type_names: dict[Key, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RestartRequested(SchedulerEvent):
    """Every worker is being restarted: all tasks and data are dropped and
    every wanted key is reported cancelled to its clients.  Workers are
    removed with ``WorkerLeft`` and come back with ``WorkerJoined``."""

    reason: str = "cluster restarted"


@dataclass(frozen=True, slots=True)
class WorkerJoined(SchedulerEvent):
    worker: Address
    nthreads: int
    memory_limit: int
    now: float
    nanny: Address | None = None
    name: str = ""
    #: abstract resources it declares, e.g. {"GPU": 2}
    resources: dict[str, float] | None = None


@dataclass(frozen=True, slots=True)
class WorkerLeft(SchedulerEvent):
    """A worker is gone (closed connection, missed heartbeats, killed).
    ``reason`` says why, e.g. "worker process exited with signal SIGKILL"."""

    worker: Address
    reason: str
    now: float = 0.0


@dataclass(frozen=True, slots=True)
class TaskFinished(SchedulerEvent):
    worker: Address
    key: Key
    nbytes: int
    type_name: str
    start: float
    stop: float
    # opaque: a small result the worker attached because the task was sent
    # with ``report_value``; forwarded to the clients that want the key, never stored
    value: Any = None


@dataclass(frozen=True, slots=True)
class TaskErred(SchedulerEvent):
    worker: Address
    key: Key
    exception: Any  # opaque (serialized exception)
    traceback: Any  # opaque (serialized traceback text)
    exception_text: str
    start: float = 0.0
    stop: float = 0.0


@dataclass(frozen=True, slots=True)
class WorkerHasKeys(SchedulerEvent):
    """A worker now also holds copies of keys (it fetched them as inputs)."""

    worker: Address
    nbytes: dict[Key, int]


@dataclass(frozen=True, slots=True)
class WorkerReleasedKeys(SchedulerEvent):
    """A worker dropped its copies of keys."""

    worker: Address
    keys: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class WorkerMissingData(SchedulerEvent):
    """``worker`` could not get ``keys`` from ``errant_worker``: that copy is
    gone.  Keys left with no copy are recomputed from lineage (or err as lost
    when they have none, e.g. scattered data)."""

    worker: Address
    errant_worker: Address
    keys: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class WorkerCapacity(SchedulerEvent):
    """Periodic heartbeat: lets policy use fresh figures. Never needed for correctness."""

    worker: Address
    now: float
    memory: int = 0


@dataclass(frozen=True, slots=True)
class WorkerPaused(SchedulerEvent):
    """The worker's memory is short (``paused=True``): it starts nothing new,
    so no new task goes there while another worker has room; ``False`` when
    it resumes."""

    worker: Address
    paused: bool


@dataclass(frozen=True, slots=True)
class ReplicateRequested(SchedulerEvent):
    """Keep copies of ``keys`` on ``n`` workers (all when None), chosen among
    ``workers`` (all when None).  Keys not in memory are skipped."""

    keys: tuple[Key, ...]
    n: int | None = None
    workers: tuple[Address, ...] | None = None


@dataclass(frozen=True, slots=True)
class RetireRequested(SchedulerEvent):
    """Retire ``workers`` gracefully: no new task goes there, the data held
    only there is copied elsewhere, then each is removed (``WorkerRetired``)."""

    workers: tuple[Address, ...]


@dataclass(frozen=True, slots=True)
class RetireCancelled(SchedulerEvent):
    """Give up retiring ``workers`` (e.g. it took too long): those still
    retiring go back to work (``RetirementAborted`` with ``reason``)."""

    workers: tuple[Address, ...]
    reason: str


# --------------------------------------------------------------------------- #
# Commands
# --------------------------------------------------------------------------- #
@dataclass(frozen=True, slots=True)
class SchedulerCommand:
    stimulus_id: str


@dataclass(frozen=True, slots=True)
class ComputeTask(SchedulerCommand):
    """Send a task to a worker.  ``func`` is None when this worker has already
    been sent the function with ``func_token``."""

    worker: Address
    key: Key
    func_token: str
    func: Any
    args: Any
    who_has: dict[Key, tuple[Address, ...]]
    nbytes: dict[Key, int]
    priority: Priority
    # a client wants the result: the worker attaches it to ``task-finished`` if small
    report_value: bool = False


@dataclass(frozen=True, slots=True)
class FreeKeys(SchedulerCommand):
    """Tell a worker to drop these keys: data, running or pending work."""

    worker: Address
    keys: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class ReportInMemory(SchedulerCommand):
    client: str
    key: Key
    who_has: tuple[Address, ...]
    type_name: str
    value: Any = None  # the small result the worker attached, if any (opaque)


@dataclass(frozen=True, slots=True)
class ReportErred(SchedulerCommand):
    client: str
    key: Key
    exception: Any
    traceback: Any
    exception_text: str
    worker: Address  # where it failed ("" when the scheduler decided it)
    # When ``exception`` is None the scheduler itself failed the task; this
    # names the taskmill error class the client raises ("KilledWorker",
    # "MissingDependencyError"), with ``exception_text`` as its message.
    error_type: str = ""


@dataclass(frozen=True, slots=True)
class ReportLost(SchedulerCommand):
    """The key's data is gone and cannot be recomputed (no lineage)."""

    client: str
    key: Key
    reason: str


@dataclass(frozen=True, slots=True)
class ReportCancelled(SchedulerCommand):
    client: str
    key: Key
    reason: str


@dataclass(frozen=True, slots=True)
class TaskStalled(SchedulerCommand):
    """``key`` waits in no-worker because no live worker could ever run it
    (``reason``, e.g. the resources it needs that no worker declares); it
    runs when such a worker joins.  The shell logs a warning."""

    key: Key
    reason: str


@dataclass(frozen=True, slots=True)
class AcquireReplicas(SchedulerCommand):
    """Tell ``worker`` to fetch copies of keys from their holders
    (``who_has``) and keep them; it reports each copy with ``add-keys``
    (``WorkerHasKeys``), or ``released-keys`` for one it cannot take."""

    worker: Address
    who_has: dict[Key, tuple[Address, ...]]
    nbytes: dict[Key, int]


@dataclass(frozen=True, slots=True)
class WorkerRetired(SchedulerCommand):
    """``worker`` was retired: every key it held has a copy elsewhere and it
    is no longer part of the cluster.  The shell may close it now."""

    worker: Address


@dataclass(frozen=True, slots=True)
class RetirementAborted(SchedulerCommand):
    """``worker`` could not be retired (``reason``) and is back at work."""

    worker: Address
    reason: str
