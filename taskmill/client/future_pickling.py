"""What pickling a taskmill Future does: the one place that decides.

Theory of operation
-------------------
A Future is a handle of one client session on one key.  Wherever a Future is
handed to the cluster, the client puts its key in its place before anything
is pickled: ``submit``/``map`` arguments, also inside lists, tuples, dicts and
sets (:func:`taskmill.client.calls.replace_futures`), and dask graphs
(``delayed(f)(future)``, ``da.from_delayed(future)``, futures in ``get``
graphs: :func:`taskmill.client.dask_graph.keys_for_futures`); the task then
receives the value.  A Future reaches ``pickle`` only where it is hidden from
that, e.g. inside an object of the user's own class, in a closure, or in a
call to ``pickle.dumps``.

Unpickled in a worker process it would have no session to belong to, so for
now pickling one is a ``TypeError`` that says how to pass the data instead
(before, the worker failed later with "cannot unpickle the Future").  Once
tasks have a client of their own (``get_client()``), a Future unpickled inside
a task can attach to that client, as dask.distributed's do: that change
belongs here, in :func:`reduce_future`.
"""

from __future__ import annotations

from typing import Any, NoReturn


def reduce_future(future: Any) -> NoReturn:
    """``Future.__reduce__``: refuse, naming the key and the ways that work."""
    raise TypeError(
        f"a taskmill Future (key {future.key!r}) cannot be pickled: a process that unpickled "
        "it would have no client to fetch its data through. Pass the Future itself to "
        "submit/map or to a dask.delayed call (directly or inside a list, tuple, dict or set): "
        "the task then receives its value. Inside your own objects, carry future.key or the "
        "value (future.result()) instead."
    )
