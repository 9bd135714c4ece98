"""Rebuilding a task's exception on the client.

The worker sends the pickled exception, its traceback text and ``str(exc)``.
The client re-raises the original type with a ``RemoteTraceback`` as
``__cause__`` (so the remote frames print under the local ones, as
``concurrent.futures.process`` does) and a note naming the task and worker.
An exception whose class cannot be unpickled here becomes a RemoteTaskError
carrying the same text.
"""

from __future__ import annotations

from typing import Any

from taskmill.errors import SCHEDULER_ERROR_TYPES, RemoteTaskError, RemoteTraceback, TaskmillError


def rebuild_exception(key: str, worker: str, exception: Any, traceback: Any,
                      text: str) -> tuple[BaseException, str]:
    tb_text = traceback if isinstance(traceback, str) else ""
    where = f"task {key!r} raised on worker {worker}"
    try:
        exc = exception.deserialize()
        if not isinstance(exc, BaseException):
            raise TypeError("not an exception")
    except Exception:
        exc = RemoteTaskError(f"{where}: {text}")
    exc.__cause__ = RemoteTraceback(f"\n{where}:\n\"\"\"\n{tb_text}\"\"\"")
    add_note = getattr(exc, "add_note", None)
    if add_note is not None:
        add_note(where)
    return exc, tb_text


def scheduler_decided_error(error_type: str, text: str) -> BaseException:
    """The error for a task the scheduler failed itself (e.g. KilledWorker)."""
    return SCHEDULER_ERROR_TYPES.get(error_type, TaskmillError)(text)
