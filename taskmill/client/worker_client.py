"""Tasks that launch tasks: ``get_worker()``, ``get_client()``, ``secede()``, ``rejoin()``, ``worker_client()``.

Theory of operation
-------------------
These are dask.distributed's functions of the same names, for code running
inside a task.  The task is found through the calling thread
(:func:`taskmill.server.task_context.current_task`), so it is right also when
several workers share a process (``Executor(processes=False)``).

* ``get_worker()`` is the :class:`~taskmill.server.worker.Worker` running the
  task (or the actor method: both also work in an actor's thread, see
  :mod:`taskmill.server.actors`) (``.address``, ``.name``, ``.nthreads``, ``.local_directory``).
* ``get_client()`` is an :class:`~taskmill.client.executor.Executor`
  connected to the worker's scheduler, one per worker, made on first use
  (under a lock: concurrent tasks share it; made anew if a task closed it)
  and closed when the worker closes.  It connects as the worker does, so a shared token
  (``$TASKMILL_TOKEN``) or TLS settings of the worker's environment apply.
  It is not made dask's default scheduler (the user's Executor, when one
  lives in the same process, stays the default).
* ``secede()`` takes the task out of the worker's thread count: the worker's
  state machine starts its next ready task on another thread, and the
  scheduler frees the task's slot so that it sends more work (see
  :mod:`taskmill.core.worker.secession`).  ``rejoin()`` blocks until a
  thread is free again (rejoiners go before tasks not started yet).
* ``worker_client()`` is ``get_client()`` + ``secede()``, with ``rejoin()``
  at exit: the way to wait on child tasks without holding a thread, so a
  recursion of tasks completes even on one worker with one thread.

Futures made through ``get_client()`` belong to that Executor: releasing the
last one (when the task returns or raises and its frame goes) releases the
key, so children of a failed task are forgotten like any other.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from taskmill.client import registry
from taskmill.client.executor import Executor
from taskmill.server.actors import actor_thread_worker
from taskmill.server.node import Status
from taskmill.server.task_context import current_task, in_task

if TYPE_CHECKING:
    from taskmill.server.worker import Worker

__all__ = ["get_worker", "get_client", "secede", "rejoin", "worker_client"]

#: seconds ``get_client()`` waits to connect when not told
CONNECT_TIMEOUT = 10.0

_client_lock = threading.Lock()


def get_worker() -> Worker:
    """The worker running the current task (or actor method).  Outside a task: ``ValueError``."""
    return _running_worker("get_worker()")


def _running_worker(call: str) -> Worker:
    """The worker of the calling thread: an actor's thread, else a task's (``ValueError``)."""
    worker: Worker | None = actor_thread_worker()
    if worker is None:
        worker = current_task(call).runner.worker
    return worker


def get_client(timeout: float | None = None) -> Executor:
    """An Executor connected to the current task's scheduler, shared by the
    tasks of this worker (made on first use, within ``timeout`` seconds).
    Outside a task: ``ValueError``; first called while the worker closes:
    ``RuntimeError`` (the new Executor would outlive it)."""
    worker = _running_worker("get_client()")
    client: Executor | None = worker.task_client
    if client is None or client.status == "closed":
        with _client_lock:
            client = worker.task_client
            if client is None or client.status == "closed":  # a task may have closed it
                if worker.status is not Status.running:  # it would outlive the worker
                    raise RuntimeError(f"get_client() was called while the worker "
                                       f"{worker.address} running this task closes")
                client = worker.task_client = Executor(
                    worker.scheduler_address, set_as_default=False, security=worker.security,
                    timeout=CONNECT_TIMEOUT if timeout is None else timeout)
    return client


def secede() -> None:
    """Take the current task out of its worker's thread count (until
    :func:`rejoin`), so that other tasks run meanwhile.  Outside a task:
    ``ValueError``; calling it again while seceded does nothing."""
    thread = current_task("secede()")
    thread.runner.secede(thread)


def rejoin() -> None:
    """Wait for a free thread of the worker and count against its threads
    again.  Outside a task: ``ValueError``; without :func:`secede` first:
    ``RuntimeError``."""
    thread = current_task("rejoin()")
    thread.runner.rejoin(thread)


@contextmanager
def worker_client(timeout: float | None = None, separate_thread: bool = True) -> Iterator[Executor]:
    """``with worker_client() as e:``: :func:`get_client`, and the task
    secedes for the block (``separate_thread=False``: it does not) and
    rejoins at its end."""
    client = get_client(timeout)
    if separate_thread:
        secede()
    try:
        yield client
    finally:
        if separate_thread:
            rejoin()


def _client_of_running_task() -> Executor | None:
    """A Future unpickled inside a task (or an actor's method) belongs to the worker's client."""
    return get_client() if in_task() or actor_thread_worker() is not None else None


registry.provide_task_client(_client_of_running_task)
