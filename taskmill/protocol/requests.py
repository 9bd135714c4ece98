"""The request/reply ops of the wire vocabulary: a peer asks, a server answers.

Theory of operation
-------------------
Part of the vocabulary of :mod:`taskmill.protocol.vocabulary`, which imports
this module (so every op is registered when the vocabulary is) and re-exports
its classes: code imports them from ``vocabulary`` as any other op.  Each
class is one request a server handles (``Node.serve``), its docstring saying
what the reply holds.  Requests travel on their own connection, not on a
stream, so no field is filled in by the receiver.  The vocabulary is split by
topic only to keep each module readable; the ops and their order in
``docs/protocol.md`` are those of the declarations, this module's after the
streams'.
"""

from __future__ import annotations

from taskmill.frozen import frozen
from taskmill.protocol.serialize import Serialized
from taskmill.protocol.wire_types import (
    ANY,
    CLIENT,
    NANNY,
    SCHEDULER,
    WORKER,
    Address,
    Key,
    Message,
    message,
)

__all__ = [
    "Ping",
    "WhoHas",
    "HasWhat",
    "NThreads",
    "RunningKeys",
    "SchedulerInfo",
    "ScatterTargets",
    "Restart",
    "RestartWorkers",
    "UploadFile",
    "WorkerExited",
    "Replicate",
    "Rebalance",
    "RetireWorkers",
    "AdaptiveTarget",
    "Story",
    "TaskStream",
    "PerformanceData",
    "RunOnScheduler",
    "DumpClusterState",
    "SchedulerLogs",
    "GetData",
    "PutData",
    "Run",
    "WorkerLogs",
    "DumpWorkerState",
    "Executing",
    "RestartWorker",
    "Kill",
]


# --------------------------------------------------------------------------- #
# Requests to any server, then to the scheduler (request/reply: the reply is
# ``{"status": "OK", "result": ...}`` or an error, see docs/protocol.md)
# --------------------------------------------------------------------------- #
@message("ping", ANY, ANY, kind="request")
@frozen
class Ping(Message):
    """-> "pong" (is the server up and answering?)."""


@message("who-has", ANY, SCHEDULER, kind="request")
@frozen
class WhoHas(Message):
    """-> {key: [holder addresses]}; every key in memory when ``keys`` is None."""

    keys: tuple[Key, ...] | None = None


@message("has-what", CLIENT, SCHEDULER, kind="request")
@frozen
class HasWhat(Message):
    """-> {worker address: [keys it holds]}."""


@message("nthreads", CLIENT, SCHEDULER, kind="request")
@frozen
class NThreads(Message):
    """-> {worker address: threads}."""


@message("running-keys", CLIENT, SCHEDULER, kind="request")
@frozen
class RunningKeys(Message):
    """-> keys executing on any worker thread (asked of the workers)."""


@message("scheduler-info", CLIENT, SCHEDULER, kind="request")
@frozen
class SchedulerInfo(Message):
    """-> {"address", "id", "workers": {address: figures}, "clients", "dashboard"}."""


@message("scatter-targets", CLIENT, SCHEDULER, kind="request")
@frozen
class ScatterTargets(Message):
    """-> for each of ``n`` items, the workers to put it on."""

    n: int
    workers: tuple[Address, ...] | None = None
    broadcast: bool = False


@message("restart", CLIENT, SCHEDULER, kind="request")
@frozen
class Restart(Message):
    """Restart every worker, dropping all tasks and data; with
    ``wait_for_workers``, waits up to ``max_wait`` seconds for the workers to
    come back.  -> "OK"."""

    max_wait: float = 60.0
    wait_for_workers: bool = True


@message("restart-workers", CLIENT, SCHEDULER, kind="request")
@frozen
class RestartWorkers(Message):
    """Restart the processes of ``workers`` through their nannies (the other
    workers keep their data) and wait up to ``max_wait`` seconds for as many
    workers as before.  -> {address: "OK"}."""

    workers: tuple[Address, ...]
    max_wait: float = 60.0


@message("upload-file", ANY, ANY, kind="request")
@frozen
class UploadFile(Message):
    """Install a file in each worker's directory (to the scheduler: on every
    worker, now and later).  -> the path(s) where it was written."""

    filename: str
    data: bytes


@message("worker-exited", NANNY, SCHEDULER, kind="request")
@frozen
class WorkerExited(Message):
    """A nanny tells how its worker process ended (exit code, signal, memory)."""

    worker: Address
    reason: str


