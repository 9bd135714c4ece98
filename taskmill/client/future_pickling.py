"""What pickling a taskmill Future does: the one place that decides.

Theory of operation
-------------------
A Future is a handle of one client session on one key.  Wherever a Future is
handed to the cluster, its key goes in its place:

* ``submit``/``map`` arguments, also inside lists, tuples, dicts and sets:
  the client swaps each Future for a reference before pickling
  (:func:`taskmill.client.calls.replace_futures`);
* dask graphs: a graph node refers to a Future as a dependency (dask's
  ``TaskRef``, which our futures are) wherever dask put it:
  ``delayed(f)(future)``, inside lists, dicts and sets, inside tasks fused by
  dask's optimisation, ``da.from_delayed(future)``, ``(f, future)`` in a
  ``get`` graph.  The client pickles each such node inside
  :func:`futures_as_keys` with the node's dependency keys, and there a Future
  of one of those keys pickles as a plain ``TaskRef`` of its key: the graph
  carries the key and the worker hands the node the value.

A Future pickled anywhere else (inside an object of the user's own class, a
closure, a task's return value, ``pickle.dumps``) travels as its key and its
scheduler's address, and is rebuilt where it is unpickled, as dask.distributed
does: inside a task, against the worker's shared client (``get_client()``); in
any other process, against an open Executor connected to that scheduler.  The
rebuilt Future holds the key for its new client (``want-keys``), so the data
stays while either holds it.  Where neither exists, unpickling fails with an
error that says so, rather than yielding a Future that can never resolve.
The key must still be held when the copy arrives: the sender keeps its Future
until then (a Future sent and dropped at once may be released first, as in
dask.distributed).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from taskmill.client import registry
from taskmill.protocol.vocabulary import WantKeys

#: The dependency keys of the dask graph node being pickled (None: no node).
_node_dependencies: ContextVar[Collection[Hashable] | None] = ContextVar(
    "taskmill_node_dependencies", default=None)


@contextmanager
def futures_as_keys(dependencies: Collection[Hashable]) -> Iterator[None]:
    """While pickling a dask graph node with these dependency keys, a Future
    of one of them pickles as a dask ``TaskRef`` of its key."""
    token = _node_dependencies.set(dependencies)
    try:
        yield
    finally:
        _node_dependencies.reset(token)


def reduce_future(future: Any) -> tuple[Any, ...]:
    """``Future.__reduce__``: a dependency of the graph node being pickled
    becomes its key; anywhere else, the key and the scheduler's address, for
    :func:`rebuild_future`."""
    dependencies = _node_dependencies.get()
    if dependencies is not None and future.key in dependencies:
        from dask._task_spec import TaskRef

        return (TaskRef, (future.key,))
    return (rebuild_future, (future.key, future._session.scheduler_address))


def rebuild_future(key: str, scheduler_address: str) -> Any:
    """A pickled Future, unpickled: the same key held by the client of this
    place (the task's ``get_client()``, else an open Executor of that
    scheduler)."""
    executor = registry.client_for(scheduler_address)
    if executor is None:
        raise RuntimeError(
            f"cannot unpickle the Future {key!r}: no open Executor connected to "
            f"{scheduler_address} in this process, and not inside a task. Open one with "
            f"Executor({scheduler_address!r}) before unpickling, or send future.key and fetch "
            "the data with that Executor.")
    return hold_key(executor.session, key)


def hold_key(session: Any, key: str) -> Any:
    """A new Future of ``key`` in ``session``, which tells the scheduler that
    this client wants the key (it may hold none yet)."""
    future = session.future_class(key, session)
    session.send(WantKeys("", session.id, (key,)))
    return future
