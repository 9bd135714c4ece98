"""Turning a dask graph into taskmill tasks.

Theory of operation
-------------------
Dask hands a scheduler either a mapping of key -> task (legacy tuples and/or
task-spec objects: ``Task``, ``Alias``, ``DataNode``) or an object with
``__dask_graph__()`` (an expression).  We normalise it with dask's own
``convert_legacy_graph`` so every value is a ``GraphNode`` that knows its
dependencies and can run itself given their values: ``node(values)``.

Each node becomes one taskmill task whose function is :func:`run_node` bound
to the graph's table of callables, and whose arguments are ``(node,
{dependency_key: TaskRef(...)})``; the worker swaps each TaskRef for the
dependency's value, so the node receives exactly the mapping dask expects.
The node travels pickled against that table
(:mod:`taskmill.client.dask_pickling`: the graph's few distinct callables go
once, inside the function, not once per task).  Dask keys may be tuples;
taskmill keys are strings, so tuple keys travel as their ``repr``
(:func:`to_key`).

A node ``Alias(k, target=k)`` is how a persisted collection (or a Future in a
graph) refers to data already on the cluster: it becomes no task at all, only
a dependency on that key.  Tasks go out in dependency order
(:func:`_execution_order`, also their priorities: earlier first), so the
scheduler never sees a dependency before its task, whatever the chunking.
Graphs up to ``DASK_ORDER_LIMIT`` tasks take ``dask.order``'s order (it
keeps memory low on shuffles and transposes); bigger ones a depth-first
post-order from the graph's sinks (:func:`_dependencies_first`), five times
cheaper.

A Future inside a node (``delayed(f)(future)``, also inside lists, tuples,
dicts and sets, ``da.from_delayed(future)``, ``(f, future)`` in a graph given
to ``get``) is a dask ``TaskRef`` the node depends on; a node depending on
data outside the graph is pickled inside ``futures_as_keys``, where such a
Future pickles as a plain ``TaskRef`` of its key: the graph carries the key,
never a pickled Future (:mod:`taskmill.client.future_pickling`).

Each task's options (retries, workers, resources, priority) come from the
call and from ``dask.annotate`` (:mod:`taskmill.client.dask_annotations`).
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from taskmill.client.dask_annotations import (
    TaskOptions,
    TaskOptionsOf,
    call_annotations,
    fusion_kept_off,
    graph_annotations,
    unoptimised_annotations,
)
from taskmill.client.dask_pickling import SharedCallables, load_node
from taskmill.client.dask_subgraph import post_order
from taskmill.client.future_pickling import futures_as_keys
from taskmill.core.taskref import TaskRef
from taskmill.protocol import Serialized, serialize, serialize_function
from taskmill.protocol.vocabulary import TaskSpec


ESCAPE = "\x1b"


def to_key(key: Hashable) -> str:
    """The taskmill key of a dask key: a string stays as it is (so a Future's
    key means the same to both), a tuple becomes its repr (``"('x', 0)"``),
    anything else ``ESC + repr`` (so ``5`` and ``"5"`` stay apart).  A graph
    holding both a tuple key and a string equal to its repr is refused
    (:func:`pack_graph`)."""
    if isinstance(key, str):
        return key
    if isinstance(key, tuple):
        return repr(key)
    return ESCAPE + repr(key)


def run_node(table: tuple[Any, ...], node: Any, values: dict[Hashable, Any]) -> Any:
    """Run one dask graph node on a worker, its dependencies' values in hand;
    ``node`` is the node itself or its pickle against the graph's ``table`` of
    callables (:mod:`taskmill.client.dask_pickling`)."""
    if type(node) is bytes:
        node = load_node(table, node)
    return node(values)


#: tasks per slice of a graph that :func:`pack_slices` yields: the cluster
#: starts on the first slice while the next ones are packed
SLICE = 10_000


@dataclass(frozen=True, slots=True)
class PackedGraph:
    """A graph, or a slice of one, ready to submit: wire tasks (dependencies
    first) and the function they share."""

    tasks: list[TaskSpec]
    funcs: dict[str, Serialized]
    external: set[str]  # keys used but not defined here: data already on the cluster
    #: keys of these tasks that tasks of a later slice depend on
    needed_later: list[str]


def graph_of(dsk: Any) -> Mapping[Hashable, Any]:
    """The key -> task mapping of whatever dask passed as a graph."""
    if hasattr(dsk, "__dask_graph__"):
        dsk = dsk.__dask_graph__()
    return dsk


def pack_graph(dsk: Any, *, generation: int, options: Mapping[str, Any] | None = None) -> PackedGraph:
    """The whole graph as one :class:`PackedGraph` (see :func:`pack_slices`)."""
    return next(pack_slices(dsk, generation=generation, options=options, size=sys.maxsize))


def pack_slices(dsk: Any, *, generation: int, options: Mapping[str, Any] | None = None,
                size: int | None = None) -> Iterator[PackedGraph]:
    """Normalise ``dsk`` and build one wire task per node, in dependency
    order, as slices of ``size`` tasks (default ``SLICE``; at least one
    slice, maybe empty), each packed when the caller asks for it.  Each slice
    carries its own table of callables (usually the same as the last one's:
    equal functions share a token, so they travel once).  ``options``: those
    of the call (``priority``, ``retries``, ``workers``,
    ``allow_other_workers``, ``resources``), under the graph's annotations."""
    from dask._task_spec import Alias, convert_legacy_graph

    options = options or {}
    before_optimisation = unoptimised_annotations(dsk)
    with fusion_kept_off(bool(before_optimisation)):
        raw = dict(graph_of(dsk))
        annotations = graph_annotations(dsk)
    names: dict[Hashable, str] = {}  # dask key -> taskmill key
    taken: dict[str, Hashable] = {}
    for k in raw:
        name = names[k] = to_key(k)
        other = taken.setdefault(name, k)
        if other != k:
            raise ValueError(f"dask keys {other!r} and {k!r} both become taskmill key "
                             f"{name!r}; rename one of them")
    options_of = TaskOptionsOf(annotations, before_optimisation, call_annotations(options),
                               options.get("priority", 0))
    graph = convert_legacy_graph(raw)
    # ``{key: future}`` (a persisted collection, a Future in a graph) is data
    # already on the cluster: no task, only a key others may depend on
    for k, node in list(graph.items()):
        if isinstance(node, Alias) and to_key(node.target) == names[k]:
            del graph[k]
    order = _execution_order(graph)
    last_use: dict[Hashable, int] = {}  # key -> the position of its last dependent
    for position, key in enumerate(order):
        for d in graph[key].dependencies:
            last_use[d] = position
    size = size or SLICE
    graph_keys = graph.keys()
    for start in range(0, max(len(order), 1), size):
        end = min(start + size, len(order))
        pickler = SharedCallables()
        packed: list[tuple[str, Serialized, tuple[str, ...], TaskOptions]] = []
        external: set[str] = set()
        for key in order[start:end]:
            node = graph[key]
            deps = node.dependencies
            dep_keys = tuple([names.get(d) or to_key(d) for d in deps])
            refs = dict(zip(deps, map(TaskRef, dep_keys)))
            if deps <= graph_keys:
                args = _args(pickler, node, refs)
            else:  # data on the cluster, perhaps a Future inside the node
                external.update(ref.key for d, ref in refs.items() if d not in graph)
                with futures_as_keys(deps):
                    args = _args(pickler, node, refs)
            packed.append((names[key], args, dep_keys, options_of(key, node)))
        # the table is complete once the slice is pickled: the function goes last
        token, func = serialize_function(partial(run_node, tuple(pickler.table)))
        tasks = [TaskSpec(key, token, args, deps, (-opts.priority, generation, rank),
                          opts.retries, opts.workers, opts.allow_other_workers, opts.resources)
                 for rank, (key, args, deps, opts) in enumerate(packed, start)]
        yield PackedGraph(tasks, {token: func}, external,
                          [names[k] for k in order[start:end] if last_use.get(k, -1) >= end])


