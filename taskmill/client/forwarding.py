"""Client side of ``Executor.forward_logging``: the log records of tasks on
the workers re-emitted in this process's ``logging``.

Theory of operation
-------------------
``forward_logging`` tells the scheduler on the client's stream that this
client wants the records of the topic ``forward-logging-<logger>``
(``ForwardLogging``), then registers the worker plugin that captures them
(:class:`~taskmill.log_forwarding.ForwardLoggingPlugin`, under that same
name, so calling it again for a logger replaces the plugin and forwards each
record once).  The stream is ordered: every task this client submits after
the call reaches the scheduler after its subscription, so none of their
records is missed.

The scheduler relays each worker's batch as ``forwarded-log-records``; the
session hands it to :func:`reemit` on its event loop (the reporting path,
never a user thread), which rebuilds each ``logging.LogRecord``
(``logging.makeLogRecord``), adds the worker's address as ``record.worker``
(as dask.distributed does) and hands it to ``logging.getLogger(record.name)
.handle(record)``: the client logger's filters and its handlers' levels
apply, the logger's own level does not (the level was checked where the
record was made).  A handler that raises is logged, never stops the loop.

``unforward_logging`` sends ``UnforwardLogging`` on the same stream: the
scheduler stops relaying the topic to this client, and when no client wants
it any more, tears the capturing plugin down on every worker.
"""

from __future__ import annotations

import logging
from typing import Any

from taskmill.client.plugins import register_plugin
from taskmill.client.session import Session
from taskmill.log_forwarding import FORWARDED, ForwardLoggingPlugin, topic_of
from taskmill.protocol.vocabulary import ForwardedLogRecords, ForwardLogging, UnforwardLogging

__all__ = ["forward_logging", "unforward_logging", "reemit"]

logger = logging.getLogger("taskmill.client")


async def forward_logging(session: Session, logger_name: str | None,
                          level: int | str) -> dict[str, str]:
    """Forward the records of ``logger_name`` (None: root) at ``level`` or
    above from tasks on every worker; ``{address: "OK"}`` of the workers now."""
    if logger_name is not None and not isinstance(logger_name, str):
        raise TypeError(f"forward_logging takes a logger's name (a str) or None, "
                        f"not {type(logger_name).__name__}")
    logging.Handler(level)  # a bad level fails here, not on every worker
    topic = topic_of(logger_name)
    session.add_report_handler(ForwardedLogRecords, reemit)
    session.send(ForwardLogging("", session.id, topic))
    return await register_plugin(session, ForwardLoggingPlugin(logger_name, level, topic), topic)


async def unforward_logging(session: Session, logger_name: str | None) -> None:
    """Stop forwarding ``logger_name``'s records to this client (on the
    stream, after everything sent before); the last client's call makes the
    workers stop capturing them."""
    if logger_name is not None and not isinstance(logger_name, str):
        raise TypeError(f"unforward_logging takes a logger's name (a str) or None, "
                        f"not {type(logger_name).__name__}")
    session.send(UnforwardLogging("", session.id, topic_of(logger_name)))


def reemit(msg: ForwardedLogRecords) -> None:
    """(On the session's loop.)  Hand each forwarded record to this process's logger of its name."""
    for attrs in msg.records:
        record = logging.makeLogRecord(attrs)
        record.worker = msg.worker
        setattr(record, FORWARDED, True)
        name: Any = record.name
        target = logging.getLogger(None if name == "root" else str(name))
        try:
            target.handle(record)
        except Exception:
            logger.exception("a handler failed on a log record forwarded from %s", msg.worker)
