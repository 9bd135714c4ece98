"""The worker side of ``Executor.forward_logging``: a plugin that captures the
log records of tasks and sends them, batched, towards the client.

Theory of operation
-------------------
``Executor.forward_logging(logger_name, level)`` registers a
:class:`ForwardLoggingPlugin` named ``forward-logging-<logger_name or
"<root>">`` (dask.distributed's name; registering it again replaces it, so
forwarding a logger twice forwards each record once).  On every worker,
present and joining later, its ``setup`` adds a :class:`ForwardingHandler`
(at ``level``) to the logger ``logging.getLogger(logger_name)``.  A record
that logger, or one below it, handles is captured when:

* it was emitted by a thread running a task of *this* worker (its task
  threads, seceded ones included): workers of an in-process cluster share
  one process and one ``logging``, and each forwards only its own tasks'
  records, never the client's own, so nothing loops back;
* it is not from a ``taskmill`` logger (the workers' own chatter stays in
  their logs, ``get_worker_logs``), and was not re-emitted by a client
  (:data:`FORWARDED` is set on those).

Records are turned into plain dicts (:func:`record_to_dict`: the message
formatted with its arguments, the traceback as text, any other value that is
not a string, number, boolean or None as its ``repr``) in the emitting
thread, appended to a list under a lock, and the first record of a batch asks
the worker's event loop (``call_soon_threadsafe``) to send what has
gathered: a task thread never waits on the network.  On the loop the batch
goes to ``Worker.forward_log_records``, which hands it to the worker's
machine; the machine returns it as a ``log-records`` message on the worker's
stream to the scheduler, which relays it to the clients that asked
(:mod:`taskmill.core.scheduler.log_forwarding`).  At most
:data:`MAX_PENDING` records wait for the loop; beyond that they are dropped
and counted (a warning on the worker says how many), so a task logging
faster than the loop sends cannot exhaust memory.  ``teardown``
(unregistering, replacing, the worker closing) removes the handler and sends
what is still pending.

The client re-emits each record on its event loop (its reporting path, never
a user thread; :mod:`taskmill.client.forwarding`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from taskmill.plugins import WorkerPlugin
from taskmill.server.task_context import running_runner

__all__ = ["FORWARDED", "MAX_PENDING", "ForwardLoggingPlugin", "ForwardingHandler",
           "record_to_dict", "topic_of"]

logger = logging.getLogger("taskmill.worker")

#: attribute set on the records a client re-emits (never captured again)
FORWARDED = "taskmill_forwarded"

#: records a handler keeps waiting for its worker's loop; more are dropped and counted
MAX_PENDING = 10_000

_PLAIN = (str, int, float, bool)
_INT_RANGE = (-(2**63), 2**64 - 1)  # what msgpack carries


def topic_of(logger_name: str | None) -> str:
    """The plugin's name and the topic of its records, as dask.distributed names it."""
    return f"forward-logging-{logger_name or '<root>'}"


def _plain(value: Any) -> Any:
    if value is None or type(value) in _PLAIN:
        if type(value) is int and not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
            return repr(value)
        return value
    return repr(value)


def record_to_dict(record: logging.LogRecord) -> dict[str, Any]:
    """``record``'s attributes as plain values (as ``logging.handlers.SocketHandler``
    prepares them): ``msg`` formatted with ``args``, ``args`` and ``exc_info``
    None, the traceback in ``exc_text``."""
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    out = {str(k): _plain(v) for k, v in record.__dict__.items()
           if k not in ("msg", "args", "exc_info", "message")}
    out["msg"] = record.getMessage()
    out["args"] = None
    out["exc_info"] = None
    return out


def _is_taskmill(name: str) -> bool:
    return name == "taskmill" or name.startswith("taskmill.")


class ForwardingHandler(logging.Handler):
    """Captures the records of one worker's tasks and hands them, batched, to
    the worker's loop (see the module docstring).  Made on the worker's loop."""

    def __init__(self, worker: Any, topic: str, level: int | str = logging.NOTSET) -> None:
        super().__init__(level)
        self.worker = worker
        self.topic = topic
        self.loop = asyncio.get_running_loop()
        self._runner = worker.runner
        self._pending: list[dict[str, Any]] = []
        self._scheduled = False  # a send_pending is queued on the loop
        self._dropped = 0
        self._pending_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        """(Any thread.)  Capture ``record`` if a task of this worker emitted it."""
        if (running_runner() is not self._runner or _is_taskmill(record.name)
                or getattr(record, FORWARDED, False)):
            return
        try:
            item = record_to_dict(record)
        except Exception:
            self.handleError(record)
            return
        with self._pending_lock:
            if len(self._pending) >= MAX_PENDING:
                self._dropped += 1
                return
            self._pending.append(item)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self.send_pending)
        except RuntimeError:  # the loop is closed: the worker is gone
            pass

    def send_pending(self) -> None:
        """(On the worker's loop.)  Send the records gathered so far."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
            dropped, self._dropped = self._dropped, 0
            self._scheduled = False
        if dropped:
            logger.warning("forward_logging dropped %d log records of tasks: more than %d "
                           "waited to be sent", dropped, MAX_PENDING)
        if batch:
            self.worker.forward_log_records(self.topic, tuple(batch))


class ForwardLoggingPlugin(WorkerPlugin):
    """Forwards the log records of tasks on the logger ``logger_name`` (None:
    the root logger) at ``level`` or above to the clients that asked for
    ``topic``; registered by ``Executor.forward_logging``, which documents it."""

    def __init__(self, logger_name: str | None, level: int | str, topic: str) -> None:
        self.logger_name = logger_name
        self.level = level
        self.topic = topic
        self.handler: ForwardingHandler | None = None

    def setup(self, worker: Any) -> None:
        """Attach the capturing handler to the logger (on the worker's loop)."""
        self.handler = ForwardingHandler(worker, self.topic, self.level)
        logging.getLogger(self.logger_name).addHandler(self.handler)

    def teardown(self, worker: Any) -> None:
        """Detach the handler and send the records it still holds."""
        handler, self.handler = self.handler, None
        if handler is not None:
            logging.getLogger(self.logger_name).removeHandler(handler)
            handler.send_pending()
