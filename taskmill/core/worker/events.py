"""The worker state machine's own events and commands.

The worker shell (``taskmill.server.worker``) owns the sockets, the thread
pool and the data store (the values themselves).  The state machine
(``taskmill.core.worker.state``) owns the decisions: which task runs next,
which inputs to fetch from which peer, what to tell the scheduler.  It never
sees a value, only keys and sizes.

What it hears from the scheduler (``ComputeTask``, ``FreeKeys``,
``AcquireReplicas``) and tells the scheduler (``TaskFinished``, ``AddKeys``,
``Paused`` ...) are wire messages of :mod:`taskmill.protocol.vocabulary`.
The classes below never cross a process boundary: events the shell makes from
what it observes (a thread finished a task, a fetch came back, memory ran
short, a task seceded or asks to rejoin) and commands it carries out itself
(run a task, fetch from a peer, drop values, let a rejoining task go on).
"""

from __future__ import annotations

from taskmill.frozen import frozen
from typing import Any, Protocol

from taskmill.protocol.vocabulary import Address, Key, Message


# --------------------------------------------------------------------------- #
# Events
# --------------------------------------------------------------------------- #
@frozen
class WorkerEvent:
    """Something the worker shell observed; ``stimulus_id`` names the cause."""

    stimulus_id: str


@frozen
class DataPut(WorkerEvent):
    """``client`` scattered data here (the shell already stored it)."""

    nbytes: dict[Key, int]
    client: str = ""


@frozen
class DataRetained(WorkerEvent):
    """The shell kept this data across the loss of its scheduler and registers
    again with it (``RegisterWorker.held``): the first event of a fresh machine."""

    nbytes: dict[Key, int]


@frozen
class ExecuteSucceeded(WorkerEvent):
    """A task ran; the shell already stored its value."""

    key: Key
    nbytes: int
    type_name: str
    start: float
    stop: float
    value: Any = None  # opaque: the small serialized result to attach to TaskFinished


@frozen
class ExecuteFailed(WorkerEvent):
    """A task raised; ``exception`` is opaque (serialized by the shell)."""

    key: Key
    exception: Any  # opaque serialized exception
    traceback: str
    exception_text: str
    start: float
    stop: float


@frozen
class FetchSucceeded(WorkerEvent):
    """Data arrived from ``peer``; the shell already stored what came
    (``nbytes``).  Requested keys absent from ``nbytes`` were not there."""

    peer: Address
    requested: tuple[Key, ...]
    nbytes: dict[Key, int]


@frozen
class FetchFailed(WorkerEvent):
    """``peer`` could not be reached or failed while sending ``keys``."""

    peer: Address
    keys: tuple[Key, ...]
    reason: str


@frozen
class WhoHasAnswered(WorkerEvent):
    """The scheduler's answer to an ``AskWhoHas`` command."""

    who_has: dict[Key, tuple[Address, ...]]


@frozen
class PauseChanged(WorkerEvent):
    """Memory is short (``paused=True``): start no task and no fetch until a
    ``PauseChanged(paused=False)``.  Running work and fetches in flight go on;
    data is still served to peers."""

    paused: bool


@frozen
class TaskSeceded(WorkerEvent):
    """The running task ``key`` called ``secede()``: its thread no longer
    counts against ``nthreads`` (it waits on other tasks)."""

    key: Key


@frozen
class RejoinRequested(WorkerEvent):
    """The seceded task ``key`` called ``rejoin()``: its thread waits for a
    ``RejoinGranted`` before it goes on."""

    key: Key


@frozen
class StartReportDue(WorkerEvent):
    """The timer of a ``ScheduleStartReport`` went off: report the calls
    started since the last report that still run (``tasks-started``).
    ``queued``: the keys whose calls still wait for a thread (run ahead):
    their report waits for a later tick."""

    queued: tuple[Key, ...] = ()


@frozen
class LogRecordsCaptured(WorkerEvent):
    """Tasks here emitted log records that a forwarding plugin captured under
    ``topic`` (plain dicts, see :mod:`taskmill.log_forwarding`): the machine
    passes them on to the scheduler as ``LogRecords``."""

    topic: str
    records: tuple[dict[str, Any], ...]


class WorkerInput(Protocol):
    """What the worker machine handles: its own events and the wire messages
    it takes from the scheduler."""

    @property
    def stimulus_id(self) -> str: ...


# --------------------------------------------------------------------------- #
# Commands
# --------------------------------------------------------------------------- #
@frozen
class WorkerCommand:
    """Something the worker shell must do; ``stimulus_id`` names the cause."""

    stimulus_id: str


@frozen
class Execute(WorkerCommand):
    """Run a task in the thread pool.  ``dependencies`` are all in the data
    store when this command is issued.  With ``report_value`` the shell hands
    back the result serialized when it is small (a client wants it)."""

    key: Key
    func_token: str
    func: Any  # opaque serialized function with the first Execute of a token, then None
    args: Any
    dependencies: tuple[Key, ...]
    report_value: bool = False


@frozen
class Fetch(WorkerCommand):
    """Get these keys from one peer, in one request."""

    peer: Address
    keys: tuple[Key, ...]


@frozen
class DeleteData(WorkerCommand):
    """Drop these values from the data store."""

    keys: tuple[Key, ...]


@frozen
class CancelExecution(WorkerCommand):
    """Best effort: the running task's result will be discarded."""

    key: Key


@frozen
class AbandonExecution(WorkerCommand):
    """The running call of ``key`` is abandoned (a forced cancel): its thread
    leaves the pool's count at once, another takes its place, and its outcome
    is dropped whenever it comes (a Python call cannot be interrupted)."""

    key: Key


@frozen
class ScheduleStartReport(WorkerCommand):
    """Hand the machine ``StartReportDue`` in a few milliseconds (issued when
    the first call started since the last report; at most one is pending)."""


@frozen
class AskWhoHas(WorkerCommand):
    """Every known holder of these dependencies failed: ask the scheduler."""

    keys: tuple[Key, ...]


@frozen
class RejoinGranted(WorkerCommand):
    """The thread of ``key``, waiting in ``rejoin()``, may go on: it counts
    against ``nthreads`` again."""

    key: Key


#: What the worker machine returns: its own commands and wire messages for
#: the scheduler.
WorkerOutput = WorkerCommand | Message
