"""Turning a dask graph into taskmill tasks.

Theory of operation
-------------------
Dask hands a scheduler either a mapping of key -> task (legacy tuples and/or
task-spec objects: ``Task``, ``Alias``, ``DataNode``) or an object with
``__dask_graph__()`` (an expression).  We normalise it with dask's own
``convert_legacy_graph`` so every value is a ``GraphNode`` that knows its
dependencies and can run itself given their values: ``node(values)``.

Each node becomes one taskmill task whose function is :func:`run_node` and
whose arguments are ``(node, {dependency_key: TaskRef(...)})``; the worker
swaps each TaskRef for the dependency's value, so the node receives exactly
the mapping dask expects.  Dask keys may be tuples; taskmill keys are strings,
so tuple keys travel as their ``repr`` (:func:`to_key`).

A node ``Alias(k, target=k)`` is how a persisted collection (or a Future in a
graph) refers to data already on the cluster: it becomes no task at all, only
a dependency on that key.  Tasks go out in dependency order (dask's
``order``, which also gives their priorities: earlier first), so the
scheduler never sees a dependency before its task, whatever the chunking.

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

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from taskmill.client.dask_annotations import (
    TaskOptionsOf,
    call_annotations,
    fusion_kept_off,
    graph_annotations,
    unoptimised_annotations,
)
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


def run_node(node: Any, values: dict[Hashable, Any]) -> Any:
    """Run one dask graph node on a worker, its dependencies' values in hand."""
    return node(values)


@dataclass(frozen=True, slots=True)
class PackedGraph:
    """A graph ready to submit: wire tasks (dependencies first) and the
    function they all share."""

    tasks: list[TaskSpec]
    funcs: dict[str, Serialized]
    external: set[str]  # keys used but not defined here: data already on the cluster


def graph_of(dsk: Any) -> Mapping[Hashable, Any]:
    """The key -> task mapping of whatever dask passed as a graph."""
    if hasattr(dsk, "__dask_graph__"):
        dsk = dsk.__dask_graph__()
    return dsk


def pack_graph(dsk: Any, *, generation: int, options: Mapping[str, Any] | None = None) -> PackedGraph:
    """Normalise ``dsk`` and build one wire task per node.  ``options``: those
    of the call (``priority``, ``retries``, ``workers``,
    ``allow_other_workers``, ``resources``), under the graph's annotations."""
    from dask._task_spec import Alias, convert_legacy_graph
    from dask.order import order

    options = options or {}
    before_optimisation = unoptimised_annotations(dsk)
    with fusion_kept_off(bool(before_optimisation)):
        raw = dict(graph_of(dsk))
        annotations = graph_annotations(dsk)
    names: dict[str, Hashable] = {}
    for k in raw:
        other = names.setdefault(to_key(k), k)
        if other != k:
            raise ValueError(f"dask keys {other!r} and {k!r} both become taskmill key "
                             f"{to_key(k)!r}; rename one of them")
    options_of = TaskOptionsOf(annotations, before_optimisation, call_annotations(options),
                               options.get("priority", 0))
    graph = convert_legacy_graph(raw)
    # ``{key: future}`` (a persisted collection, a Future in a graph) is data
    # already on the cluster: no task, only a key others may depend on
    for k, node in list(graph.items()):
        if isinstance(node, Alias) and to_key(node.target) == to_key(k):
            del graph[k]
    ranks: dict[Any, int] = dict(order(graph)) if graph else {}
    token, func = serialize_function(run_node)
    tasks: list[TaskSpec] = []
    external: set[str] = set()
    for key in _dependencies_first(graph, ranks):
        node = graph[key]
        deps = node.dependencies
        refs = {d: TaskRef(to_key(d)) for d in deps}
        outside = [to_key(d) for d in deps if d not in graph]
        if outside:  # data on the cluster, perhaps a Future inside the node
            external.update(outside)
            with futures_as_keys(deps):
                args = serialize(((node, refs), {}))
        else:
            args = serialize(((node, refs), {}))
        opts = options_of(key, node)
        tasks.append(TaskSpec(to_key(key), token, args,
                              tuple([to_key(d) for d in deps]),
                              (-opts.priority, generation, ranks.get(key, 0)), opts.retries,
                              opts.workers, opts.allow_other_workers, opts.resources))
    return PackedGraph(tasks, {token: func}, external)


def _dependencies_first(graph: Mapping[Hashable, Any], ranks: Mapping[Hashable, int]) -> list[Hashable]:
    """Keys sorted by dask's order when that is a topological order (it is
    meant to be), else a plain topological sort."""
    keys = sorted(graph, key=ranks.__getitem__)
    if all(ranks[d] < ranks[k] for k in keys for d in graph[k].dependencies if d in graph):
        return keys
    return _toposort(graph)


def _toposort(graph: Mapping[Hashable, Any]) -> list[Hashable]:
    remaining = {k: {d for d in node.dependencies if d in graph} for k, node in graph.items()}
    dependents: dict[Hashable, list[Hashable]] = {k: [] for k in graph}
    for k, deps in remaining.items():
        for d in deps:
            dependents[d].append(k)
    ready = [k for k, deps in remaining.items() if not deps]
    out: list[Hashable] = []
    while ready:
        k = ready.pop()
        out.append(k)
        for child in dependents[k]:
            deps = remaining[child]
            deps.discard(k)
            if not deps:
                ready.append(child)
    if len(out) != len(graph):
        raise ValueError("the dask graph has a cycle")
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
