"""Running dask's fused subgraphs without ordering each one with ``dask.order``.

Theory of operation
-------------------
Dask's graph optimisation fuses linear chains of tasks into one task whose
function is ``dask._task_spec._execute_subgraph(inner_dsk, outkey, inkeys,
*dependencies)``: ``da.ones(N, chunks=1).sum()`` runs one such task per
chunk (``sum(ones_like(...))``).  Dask runs the inner graph through
``execute_graph``, which orders it with the general ``dask.order.order``
every time: for a two-task chain that ordering is ~120 us of the task's
~200 us (cProfile, one worker thread), paid once per chunk, on the workers.

:func:`run_subgraph` does the same with a plain depth-first order from the
inner graph's sinks (dependencies first, a few microseconds for the usual
two or three tasks): each inner task is called with the values computed so
far, and a value is dropped as soon as its last dependent inside the
subgraph has run (as ``execute_graph`` does), so a fused chain over large
chunks does not hold every intermediate at once.  Any topological order
computes the same values; dask's order only chooses among them for memory,
which a handful of tasks in one call does not need.  Inner graphs holding
anything but dask graph nodes (not made by dask's own fusion) go to dask's
function unchanged.

Graphs reach it by substitution when their nodes are pickled
(:mod:`taskmill.client.dask_pickling` puts :func:`run_subgraph` in the
graph's table of callables where a node names ``_execute_subgraph``), so
nothing changes in the nodes themselves or in the wire format.

The depth-first post-order itself (:func:`post_order`) also orders big
graphs on the client (``taskmill.client.dask_graph``).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any


def run_subgraph(inner_dsk: Mapping[Hashable, Any], outkey: Hashable, inkeys: tuple[Hashable, ...],
                 *dependencies: Any) -> Any:
    """The value of ``outkey`` in ``inner_dsk``, the values of ``inkeys``
    given as ``dependencies``: what dask's ``_execute_subgraph`` returns."""
    from dask._task_spec import GraphNode, _execute_subgraph

    if not all(isinstance(node, GraphNode) for node in inner_dsk.values()):
        return _execute_subgraph(inner_dsk, outkey, inkeys, *dependencies)
    values: dict[Hashable, Any] = dict(zip(inkeys, dependencies))
    uses: dict[Hashable, int] = {}  # key -> dependents inside the subgraph not yet run
    for node in inner_dsk.values():
        for d in node.dependencies:
            uses[d] = uses.get(d, 0) + 1
    for key in _inner_order(inner_dsk, inkeys):
        node = inner_dsk[key]
        values[key] = node(values)
        for d in node.dependencies:
            left = uses[d] = uses[d] - 1
            if left == 0 and d != outkey:
                del values[d]
    return values[outkey]


def _inner_order(inner_dsk: Mapping[Hashable, Any], inkeys: tuple[Hashable, ...]) -> list[Hashable]:
    """The keys of ``inner_dsk`` not given as inputs, dependencies first
    (from each key in turn, so the tasks run are those dask would run)."""
    return post_order(inner_dsk, inner_dsk, dict.fromkeys(inkeys, True),
                      "the fused dask task's subgraph", strict=True)


def post_order(graph: Mapping[Hashable, Any], roots: Iterable[Hashable],
               done: dict[Hashable, bool], what: str, strict: bool) -> list[Hashable]:
    """The keys of dask ``graph`` reachable from ``roots``, dependencies
    first: a depth-first post-order, finishing each root's subtree before
    the next root's (iterative: deep chains do not reach the recursion
    limit).  ``done`` holds the keys to leave out (True) and is filled as
    keys are placed.  A dependency missing from ``graph`` is skipped, or
    with ``strict`` refused (``KeyError``); a cycle is refused
    (``ValueError``, ``what`` names the graph)."""
    out: list[Hashable] = []
    for root in roots:
        if root in done:
            continue
        done[root] = False  # on the path being walked
        stack = [(root, iter(graph[root].dependencies))]
        while stack:
            key, deps = stack[-1]
            for d in deps:
                seen = done.get(d)
                if seen is None:
                    if d not in graph:
                        if strict:
                            raise KeyError(f"the fused dask task needs key {d!r}, which neither "
                                           "its subgraph nor its inputs provide")
                        continue
                    done[d] = False
                    stack.append((d, iter(graph[d].dependencies)))
                    break
                if not seen:
                    raise ValueError(f"{what} has a cycle through key {d!r}")
            else:
                stack.pop()
                done[key] = True
                out.append(key)
    return out
