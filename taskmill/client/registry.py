"""The clients of this process: the open Executors (most recent last, the
default ones) and, inside a task, the task's own (``get_client()``, which
:mod:`taskmill.client.worker_client` provides here so that modules below it
can reach it without importing it)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_lock = threading.Lock()
#: the client receiving the value being unpickled (None: none), see ``unpickling_for``
_unpickling_for: ContextVar[Any] = ContextVar("taskmill_unpickling_for", default=None)
_defaults: list[weakref.ref[Any]] = []
#: the running task's client, None outside a task (set by taskmill.client.worker_client)
_task_client: Callable[[], Any] = lambda: None


def provide_task_client(client_of_task: Callable[[], Any]) -> None:
    """``client_of_task()`` is the running task's client, None outside a task."""
    global _task_client
    _task_client = client_of_task


def client_for(scheduler_address: str) -> Any:
    """The client a Future of that scheduler unpickled here belongs to: the
    one of :func:`unpickling_for` if set, inside a task its client, else the
    most recent open Executor connected there (None: neither)."""
    client = _unpickling_for.get()
    if client is not None and client.scheduler_address == scheduler_address:
        return client
    client = _task_client()
    if client is not None:
        return client
    return next((ex for ex in open_executors() if ex.scheduler_address == scheduler_address), None)


@contextmanager
def unpickling_for(client: Any) -> Iterator[None]:
    """While unpickling a value ``client`` received, its Futures belong to ``client``."""
    token = _unpickling_for.set(client)
    try:
        yield
    finally:
        _unpickling_for.reset(token)


def current_client() -> Any:
    """The client to use when none is given: inside a task its client, else
    the most recent open Executor (None: neither)."""
    client = _task_client()
    if client is not None:
        return client
    executors = open_executors()
    return executors[0] if executors else None


def require_client(client: Any, what: str) -> Any:
    """``client`` if given, else :func:`current_client`; with neither, a
    ``ValueError`` naming ``what`` (the object that needed one)."""
    if client is None:
        client = current_client()
    if client is None:
        raise ValueError(f"{what} needs an Executor: create one first (taskmill.Executor(...)), "
                         "or pass client=")
    return client


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
