"""Client side of cluster operations that reach every node: code run on the
scheduler (``Executor.run_on_scheduler``) and the nodes' recent log records
(``get_scheduler_logs``, ``get_worker_logs``).

Each function returns a coroutine for the Executor to run on its loop (or to
hand back in asynchronous mode).

* ``run_on_scheduler`` runs user code on the scheduler's event loop, so the
  call has no time limit (as ``Executor.run``); its exception comes back with
  its type and the scheduler's traceback as ``__cause__``.
* The logs are each process's ring (:mod:`taskmill.logs`): ``(level name,
  formatted line)`` pairs, oldest first.  A worker that does not answer within
  ``TASKMILL_REQUEST_TIMEOUT`` (or is gone by the time it is asked) is left
  out of ``get_worker_logs``' answer, and the client logs a warning naming it
  and why: logs are for diagnosing a cluster, and one sick worker must not
  hide the others' records.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from taskmill import timeouts
from taskmill.client.session import Session
from taskmill.logs import check_count
from taskmill.protocol import serialize
from taskmill.protocol.vocabulary import NThreads, RunOnScheduler, SchedulerLogs, WorkerLogs

logger = logging.getLogger("taskmill.client")

LogRecords = list[tuple[str, str]]


async def run_on_scheduler(session: Session, fn: Callable[..., Any], args: tuple[Any, ...],
                           kwargs: dict[str, Any]) -> Any:
    """The result of ``fn(*args, **kwargs)`` called in the scheduler process."""
    payload = serialize((fn, args, kwargs))
    reply = await session.scheduler_call(RunOnScheduler(payload), timeout=None)  # user code: no limit
    return reply.deserialize()


def _records(raw: Any) -> LogRecords:
    return [(str(level), str(line)) for level, line in raw]


async def scheduler_logs(session: Session, n: int | None) -> LogRecords:
    """The scheduler process's last ``n`` log records (None: all it keeps)."""
    check_count(n)
    return _records(await session.scheduler_call(SchedulerLogs(n)))


async def worker_logs(session: Session, n: int | None,
                      workers: Iterable[str] | None) -> dict[str, LogRecords]:
    """Each worker's last ``n`` log records; workers that do not answer in
    time are left out (with a warning naming them)."""
    check_count(n)
    if workers is None:
        targets = list(await session.scheduler_call(NThreads()))
    else:
        targets = [workers] if isinstance(workers, str) else list(workers)
    replies = await asyncio.gather(
        *(session.worker_call(w, WorkerLogs(n), timeout=timeouts.REQUEST) for w in targets),
        return_exceptions=True)
    out: dict[str, LogRecords] = {}
    for worker, reply in zip(targets, replies):
        if isinstance(reply, BaseException):
            if isinstance(reply, asyncio.CancelledError):
                raise reply
            logger.warning("get_worker_logs: left out worker %s, which did not answer: %s",
                           worker, reply or type(reply).__name__)
            continue
        out[worker] = _records(reply)
    return out
