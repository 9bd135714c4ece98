"""Pickling the nodes of a big dask graph cheaply: callables shared once per graph.

Theory of operation
-------------------
A dask graph of a million tasks typically holds a handful of distinct
callables (``Compose``, ``partial``, ``curry`` objects and functions, the same
object in every block of a layer), each pickled again inside every task's
node, and rebuilt again on the worker for every task (``toolz``' curry and
``Compose`` restore themselves in Python): about half of what pickling and
unpickling a node costs.

:class:`SharedCallables` pickles each node replacing a callable (anything
callable but a class, a graph node or a builtin) by a reference
``_shared(i)`` into one table per slice of the graph
(:func:`taskmill.client.dask_graph.pack_slices`); the table travels once,
inside the slice's task function (``functools.partial(run_node, table)``, a
token the scheduler and workers keep; equal tables, the usual case, share
it), and :func:`load_node` unpickles a node with that table in force (a
thread-local, so concurrent tasks of other graphs keep theirs).

A node whose pickle would not load elsewhere as it is (out-of-band buffers,
whose zero-copy path belongs to the task's own arguments; a reference to
``__main__``, which needs cloudpickle), or that ``pickle`` cannot make at
all, is not packed here: the caller sends that node itself in the task's
arguments (where cloudpickle, or a clear error, takes over).  The table stops growing at
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

Two picklers.  The reductions are chosen per type, not per object: a
``dispatch_table`` that learns each type when first met (:class:`_Reducers`):
a ``Task`` is reduced with its function and shared subgraph in the table,
other callables become table entries, other types keep their own reduction.
Containers, strings, numbers, functions and classes never reach it: the C
pickler handles them without a call into Python (the first version's
``reducer_override`` was called for every object, about eight times per node
of a reduction: node pickling 9.3 -> 6.2-6.9 us).  A plain function pickles by its
name there, which fails for a lambda or a local function nested in a task's
arguments (``bag.map(lambda ...)``) and names ``__main__`` for one defined
there; from the first such node on, the slice's nodes go through a second
pickler whose ``reducer_override`` also puts functions in the table (same
table), as the first version did for every node.
"""

from __future__ import annotations

import copyreg
import io
import operator
import pickle
import threading
import types
from collections.abc import Callable
from typing import Any

MAX_SHARED = 10_000

_local = threading.local()


def _shared(index: int) -> Any:
    """The entry ``index`` of the table of the node being unpickled."""
    return _local.table[index]


class _TableEntry:
    """Pickles as the entry ``index`` of the table (see :class:`_Reducers`)."""

    __slots__ = ("reduced",)

    def __init__(self, index: int) -> None:
        self.reduced = (_shared, (index,))


def _default_reduction(obj: Any) -> Any:
    """What the pickler does with an object of a type it has no rule for."""
    return obj.__reduce_ex__(5)


class _Table:
    """The table of a slice and the reductions that fill it."""

    def __init__(self) -> None:
        from dask._task_spec import GraphNode, Task, _execute_subgraph

        from taskmill.client.dask_subgraph import run_subgraph

        self.entries: list[Any] = []
        #: id of an object in the table -> its entry
        self._refs: dict[int, _TableEntry] = {}
        #: callables replaced in the table by one doing the same, cheaper
        self._swap = {id(_execute_subgraph): run_subgraph}
        self.fused = _execute_subgraph
        self.task = Task
        self.inline = (type, types.BuiltinFunctionType, GraphNode)
        slots = Task.get_all_slots()  # dask's state of a Task: these slots, in this order
        self._task_state = operator.attrgetter(*slots)
        self._func_slot = slots.index("func")
        self._args_slot = slots.index("args")
        #: id -> a fused task's subgraph seen once, pickled inline, cleanly
        self.subgraph_once: dict[int, Any] = {}
        #: id -> a subgraph seen again: it goes into the table when next met
        self.subgraph_shared: dict[int, Any] = {}

    def shares(self, kind: type) -> bool:
        """Whether objects of ``kind`` go into the table: callables, but not
        classes, graph nodes or builtin functions."""
        return (any("__call__" in vars(c) for c in kind.__mro__[:-1])
                and not issubclass(kind, self.inline))

    def reduce_shared(self, obj: Any) -> Any:
        """A callable's reduction: its place in the table (while the table
        has room; else its own)."""
        ref = self.entry_of(obj, obj)
        return _default_reduction(obj) if ref is None else ref.reduced

    def reduce_task(self, task: Any) -> Any:
        """A dask ``Task``'s reduction: dask's own (the object's state,
        restored by its ``__setstate__``) with its function, and the subgraph
        of a fused task met before, replaced by their places in the table."""
        state = list(self._task_state(task))
        func = task.func
        if not isinstance(func, self.inline):
            ref = self.entry_of(func, self._swap.get(id(func), func))
            if ref is not None:
                state[self._func_slot] = ref
        args = task.args
        if args and id(args[0]) in self.subgraph_shared:
            ref = self.entry_of(args[0], args[0])
            if ref is not None:
                state[self._args_slot] = (ref, *args[1:])
        new = copyreg.__newobj__  # type: ignore[attr-defined]  # missing from typeshed
        return new, (type(task),), tuple(state)

    def entry_of(self, obj: Any, entry: Any) -> _TableEntry | None:
        """The table's entry for ``obj`` (holding ``entry``), added if new;
        None when the table is full."""
        ref = self._refs.get(id(obj))
        if ref is None:
            if len(self.entries) >= MAX_SHARED:
                return None
            ref = self._refs[id(obj)] = _TableEntry(len(self.entries))
            # keeps it alive, so its id stays its own (a swapped one lives in its module)
            self.entries.append(entry)
        return ref


