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

Fused tasks' subgraphs.  A fused task is ``_execute_subgraph(subgraph,
outkey, inkeys, *inputs)``, and dask gives every block of a layer the same
``subgraph`` object (its inner keys carry no block index): pickled per task,
its inner tasks were most of a node's bytes and of its unpickling time.  A
subgraph met in a second node of the slice (the same object, and the first
one pickled cleanly, see below) goes into the table too, from then on, so it
is unpickled once per worker and shared by its tasks, which only read it
(:func:`run_subgraph` keeps its values apart).  Subgraphs met once stay
inline: the table, kept by the workers with the function, stays small.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import threading
import types
from typing import Any

MAX_SHARED = 10_000

_local = threading.local()


def _shared(index: int) -> Any:
    """The entry ``index`` of the table of the node being unpickled."""
    return _local.table[index]


class _TableEntry:
    """Pickles as the entry ``index`` of the table (a shared subgraph)."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        return _shared, (self.index,)


class SharedCallables(pickle.Pickler):
    """Pickles graph nodes with their callables in one shared table.  (A
    pickler itself, so no reference cycle: nothing left for the collector.)"""

    def __init__(self) -> None:
        from dask._task_spec import GraphNode, Task, _execute_subgraph

        from taskmill.client.dask_subgraph import run_subgraph

        self._file = io.BytesIO()
        self._buffers: list[pickle.PickleBuffer] = []
        super().__init__(self._file, protocol=5, buffer_callback=self._buffers.append)
        self.table: list[Any] = []
        self._index: dict[int, int] = {}
        self._inline = (type, types.BuiltinFunctionType, GraphNode)
        #: callables replaced in the table by one doing the same, cheaper
        self._swap = {id(_execute_subgraph): run_subgraph}
        self._fused = _execute_subgraph
        self._task = Task
        self._args_slot = Task.get_all_slots().index("args")  # in dask's state of a Task
        #: id -> a fused task's subgraph seen once, pickled inline, cleanly
        self._subgraph_once: dict[int, Any] = {}
        #: id -> a subgraph seen again: it goes into the table when next met
        self._subgraph_shared: dict[int, Any] = {}

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is self._task and obj.args and id(obj.args[0]) in self._subgraph_shared:
            return self._fused_task(obj)
        if not callable(obj) or isinstance(obj, self._inline) or obj is _shared:
            return NotImplemented
        index = self._entry(obj, self._swap.get(id(obj), obj))
        return NotImplemented if index is None else (_shared, (index,))

    def _entry(self, obj: Any, entry: Any) -> int | None:
        """The table's index for ``obj`` (holding ``entry``), added if new;
        None when the table is full."""
        index = self._index.get(id(obj))
        if index is None:
            if len(self.table) >= MAX_SHARED:
                return None
            index = self._index[id(obj)] = len(self.table)
            # keeps it alive, so its id stays its own (a swapped one lives in its module)
            self.table.append(entry)
        return index

    def _fused_task(self, task: Any) -> Any:
        """The reduction of a fused task whose subgraph is shared: dask's own
        (the object's state, restored by its ``__setstate__``) with the
        subgraph replaced by its place in the table."""
        index = self._entry(task.args[0], task.args[0])
        if index is None:
            return NotImplemented
        state = list(task.__getstate__())
        state[self._args_slot] = (_TableEntry(index), *task.args[1:])
        new = copyreg.__newobj__  # type: ignore[attr-defined]  # missing from typeshed
        return new, (type(task),), tuple(state)

    def dumps(self, node: Any) -> bytes | None:
        """``node`` pickled against the table, or None when it must travel as
        itself (see the module docstring).  Exceptions of pickling propagate
        (a failed dump leaves nothing behind: each one starts afresh)."""
        file = self._file
        file.seek(0)
        file.truncate()
        self.clear_memo()
        self._buffers.clear()
        subgraph = self._subgraph_of(node)
        self.dump(node)
        data = file.getvalue()
        if self._buffers or b"__main__" in data:
            return None
        if subgraph is not None and id(subgraph) not in self._index:
            self._subgraph_once[id(subgraph)] = subgraph  # pickled cleanly: may be shared
        return data

    def _subgraph_of(self, node: Any) -> dict[Any, Any] | None:
        """The subgraph of a fused task (``_execute_subgraph(subgraph, ...)``),
        marked to go into the table if an earlier node had the same one."""
        if type(node) is not self._task or node.func is not self._fused or not node.args \
                or type(node.args[0]) is not dict:
            return None
        subgraph: dict[Any, Any] = node.args[0]
        if id(subgraph) in self._subgraph_once:
            self._subgraph_shared[id(subgraph)] = subgraph
        return subgraph


def load_node(table: tuple[Any, ...], data: bytes) -> Any:
    """A node pickled by :meth:`SharedCallables.dumps` against ``table``."""
    _local.table = table
    try:
        return pickle.loads(data)
    finally:
        _local.table = None
