"""``Queue``, ``Variable`` and datasets: values shared through the scheduler.

Theory of operation
-------------------
The scheduler holds the values (:mod:`taskmill.core.shared_values`); this
module is the client's side, with dask.distributed's names and semantics.  A
``Queue`` or ``Variable`` is only a name (``queue-<uuid>`` when none is
given) and the client to reach the scheduler with: the one passed as
``client=``, else inside a task the task's client (``get_client()``), else
the most recent open Executor.  So the object pickles as its name, and a
task that receives it uses its own worker's client.

Sending a value: the client pickles it (the scheduler never unpickles it)
and lists the keys of the Futures inside it (``futures_of``: lists, tuples,
dicts, sets, persisted dask collections), which the scheduler keeps alive
while it holds the value.  A Future hidden inside an object of another type
still travels, but its key is not kept alive by the scheduler.

Receiving a value: the reply is unpickled with its Futures bound to the
receiving client (``registry.unpickling_for``); each rebuilt Future wants its
key (``want-keys``), and then the client says ``handover-done`` on the same
stream, so the scheduler, which held the keys for this client meanwhile,
lets go only after the client's own want: the key is never unwanted between.

Every method returns its result, or in asynchronous mode an awaitable of it.
Waits are bounded by the scheduler (``timeout=``), not by polling: a ``get``
past its timeout raises ``TimeoutError`` naming the queue or variable.
"""

from __future__ import annotations

import uuid
from collections.abc import Coroutine, Iterator, MutableMapping
from typing import Any

from taskmill.client import registry
from taskmill.client.nested import futures_of
from taskmill.protocol import Serialized, serialize
from taskmill.protocol.vocabulary import (
    DatasetGet,
    DatasetList,
    DatasetPublish,
    DatasetUnpublish,
    HandoverDone,
    QueueGet,
    QueuePut,
    QueueSize,
    StreamMark,
    VariableDelete,
    VariableGet,
    VariableSet,
)

__all__ = ["Queue", "Variable", "Datasets", "NO_DEFAULT"]


class _NoDefault:
    def __repr__(self) -> str:
        return "<no default>"


#: ``get_dataset``'s default: a missing name raises ``KeyError``
NO_DEFAULT: Any = _NoDefault()


def check_timeout(timeout: float | None, what: str) -> float | None:
    """A timeout in seconds (None: none); a negative or non-number one is an error."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise ValueError(f"{what}: timeout must be None or a number of seconds >= 0, not {timeout!r}")
    return float(timeout)


def pack(value: Any) -> tuple[Serialized, tuple[str, ...]]:
    """The value pickled, and the keys of the Futures inside it."""
    keys = tuple(dict.fromkeys(f.key for f in futures_of(value)))
    return serialize(value), keys


def stream_mark(client: Any, keys: Any) -> str:
    """With keys to send: a fresh mark, sent on the client's stream now (the
    request carrying it is handled after it, so after everything the client
    sent before: the scheduler knows the keys); without: "" (no wait)."""
    if not keys:
        return ""
    mark = uuid.uuid4().hex
    session = client.session
    session.send(StreamMark("", session.id, mark))
    return mark


def unpack(client: Any, reply: dict[str, Any]) -> Any:
    """A value received: unpickled with its Futures held by ``client``; then
    the scheduler stops holding its keys for the client (``handover-done``)."""
    token = reply["token"]
    session = client.session
    try:
        with registry.unpickling_for(client):
            return reply["value"].deserialize()
    finally:
        if token:  # after the rebuilt Futures' want-keys, on the same stream
            session.send(HandoverDone("", session.id, token))


def _run(client: Any, coro: Coroutine[Any, Any, Any]) -> Any:
    return client._call(coro)


class Queue:
    """A first-in first-out queue held by the scheduler (dask.distributed's
    ``Queue``): ``put`` from any client or task, ``get`` from any other.
    ``maxsize`` > 0 bounds it (``put`` then waits for room); the first use of
    a name fixes its ``maxsize``.  Values may be Futures: their data stays on
    the cluster while they are in the queue."""

    def __init__(self, name: str | None = None, client: Any = None, maxsize: int = 0) -> None:
        self.name = name or f"queue-{uuid.uuid4().hex}"
        self._client = client
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
            raise ValueError(f"Queue {self.name!r}: maxsize must be an int >= 0 (0: unbounded), "
                             f"not {maxsize!r}")
        self.maxsize = maxsize

    @property
    def client(self) -> Any:
        """The Executor this queue talks through."""
        return registry.require_client(self._client, f"Queue {self.name!r}")

    def put(self, value: Any, timeout: float | None = None) -> Any:
        """Append ``value``; while the queue is full wait up to ``timeout``
        seconds (None: no limit), then ``TimeoutError``."""
        timeout = check_timeout(timeout, f"Queue {self.name!r}.put")
        client = self.client
        payload, keys = pack(value)

        async def run() -> None:
            mark = stream_mark(client, keys)
            await client.session.scheduler_call(QueuePut(
                client.session.id, self.name, payload, keys, self.maxsize, timeout, mark),
                timeout=None)
        return _run(client, run())

    def get(self, timeout: float | None = None, batch: bool | int = False) -> Any:
        """Take the oldest value, waiting up to ``timeout`` seconds (None: no
        limit) for one, then ``TimeoutError``.  ``batch=True``: every value
        there now, as a list (maybe empty; no wait); ``batch=n``: a list of n
        values, taken together once n are there."""
        timeout = check_timeout(timeout, f"Queue {self.name!r}.get")
        if batch is True:
            n: int | None = 0
        elif batch is False:
            n = None
        elif isinstance(batch, int) and batch > 0:
            n = batch
        else:
            raise ValueError(f"Queue {self.name!r}.get: batch must be True, False or a "
                             f"positive count, not {batch!r}")
        client = self.client

        async def run() -> Any:
            reply = await client.session.scheduler_call(QueueGet(
                client.session.id, self.name, self.maxsize, timeout, n), timeout=None)
            if n is None:
                return unpack(client, reply)
            return [unpack(client, one) for one in reply]
        return _run(client, run())

    def qsize(self) -> Any:
        """How many values the queue holds now."""
        client = self.client
        return _run(client, client.session.scheduler_call(QueueSize(self.name, self.maxsize)))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Queue, (self.name, None, self.maxsize))

    def __repr__(self) -> str:
        return f"<Queue: {self.name}>"


class Variable:
    """A named value held by the scheduler (dask.distributed's ``Variable``):
    ``set`` replaces it, ``get`` reads it (waiting for a first ``set``),
    ``delete`` forgets it.  A Future value keeps its data on the cluster
    while it is the variable's value."""

    def __init__(self, name: str | None = None, client: Any = None) -> None:
        self.name = name or f"variable-{uuid.uuid4().hex}"
        self._client = client

    @property
    def client(self) -> Any:
        """The Executor this variable talks through."""
        return registry.require_client(self._client, f"Variable {self.name!r}")

    def set(self, value: Any) -> Any:
        """Make ``value`` the variable's value (the previous one is released)."""
        client = self.client
        payload, keys = pack(value)

        async def run() -> None:
            mark = stream_mark(client, keys)
            await client.session.scheduler_call(
                VariableSet(client.session.id, self.name, payload, keys, mark))
        return _run(client, run())

    def get(self, timeout: float | None = None) -> Any:
        """The value; before any ``set``, wait up to ``timeout`` seconds (None:
        no limit), then ``TimeoutError``."""
        timeout = check_timeout(timeout, f"Variable {self.name!r}.get")
        client = self.client

        async def run() -> Any:
            reply = await client.session.scheduler_call(
                VariableGet(client.session.id, self.name, timeout), timeout=None)
            return unpack(client, reply)
        return _run(client, run())

    def delete(self) -> Any:
        """Forget the variable and release its value (a ``get`` waiting for it
        fails); a later ``set`` starts it again."""
        client = self.client
        return _run(client, client.session.scheduler_call(VariableDelete(self.name)))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Variable, (self.name,))

    def __repr__(self) -> str:
        return f"<Variable: {self.name}>"