class _Reducers(dict[type, Any]):
    """A pickler's ``dispatch_table``: type -> reduction, learnt when the
    pickler first meets the type (``__missing__``).  Types the C pickler
    handles itself (containers, strings, numbers, functions, classes) never
    come here; a metaclass's instances (classes) keep the pickler's own
    handling (``KeyError``); the types ``copyreg`` registers keep their
    reduction (the pickler does not look there once it has a table)."""

    def __init__(self, table: _Table) -> None:
        super().__init__()
        self._table = table
        self[_TableEntry] = operator.attrgetter("reduced")

    def __missing__(self, kind: type) -> Any:
        if issubclass(kind, type):
            raise KeyError(kind)
        table = self._table
        reduction: Callable[[Any], Any]
        if kind is table.task:
            reduction = table.reduce_task
        elif kind in copyreg.dispatch_table:
            reduction = copyreg.dispatch_table[kind]
        elif table.shares(kind):
            reduction = table.reduce_shared
        elif kind.__reduce_ex__ is object.__reduce_ex__ and kind.__reduce__ is not object.__reduce__:
            reduction = kind.__reduce__  # what ``object.__reduce_ex__`` would call
        else:
            reduction = _default_reduction
        self[kind] = reduction
        return reduction


class _Pickler(pickle.Pickler):
    """Pickles against a :class:`_Table` (to a reused buffer)."""

    def __init__(self, table: _Table) -> None:
        self.file = io.BytesIO()
        self.buffers: list[pickle.PickleBuffer] = []
        self.dispatch_table = _Reducers(table)  # read by the C pickler's initialiser
        super().__init__(self.file, protocol=5, buffer_callback=self.buffers.append)

    def pickled(self, node: Any) -> tuple[bytes | None, bool]:
        """``node``'s pickle, or None when it would not load elsewhere as it
        is or could not be made; and whether a pickler that also puts
        functions in the table might do (the pickle failed or named
        ``__main__``; out-of-band buffers are the node's own)."""
        file = self.file
        file.seek(0)
        file.truncate()
        self.clear_memo()
        self.buffers.clear()
        try:
            self.dump(node)
        except Exception:  # e.g. a nested lambda
            return None, True
        data = file.getvalue()
        if self.buffers:
            return None, False
        if b"__main__" in data:
            return None, True
        return data, False


class _FunctionsToo(_Pickler):
    """Also puts plain functions in the table (lambdas, local functions and
    ``__main__``'s, which pickle by name, nested in a task's arguments)."""

    def __init__(self, table: _Table) -> None:
        super().__init__(table)
        self._table = table

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is types.FunctionType and obj is not _shared:
            return self._table.reduce_shared(obj)
        return NotImplemented


class SharedCallables:
    """Pickles graph nodes with their callables in one shared table (see
    the module docstring).  No reference cycles: nothing is left for the
    collector."""

    def __init__(self) -> None:
        self._table = _Table()
        self.table = self._table.entries
        self._pickler: _Pickler = _Pickler(self._table)
        self._functions_too = False

    def dumps(self, node: Any) -> bytes | None:
        """``node`` pickled against the table, or None when it must travel as
        itself (see the module docstring)."""
        subgraph = self._subgraph_of(node)
        data, retry = self._pickler.pickled(node)
        if retry and not self._functions_too:
            self._functions_too = True  # from now on, for the rest of the slice
            self._pickler = _FunctionsToo(self._table)
            data, _ = self._pickler.pickled(node)
        if data is None:
            return None
        if subgraph is not None and id(subgraph) not in self._table.subgraph_shared:
            self._table.subgraph_once[id(subgraph)] = subgraph  # pickled cleanly: may be shared
        return data

    def _subgraph_of(self, node: Any) -> dict[Any, Any] | None:
        """The subgraph of a fused task (``_execute_subgraph(subgraph, ...)``),
        marked to go into the table if an earlier node had the same one."""
        table = self._table
        if type(node) is not table.task or node.func is not table.fused or not node.args \
                or type(node.args[0]) is not dict:
            return None
        subgraph: dict[Any, Any] = node.args[0]
        if id(subgraph) in table.subgraph_once:
            table.subgraph_shared[id(subgraph)] = subgraph
        return subgraph


def load_node(table: tuple[Any, ...], data: bytes) -> Any:
    """A node pickled by :meth:`SharedCallables.dumps` against ``table``."""
    _local.table = table
    try:
        return pickle.loads(data)
    finally:
        _local.table = None