@message("replicate", CLIENT, SCHEDULER, kind="request")
@frozen
class Replicate(Message):
    """Keep copies of ``keys`` on ``n`` workers (all when None) among
    ``workers``; -> how many copies were made."""

    keys: tuple[Key, ...]
    n: int | None = None
    workers: tuple[Address, ...] | None = None
    max_wait: float | None = None


@message("rebalance", CLIENT, SCHEDULER, kind="request")
@frozen
class Rebalance(Message):
    """Even out the data held by ``workers`` (all when None), moving ``keys``
    (all when None); returns once every move has settled, waiting up to
    ``max_wait`` seconds (None: the retire timeout).  -> the number of keys moved."""

    keys: tuple[Key, ...] | None = None
    workers: tuple[Address, ...] | None = None
    max_wait: float | None = None


@message("retire-workers", ANY, SCHEDULER, kind="request")
@frozen
class RetireWorkers(Message):
    """Retire ``workers`` (or the ``n`` cheapest) after moving their unique
    data; -> the addresses retired."""

    workers: tuple[Address, ...] | None = None
    n: int | None = None
    close_workers: bool = True
    max_wait: float | None = None


@message("adaptive-target", ANY, SCHEDULER, kind="request")
@frozen
class AdaptiveTarget(Message):
    """How many workers the work asks for, finishing in about
    ``target_duration`` seconds with workers of ``threads_per_worker``
    threads (None: the average of today's) -> {"target": n, "close":
    [addresses of the workers to close when n is below today's count]}."""

    target_duration: float
    threads_per_worker: int | None = None


@message("story", CLIENT, SCHEDULER, kind="request")
@frozen
class Story(Message):
    """-> the scheduler's recorded transitions of ``keys``."""

    keys: tuple[Key, ...] = ()


@message("task-stream", CLIENT, SCHEDULER, kind="request")
@frozen
class TaskStream(Message):
    """-> the task stream records between ``start`` and ``stop`` (wall time)."""

    start: float = 0.0
    stop: float | None = None


@message("performance-data", CLIENT, SCHEDULER, kind="request")
@frozen
class PerformanceData(Message):
    """-> what ``performance_report`` renders, between ``start`` and ``stop``."""

    start: float = 0.0
    stop: float | None = None


@message("run-on-scheduler", CLIENT, SCHEDULER, kind="request")
@frozen
class RunOnScheduler(Message):
    """Call ``(fn, args, kwargs)`` on the scheduler's loop (the one payload it
    unpickles); -> the pickled result."""

    call: Serialized


@message("scheduler-logs", CLIENT, SCHEDULER, kind="request")
@frozen
class SchedulerLogs(Message):
    """-> the last ``n`` (None: all kept) [level name, line] of the process's log ring."""

    n: int | None = None


@message("dump-cluster-state", CLIENT, SCHEDULER, kind="request")
@frozen
class DumpClusterState(Message):
    """-> the scheduler's state and every worker's (``dump-worker-state``) as
    plain data, for a bug report (see ``taskmill.cluster_state``)."""


# --------------------------------------------------------------------------- #
# Requests to workers and nannies
# --------------------------------------------------------------------------- #
@message("get-data", ANY, WORKER, kind="request")
@frozen
class GetData(Message):
    """-> {"data": {key: Serialized}} for the ``keys`` held here (others absent)."""

    keys: tuple[Key, ...]


@message("put-data", CLIENT, WORKER, kind="request")
@frozen
class PutData(Message):
    """Store values ``client`` scatters (reported to the scheduler with
    ``keys-scattered``); -> {"incarnation": the worker's registration (see
    ``register-worker``), "nbytes": {key: nbytes}}."""

    data: dict[Key, Serialized]
    client: str = ""


@message("run", CLIENT, WORKER, kind="request")
@frozen
class Run(Message):
    """Call ``(fn, args, kwargs)`` on the worker; -> the pickled result."""

    call: Serialized


@message("worker-logs", CLIENT, WORKER, kind="request")
@frozen
class WorkerLogs(Message):
    """-> the last ``n`` (None: all kept) [level name, line] of the process's log ring."""

    n: int | None = None


@message("dump-worker-state", SCHEDULER, WORKER, kind="request")
@frozen
class DumpWorkerState(Message):
    """-> the worker's state machine and recent log lines as plain data."""


@message("executing", SCHEDULER, WORKER, kind="request")
@frozen
class Executing(Message):
    """-> the keys a worker thread runs now."""


@message("restart-worker", SCHEDULER, NANNY, kind="request")
@frozen
class RestartWorker(Message):
    """Kill the worker process and start a new one; -> "OK"."""


@message("kill", SCHEDULER, NANNY, kind="request")
@frozen
class Kill(Message):
    """Stop the worker process for good (the nanny stays up)."""