def _args(pickler: SharedCallables, node: Any, refs: dict[Hashable, TaskRef]) -> Serialized:
    """The task's arguments for :func:`run_node`: the node pickled against the
    graph's table of callables, or the node itself when it must travel so."""
    packed = pickler.dumps(node)
    return serialize(((packed if packed is not None else node, refs), {}))


#: Graphs up to this many tasks are ordered by ``dask.order`` (10-25 us a task,
#: and its tie-breaks keep memory low on shuffles and transposes); bigger ones
#: by :func:`_dependencies_first`, a few microseconds a task.
DASK_ORDER_LIMIT = 50_000


def _execution_order(graph: Mapping[Hashable, Any]) -> list[Hashable]:
    """The order the tasks go out in, which is also their priority."""
    if not graph or len(graph) > DASK_ORDER_LIMIT:
        return _dependencies_first(graph)
    from dask.order import order

    ranks: dict[Any, int] = dict(order(graph))  # type: ignore[arg-type]  # dask's Key
    keys = sorted(graph, key=ranks.__getitem__)
    if all(ranks[d] < ranks[k] for k in keys for d in graph[k].dependencies if d in graph):
        return keys
    return _dependencies_first(graph)  # dask.order meant to be topological and was not


def _dependencies_first(graph: Mapping[Hashable, Any]) -> list[Hashable]:
    """The keys in an order that runs dependencies first and finishes each
    subtree before starting the next: a depth-first post-order from the
    graph's sinks, in the graph's order.  (This is the tasks' priority, so a
    reduction frees its inputs as it goes; it costs a few microseconds per
    task, where ``dask.order`` cost 10-25.)"""
    has_dependents: set[Hashable] = set()
    for node in graph.values():
        has_dependents.update(node.dependencies)
    sinks = (key for key in graph if key not in has_dependents)
    out = post_order(graph, sinks, {}, "the dask graph", strict=False)
    if len(out) != len(graph):
        raise ValueError("the dask graph has a cycle (some tasks are not reached from any "
                         "task that nothing depends on)")
    return out


def flatten_keys(keys: Any) -> list[Hashable]:
    """The keys of a (possibly nested) list of keys, in order."""
    out: list[Hashable] = []

    def walk(k: Any) -> None:
        if isinstance(k, list):
            for x in k:
                walk(x)
        else:
            out.append(k)

    walk(keys)
    return out


def repack(keys: Any, values: Mapping[str, Any]) -> Any:
    """Results in the nested-list shape of ``keys``."""
    if isinstance(keys, list):
        return [repack(k, values) for k in keys]
    return values[to_key(keys)]


def unique(keys: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(keys))
