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

A Future reaches ``pickle`` otherwise only where it is hidden from all that,
e.g. inside an object of the user's own class, in a closure, or in a call to
``pickle.dumps``.  Unpickled in a worker process it would have no session to
belong to, so for now pickling one is a ``TypeError`` that says how to pass
the data instead (before, the worker failed later with "cannot unpickle the
Future").  Once tasks have a client of their own (``get_client()``), a Future
unpickled inside a task can attach to that client, as dask.distributed's do:
that change belongs here, in :func:`reduce_future`.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

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
    becomes its key; anywhere else, refuse, naming the key and the ways that
    work."""
    dependencies = _node_dependencies.get()
    if dependencies is not None and future.key in dependencies:
        from dask._task_spec import TaskRef

        return (TaskRef, (future.key,))
    raise TypeError(
        f"a taskmill Future (key {future.key!r}) cannot be pickled: a process that unpickled "
        "it would have no client to fetch its data through. Pass the Future itself to "
        "submit/map or to a dask.delayed call (directly or inside a list, tuple, dict or set): "
        "the task then receives its value. Inside your own objects, carry future.key or the "
        "value (future.result()) instead."
    )
