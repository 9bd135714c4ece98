"""Which task a thread is running: the worker side of ``get_worker()``, ``secede()`` and ``rejoin()``.

Theory of operation
-------------------
Every thread of a worker's task pool (:mod:`taskmill.server.task_runner`)
owns one :class:`TaskThread`, stored once in a thread-local when the thread
starts; before each call the pool stores the call in it (one attribute
write: the only per-task cost), whose key and generation it reads when asked.  "The current task" is therefore a property of
the thread, never of the process: workers running in-process
(``Executor(processes=False)``) share one process but not their threads.

:func:`current_task` finds the caller's :class:`TaskThread` or raises a
``ValueError`` naming the call that needed one (``get_worker()`` outside a
task and the like).  The public functions built on it live in
:mod:`taskmill.client.worker_client`.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["TaskThread", "current_task", "enter_pool", "in_task", "running_runner"]

_local = threading.local()


class TaskThread:
    """What one pool thread knows about itself and the call it runs."""

    __slots__ = ("runner", "call", "seceded", "leaving")

    def __init__(self, runner: Any) -> None:
        #: the :class:`~taskmill.server.task_runner.TaskRunner` owning this thread
        self.runner = runner
        #: the call running now (or that ran last), a
        #: :class:`~taskmill.server.task_runner.Call`; None before the first
        self.call: Any = None
        #: the call running now called ``secede()`` (and not ``rejoin()`` yet)
        self.seceded = False
        #: this thread no longer counts against the pool's threads (seceded,
        #: or its call was abandoned): it ends when its call returns
        self.leaving = False

    @property
    def key(self) -> str:
        """The key of the call running now; "" before the first."""
        return "" if self.call is None else str(self.call.key)

    @property
    def generation(self) -> int:
        """The runner's generation when the call was queued (-1 before the first)."""
        return -1 if self.call is None else int(self.call.generation)


def enter_pool(runner: Any) -> TaskThread:
    """Make the calling thread a pool thread of ``runner``; returns its record."""
    thread = _local.task_thread = TaskThread(runner)
    return thread


def current_task(call: str) -> TaskThread:
    """The calling thread's record while it runs a task; ``call`` (such as
    ``"get_worker()"``) names what asked, for the error raised elsewhere."""
    thread: TaskThread | None = getattr(_local, "task_thread", None)
    if thread is None or not thread.key:
        raise ValueError(
            f"{call} was called outside a task: it works only inside a function running on a "
            "taskmill worker (submitted with Executor.submit/map or part of a computed graph)")
    return thread


def in_task() -> bool:
    """Whether the calling thread runs a task now."""
    thread: TaskThread | None = getattr(_local, "task_thread", None)
    return thread is not None and bool(thread.key)


def running_runner() -> Any:
    """The task runner whose call the calling thread runs now, or None (not
    in a task): tells the task threads of in-process workers apart."""
    thread: TaskThread | None = getattr(_local, "task_thread", None)
    return thread.runner if thread is not None and thread.key else None
