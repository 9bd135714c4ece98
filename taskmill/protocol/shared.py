"""The ops of the shared values held by the scheduler: ``Queue``, ``Variable`` and datasets.

Theory of operation
-------------------
Part of the vocabulary of :mod:`taskmill.protocol.vocabulary`, which imports
this module at its end and re-exports its classes.  Every op but one is a
request a client (or a task's client) makes of the scheduler; the scheduler
keeps each value as the client sent it: an opaque pickled ``value`` and the
``keys`` of the Futures inside it, which it keeps alive while the value is
held (:mod:`taskmill.core.shared_values`).  A request that hands a value back
answers ``{"value": Serialized, "keys": [...], "token": str}`` (a queue's
``get`` with a batch, a list of them); the keys of such an answer are held
for the asking ``client`` until that client says, on its stream, that it
holds them itself (``handover-done`` with the ``token``, sent after its own
``want-keys``): so a Future
passed through a queue is never unwanted on the way.  A request that must
wait (a ``get`` of an empty queue or of a variable never set, a ``put`` to a
full queue) is answered when it can be, or with ``TimeoutError`` when its
``timeout`` (seconds, None: no limit) has passed.

A value sent with keys also carries a ``mark``: the client sent
``stream-mark`` with it on its stream just before the request, and the
scheduler stores the value only once the mark has come through the stream.
Everything the client sent before (the ``update-graph`` of a Future it has
just submitted, the ``want-keys`` of one it unpickled) has then been handled,
so every key is known when it is pinned (requests and the stream travel on
different connections, in no fixed order).
"""

from __future__ import annotations

from taskmill.frozen import frozen
from taskmill.protocol.serialize import Serialized
from taskmill.protocol.wire_types import ANY, CLIENT, SCHEDULER, Key, Message, message

__all__ = [
    "QueuePut",
    "QueueGet",
    "QueueSize",
    "VariableSet",
    "VariableGet",
    "VariableDelete",
    "DatasetPublish",
    "DatasetGet",
    "DatasetUnpublish",
    "DatasetList",
    "HandoverDone",
    "StreamMark",
]


@message("queue-put", ANY, SCHEDULER, kind="request")
@frozen
class QueuePut(Message):
    """Append ``value`` to the queue ``name`` (made with ``maxsize`` on first
    use), waiting up to ``timeout`` while it is full; -> None."""

    client: str
    name: str
    value: Serialized
    keys: tuple[Key, ...] = ()
    maxsize: int = 0
    timeout: float | None = None
    mark: str = ""


@message("queue-get", ANY, SCHEDULER, kind="request")
@frozen
class QueueGet(Message):
    """Take the oldest value of the queue ``name``, waiting up to ``timeout``;
    -> the value.  ``batch`` 0: every value there now (maybe none, no wait);
    n > 0: n values, all at once; -> a list of values."""

    client: str
    name: str
    maxsize: int = 0
    timeout: float | None = None
    batch: int | None = None


@message("queue-size", ANY, SCHEDULER, kind="request")
@frozen
class QueueSize(Message):
    """-> how many values the queue ``name`` holds."""

    name: str
    maxsize: int = 0


@message("variable-set", ANY, SCHEDULER, kind="request")
@frozen
class VariableSet(Message):
    """Make ``value`` the variable ``name``'s value (releasing the old one); -> None."""

    client: str
    name: str
    value: Serialized
    keys: tuple[Key, ...] = ()
    mark: str = ""


@message("variable-get", ANY, SCHEDULER, kind="request")
@frozen
class VariableGet(Message):
    """-> the variable ``name``'s value, waiting up to ``timeout`` for a first ``set``."""

    client: str
    name: str
    timeout: float | None = None


@message("variable-delete", ANY, SCHEDULER, kind="request")
@frozen
class VariableDelete(Message):
    """Forget the variable ``name`` and release its value; -> None."""

    name: str


@message("dataset-publish", ANY, SCHEDULER, kind="request")
@frozen
class DatasetPublish(Message):
    """Publish each of ``names`` with the value of the same place in
    ``values`` (and ``keys``); a name already published is a ``KeyError``
    unless ``override``.  All or none are published.  -> None."""

    client: str
    names: tuple[str, ...]
    values: tuple[Serialized, ...]
    keys: tuple[tuple[Key, ...], ...]
    override: bool = False
    mark: str = ""


@message("dataset-get", ANY, SCHEDULER, kind="request")
@frozen
class DatasetGet(Message):
    """-> the dataset ``name``'s value; not published: ``KeyError``."""

    client: str
    name: str


@message("dataset-unpublish", ANY, SCHEDULER, kind="request")
@frozen
class DatasetUnpublish(Message):
    """Remove the dataset ``name`` and release its value; unknown: ``KeyError``."""

    name: str


@message("dataset-list", ANY, SCHEDULER, kind="request")
@frozen
class DatasetList(Message):
    """-> the names of the published datasets, sorted."""


@message("handover-done", CLIENT, SCHEDULER, local=("client", "stimulus_id"))
@frozen
class HandoverDone(Message):
    """The client now holds the keys of the handover ``token`` itself (its
    ``want-keys`` went first): the scheduler stops holding them for it."""

    stimulus_id: str
    client: str
    token: str


@message("stream-mark", CLIENT, SCHEDULER, local=("client", "stimulus_id"))
@frozen
class StreamMark(Message):
    """Everything the client sent on its stream before this has been handled:
    the request carrying the same ``mark`` may go ahead."""

    stimulus_id: str
    client: str
    mark: str
