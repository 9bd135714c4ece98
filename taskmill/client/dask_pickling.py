"""Pickling the nodes of a big dask graph cheaply: callables shared once per graph.

Theory of operation
-------------------
A dask graph of a million tasks typically holds a handful of distinct
callables (``Compose``, ``partial``, ``curry`` objects and functions, the same
object in every block of a layer), each pickled again inside every task's
node, and rebuilt again on the worker for every task (``toolz``' curry and
``Compose`` restore themselves in Python): about half of what pickling and
unpickling a node costs.

:class:`SharedCallables` pickles each node with a ``reducer_override``
that replaces a callable (anything callable but a class, a graph node or a
builtin) by a reference ``_shared(i)`` into one table per slice of the graph
(:func:`taskmill.client.dask_graph.pack_slices`); the table travels once,
inside the slice's task function (``functools.partial(run_node, table)``, a
token the scheduler and workers keep; equal tables, the usual case, share
it), and :func:`load_node` unpickles a node with that table in force (a
thread-local, so concurrent tasks of other graphs keep theirs).

A node whose pickle would not load elsewhere as it is (out-of-band buffers,
whose zero-copy path belongs to the task's own arguments; a reference to
``__main__``, which needs cloudpickle) is not packed here: the caller sends
that node itself in the task's arguments.  The table stops growing at
``MAX_SHARED`` entries (callables made per task, e.g. bound methods); later
callables are pickled inline.

The table is also where dask's ``_execute_subgraph`` (the function of every
task dask fused) is swapped for :func:`taskmill.client.dask_subgraph.run_subgraph`,
which computes the same without ordering each fused chain with ``dask.order``.
"""

from __future__ import annotations

import io
import pickle
import threading
import types
from typing import Any

MAX_SHARED = 10_000

_local = threading.local()


def _shared(index: int) -> Any:
    """The callable ``index`` of the table of the node being unpickled."""
    return _local.table[index]


class SharedCallables(pickle.Pickler):
    """Pickles graph nodes with their callables in one shared table.  (A
    pickler itself, so no reference cycle: nothing left for the collector.)"""

    def __init__(self) -> None:
        from dask._task_spec import GraphNode, _execute_subgraph

        from taskmill.client.dask_subgraph import run_subgraph

        self._file = io.BytesIO()
        self._buffers: list[pickle.PickleBuffer] = []
        super().__init__(self._file, protocol=5, buffer_callback=self._buffers.append)
        self.table: list[Any] = []
        self._index: dict[int, int] = {}
        self._inline = (type, types.BuiltinFunctionType, GraphNode)
        #: callables replaced in the table by one doing the same, cheaper
        self._swap = {id(_execute_subgraph): run_subgraph}

    def reducer_override(self, obj: Any) -> Any:
        if not callable(obj) or isinstance(obj, self._inline) or obj is _shared:
            return NotImplemented
        index = self._index.get(id(obj))
        if index is None:
            if len(self.table) >= MAX_SHARED:
                return NotImplemented
            index = self._index[id(obj)] = len(self.table)
            # keeps it alive, so its id stays its own (a swapped one lives in its module)
            self.table.append(self._swap.get(id(obj), obj))
        return _shared, (index,)

    def dumps(self, node: Any) -> bytes | None:
        """``node`` pickled against the table, or None when it must travel as
        itself (see the module docstring).  Exceptions of pickling propagate
        (a failed dump leaves nothing behind: each one starts afresh)."""
        file = self._file
        file.seek(0)
        file.truncate()
        self.clear_memo()
        self._buffers.clear()
        self.dump(node)
        data = file.getvalue()
        if self._buffers or b"__main__" in data:
            return None
        return data


def load_node(table: tuple[Any, ...], data: bytes) -> Any:
    """A node pickled by :meth:`SharedCallables.dumps` against ``table``."""
    _local.table = table
    try:
        return pickle.loads(data)
    finally:
        _local.table = None
