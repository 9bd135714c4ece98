"""Typed events into, and commands out of, the pure worker state machine.

The worker shell (``taskmill.server.worker``) owns the sockets, the thread
pool and the data store (the values themselves).  The state machine
(``taskmill.core.worker_state``) owns the decisions: which task runs next,
which inputs to fetch from which peer, what to tell the scheduler.  It never
sees a value, only keys and sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Key = str
Address = str
Priority = tuple[int, ...]


# --------------------------------------------------------------------------- #
# Events
# --------------------------------------------------------------------------- #
@dataclass(frozen=True, slots=True)
class WorkerEvent:
    stimulus_id: str


@dataclass(frozen=True, slots=True)
class ComputeRequested(WorkerEvent):
    """The scheduler asks this worker to run ``key``.  ``who_has`` lists, for
    each dependency, the workers holding it (possibly this one)."""

    key: Key
    func_token: str
    func: Any  # opaque serialized function, or None if sent before
    args: Any  # opaque serialized arguments
    who_has: dict[Key, tuple[Address, ...]]
    nbytes: dict[Key, int]
    priority: Priority


@dataclass(frozen=True, slots=True)
class FreeRequested(WorkerEvent):
    """The scheduler says: forget these keys (data, queued or running work)."""

    keys: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class DataPut(WorkerEvent):
    """A client scattered data here (the shell already stored it)."""

    nbytes: dict[Key, int]


@dataclass(frozen=True, slots=True)
class ExecuteSucceeded(WorkerEvent):
    """A task ran; the shell already stored its value."""

    key: Key
    nbytes: int
    type_name: str
    start: float
    stop: float
    value: Any = None  # opaque: the small serialized result to attach to SendTaskFinished


@dataclass(frozen=True, slots=True)
class ExecuteFailed(WorkerEvent):
    key: Key
    exception: Any  # opaque serialized exception
    traceback: Any  # opaque serialized traceback text
    exception_text: str
    start: float
    stop: float


@dataclass(frozen=True, slots=True)
class FetchSucceeded(WorkerEvent):
    """Data arrived from ``peer``; the shell already stored what came
    (``nbytes``).  Requested keys absent from ``nbytes`` were not there."""

    peer: Address
    requested: tuple[Key, ...]
    nbytes: dict[Key, int]


@dataclass(frozen=True, slots=True)
class FetchFailed(WorkerEvent):
    """``peer`` could not be reached or failed while sending ``keys``."""

    peer: Address
    keys: tuple[Key, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class WhoHasAnswered(WorkerEvent):
    """The scheduler's answer to a ``AskWhoHas`` command."""

    who_has: dict[Key, tuple[Address, ...]]


@dataclass(frozen=True, slots=True)
class AcquireRequested(WorkerEvent):
    """The scheduler asks this worker to fetch copies of keys from their
    holders (``who_has``) and keep them (replicate, retiring a peer)."""

    who_has: dict[Key, tuple[Address, ...]]
    nbytes: dict[Key, int]


@dataclass(frozen=True, slots=True)
class PauseChanged(WorkerEvent):
    """Memory is short (``paused=True``): start no task and no fetch until a
    ``PauseChanged(paused=False)``.  Running work and fetches in flight go on;
    data is still served to peers."""

    paused: bool


# --------------------------------------------------------------------------- #
# Commands
# --------------------------------------------------------------------------- #
@dataclass(frozen=True, slots=True)
class WorkerCommand:
    stimulus_id: str


@dataclass(frozen=True, slots=True)
class Execute(WorkerCommand):
    """Run a task in the thread pool.  ``dependencies`` are all in the data
    store when this command is issued."""

    key: Key
    func_token: str
    func: Any  # opaque serialized function, or None: use the cached one
    args: Any
    dependencies: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class Fetch(WorkerCommand):
    """Get these keys from one peer, in one request."""

    peer: Address
    keys: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class DeleteData(WorkerCommand):
    """Drop these values from the data store."""

    keys: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class CancelExecution(WorkerCommand):
    """Best effort: the running task's result will be discarded."""

    key: Key


@dataclass(frozen=True, slots=True)
class AskWhoHas(WorkerCommand):
    """Every known holder of these dependencies failed: ask the scheduler."""

    keys: tuple[Key, ...]


# Messages to the scheduler, mirrored one-to-one by scheduler events.
@dataclass(frozen=True, slots=True)
class SendTaskFinished(WorkerCommand):
    key: Key
    nbytes: int
    type_name: str
    start: float
    stop: float
    value: Any = None  # opaque small result for the clients that want the key, or None


@dataclass(frozen=True, slots=True)
class SendTaskErred(WorkerCommand):
    key: Key
    exception: Any
    traceback: Any
    exception_text: str
    start: float
    stop: float


@dataclass(frozen=True, slots=True)
class SendHasKeys(WorkerCommand):
    nbytes: dict[Key, int]


@dataclass(frozen=True, slots=True)
class SendReleasedKeys(WorkerCommand):
    keys: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class SendMissingData(WorkerCommand):
    errant_worker: Address
    keys: tuple[Key, ...]