# --------------------------------------------------------------------------- #
# Datasets (the Executor's publish_dataset & co. call these)
# --------------------------------------------------------------------------- #
def publish(client: Any, args: tuple[Any, ...], name: str | None, override: bool,
            kwargs: dict[str, Any]) -> Coroutine[Any, Any, None]:
    """The coroutine publishing ``kwargs`` (name -> value) and, with ``name``, ``args``."""
    items = dict(kwargs)
    if name is not None:
        if not args:
            raise ValueError("publish_dataset(name=...) needs the value too: "
                             "publish_dataset(value, name='x')")
        items[name] = args[0] if len(args) == 1 else args
    elif args:
        raise ValueError("publish_dataset(value) needs a name: publish_dataset(value, name='x') "
                         "or publish_dataset(x=value)")
    for key in items:
        if not isinstance(key, str):
            raise TypeError(f"a dataset name must be a str, not {key!r}")
    packed = [pack(value) for value in items.values()]
    keys = tuple(k for _, k in packed)

    async def run() -> None:
        mark = stream_mark(client, any(keys))
        await client.session.scheduler_call(DatasetPublish(
            client.session.id, tuple(items), tuple(p for p, _ in packed), keys, override, mark))
    return run()


async def get_dataset(client: Any, name: str, default: Any) -> Any:
    """The published value of ``name`` (``default`` if given and not published)."""
    try:
        reply = await client.session.scheduler_call(DatasetGet(client.session.id, name))
    except KeyError:
        if default is NO_DEFAULT:
            raise
        return default
    return unpack(client, reply)


async def unpublish(client: Any, name: str) -> None:
    """Remove the dataset ``name``; not published: ``KeyError``."""
    await client.session.scheduler_call(DatasetUnpublish(name))


async def list_datasets(client: Any) -> list[str]:
    """The published names, sorted."""
    return list(await client.session.scheduler_call(DatasetList()))


class Datasets(MutableMapping[str, Any]):
    """``e.datasets``: the published datasets as a mapping (``e.datasets["x"]
    = value`` publishes, ``del`` unpublishes).  In asynchronous mode use the
    Executor's methods (``await e.get_dataset(...)``) instead."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def _sync(self) -> Any:
        if self._client.asynchronous:
            raise TypeError("Executor.datasets is a blocking mapping: in asynchronous mode "
                            "await e.get_dataset / e.publish_dataset / e.list_datasets instead")
        return self._client

    def __getitem__(self, name: str) -> Any:
        return self._sync().get_dataset(name)

    def __setitem__(self, name: str, value: Any) -> None:
        self._sync().publish_dataset(value, name=name)

    def __delitem__(self, name: str) -> None:
        self._sync().unpublish_dataset(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._sync().list_datasets())

    def __len__(self) -> int:
        return len(self._sync().list_datasets())

    def __contains__(self, name: object) -> bool:
        return name in self._sync().list_datasets()
