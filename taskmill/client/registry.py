"""The clients of this process: the open Executors (most recent last, the
default ones) and, inside a task, the task's own (``get_client()``, which
:mod:`taskmill.client.worker_client` provides here so that modules below it
can reach it without importing it)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

_lock = threading.Lock()
_defaults: list[weakref.ref[Any]] = []
#: the running task's client, None outside a task (set by taskmill.client.worker_client)
_task_client: Callable[[], Any] = lambda: None


def provide_task_client(client_of_task: Callable[[], Any]) -> None:
    """``client_of_task()`` is the running task's client, None outside a task."""
    global _task_client
    _task_client = client_of_task


def client_for(scheduler_address: str) -> Any:
    """The client a Future of that scheduler unpickled here belongs to: inside
    a task its client, else the most recent open Executor connected there
    (None: neither)."""
    client = _task_client()
    if client is not None:
        return client
    return next((ex for ex in open_executors() if ex.scheduler_address == scheduler_address), None)


def open_executors() -> list[Any]:
    """The open Executors of this process (those opened as defaults), most recent first."""
    with _lock:
        candidates = [r() for r in reversed(_defaults)]
    return [ex for ex in candidates if ex is not None and ex.status == "running"]


def set_default(executor: Any) -> None:
    with _lock:
        _defaults.append(weakref.ref(executor))


def unset_default(executor: Any) -> None:
    with _lock:
        _defaults[:] = [r for r in _defaults if r() is not None and r() is not executor]
