"""The log-forwarding ops of the wire vocabulary (``Executor.forward_logging``).

Theory of operation
-------------------
Part of the vocabulary of :mod:`taskmill.protocol.vocabulary`, which imports
this module at its end and re-exports its classes.  Forwarding has four
stream messages, one per hop, so each travels in order with the rest of its
stream:

* ``forward-logging`` (client -> scheduler): the client wants the records
  forwarded under ``topic`` (the name of the worker plugin that captures them,
  ``forward-logging-<logger>``); asking twice is asking once.
* ``unforward-logging`` (client -> scheduler): the client no longer wants
  ``topic``; the last client's leaving tears the capturing plugin down.
* ``log-records`` (worker -> scheduler): a batch of records captured on the
  worker under ``topic``; the worker's machine returns it when its shell hands
  it the batch.
* ``forwarded-log-records`` (scheduler -> client): the same batch, with the
  address of the worker it came from, for each client that asked for
  ``topic``; the scheduler forgets a client that leaves.

A record is a plain dict of a ``logging.LogRecord``'s attributes (``name``,
``levelno``, ``levelname``, ``msg`` already formatted with its arguments,
``created``, ``exc_text`` ...) whose values are strings, numbers, booleans or
None, so the scheduler relays it without unpickling anything.
"""

from __future__ import annotations

from taskmill.frozen import frozen
from typing import Any

from taskmill.protocol.wire_types import CLIENT, SCHEDULER, WORKER, Address, Message, message

__all__ = ["ForwardLogging", "UnforwardLogging", "LogRecords", "ForwardedLogRecords"]


@message("forward-logging", CLIENT, SCHEDULER, local=("client", "stimulus_id"))
@frozen
class ForwardLogging(Message):
    """``client`` wants the log records captured under ``topic`` from now on
    (``forwarded-log-records``)."""

    stimulus_id: str
    client: str
    topic: str


@message("unforward-logging", CLIENT, SCHEDULER, local=("client", "stimulus_id"))
@frozen
class UnforwardLogging(Message):
    """``client`` no longer wants the records of ``topic``; when no client
    wants them any more, the workers stop capturing them."""

    stimulus_id: str
    client: str
    topic: str


@message("log-records", WORKER, SCHEDULER, local=("worker", "stimulus_id"))
@frozen
class LogRecords(Message):
    """Log records emitted by tasks on ``worker`` and captured under
    ``topic``, oldest first, each a dict of plain values."""

    stimulus_id: str
    worker: Address
    topic: str
    records: tuple[dict[str, Any], ...]


@message("forwarded-log-records", SCHEDULER, CLIENT, local=("stimulus_id", "client"))
@frozen
class ForwardedLogRecords(Message):
    """Log records captured under ``topic`` on ``worker``, for ``client``,
    which re-emits them in its own ``logging``."""

    stimulus_id: str
    client: str
    worker: Address
    topic: str
    records: tuple[dict[str, Any], ...]
