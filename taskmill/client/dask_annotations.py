"""Reading ``dask.annotate`` into per-task options of a graph.

Theory of operation
-------------------
``with dask.annotate(retries=2, workers=..., allow_other_workers=...,
resources=..., priority=...)`` attaches annotations to the layers of the
HighLevelGraphs built inside the block (arrays, bags, delayed; dask's
dataframes ignore annotations, and dask warns so).  We read them as
dask.distributed does and turn each task's into its ``TaskSpec`` fields:

* **Graph annotations**, per key: those of the graph as submitted
  (``expr.__dask_annotations__()`` of the optimised expression, or the
  layers of a HighLevelGraph handed to ``get``).  Dask's blockwise fusion
  merges the annotations of the layers it fuses (its ``_fuse_annotations``:
  the largest retries, priority and resources, the workers all of them
  allow).
* **Surviving low-level fusion**: array and bag optimisation (and delayed
  with ``optimization.fuse.delayed``) fuse chains of tasks into one
  ``Task.fuse`` task and return a plain dict, which drops every layer's
  annotations; dask.distributed then ignores them (its own tests turn fusion
  off).  We do better.  When a layer of the graph is annotated, arrays are
  materialised with ``optimization.fuse.active`` off (:func:`fusion_kept_off`:
  blockwise fusion, which merges annotations, still runs), so the optimised
  graph keeps them.  Bags always fuse: there a task the optimised graph does
  not annotate takes the annotations its key had before optimisation, and a
  fused task those of the tasks fused into it, merged by dask's rule.
* **Call annotations**: ``dask.get_annotations()`` at call time (a
  ``compute`` inside ``with dask.annotate(...)``), overridden by the
  options of the call (``compute(resources=...)``, ``x.compute(retries=3)``),
  apply to every task; graph annotations take precedence, as in
  dask.distributed.  A callable annotation value is called with each dask key.
* ``priority``: the annotated priority is added to the priority of the call
  (dask.distributed lets a layer's replace it; adding keeps ``compute(...,
  priority=10)`` above other work while its annotated parts keep their order).

Unknown annotations are ignored, as dask does.  A bad value of a known one is
a ``TypeError``/``ValueError`` naming the annotation, the task and the fix.
Graphs without annotations pay one walk over their layers, nothing per task.
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from taskmill.comm import normalize_address
from taskmill.core.resources import check_resources

#: The annotations that become task options; dask ignores the others, so do we.
TASK_ANNOTATIONS = ("retries", "workers", "allow_other_workers", "resources", "priority")

Annotations = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """The options of one task, as its ``TaskSpec`` carries them (priority:
    the user's, higher first)."""

    priority: int = 0
    retries: int = 0
    workers: tuple[str, ...] | None = None
    allow_other_workers: bool = False
    resources: dict[str, float] | None = None


def call_annotations(options: Mapping[str, Any]) -> Annotations:
    """The annotations applying to every task of a call: those of the
    enclosing ``dask.annotate`` blocks, overridden by the call's own options
    (``None``/empty ones left out; ``priority`` is kept apart by the caller)."""
    import dask

    merged = {name: value for name, value in dask.get_annotations().items()
              if name in TASK_ANNOTATIONS}
    merged.update((name, value) for name, value in options.items()
                  if name in TASK_ANNOTATIONS and name != "priority" and value)
    return merged


def graph_annotations(dsk: Any) -> dict[Hashable, Annotations]:
    """``{key: annotations}`` of a graph as dask hands it over (an expression
    or a HighLevelGraph; a plain mapping has none), after its optimisation."""
    if hasattr(dsk, "__dask_annotations__") and hasattr(dsk, "walk"):  # an expression
        by_type = dsk.__dask_annotations__()
        per_key: dict[Hashable, Annotations] = {}
        for name, values in by_type.items():
            if name in TASK_ANNOTATIONS:
                for key, value in values.items():
                    if not _is_tombstone(value):
                        per_key.setdefault(key, {})[name] = value
        return per_key
    if hasattr(dsk, "layers"):
        return _layer_annotations([dsk])
    return {}


def unoptimised_annotations(dsk: Any) -> dict[Hashable, Annotations]:
    """``{key: annotations}`` from the layers of the graphs an expression was
    built from, before any optimisation ran (empty when none is annotated)."""
    if not hasattr(dsk, "walk"):
        return {}
    from dask._expr import HLGExpr
    from dask.highlevelgraph import HighLevelGraph

    graphs = [node.operand("dsk") for node in dsk.walk() if isinstance(node, HLGExpr)]
    return _layer_annotations([g for g in graphs if isinstance(g, HighLevelGraph)])


@contextmanager
def fusion_kept_off(annotated: bool) -> Iterator[None]:
    """Materialise an ``annotated`` graph without dask's low-level fusion of
    arrays, which would drop the annotations (a graph without any: as is).
    Dask's configuration is process-wide: a graph another thread materialises
    meanwhile is not fused either, which costs it speed, never correctness."""
    if not annotated:
        yield
        return
    import dask

    with dask.config.set({"optimization.fuse.active": False}):
        yield


def _layer_annotations(graphs: Iterable[Any]) -> dict[Hashable, Annotations]:
    per_key: dict[Hashable, Annotations] = {}
    for graph in graphs:
        for layer in graph.layers.values():
            known = {name: value for name, value in (layer.annotations or {}).items()
                     if name in TASK_ANNOTATIONS}
            if not known:
                continue
            for key in layer:
                mine = per_key.setdefault(key, {})
                for name, value in known.items():
                    value = value(key) if callable(value) else value
                    if not _is_tombstone(value):
                        mine[name] = value
    return per_key


def _is_tombstone(value: Any) -> bool:
    """Dask marks a key a per-key annotation does not cover with a tombstone."""
    return type(value).__name__ == "_AnnotationsTombstone"


class TaskOptionsOf:
    """Each task's options: its graph annotations over the call's, checked.

    ``graph``: ``{key: annotations}`` of the optimised graph; ``fallback``:
    those from before optimisation (for keys and fused tasks the optimised
    graph lost them for); ``call``: :func:`call_annotations`;
    ``call_priority``: added to each task's annotated priority."""

    def __init__(self, graph: Mapping[Hashable, Annotations], fallback: Mapping[Hashable, Annotations],
                 call: Annotations, call_priority: int) -> None:
        self._graph = graph
        self._fallback = fallback
        self._call = call
        self._call_priority = _integer(call_priority, "priority", None)
        self._per_key_call = any(callable(v) for v in call.values())
        self._same_for_all = (None if graph or fallback or self._per_key_call
                              else self._options(None, call))

    def __call__(self, key: Hashable, node: Any) -> TaskOptions:
        """The options of task ``key`` (its graph node ``node``)."""
        if self._same_for_all is not None:
            return self._same_for_all
        call = self._call
        if self._per_key_call:
            call = {name: value(key) if callable(value) else value for name, value in call.items()}
        own = self._graph.get(key)
        if own is None and self._fallback:
            own = _fused_annotations(key, node, self._fallback)
        return self._options(key, {**call, **own} if own else call)

    def _options(self, key: Hashable | None, annotations: Annotations) -> TaskOptions:
        if not annotations:
            return TaskOptions(priority=self._call_priority)
        get = annotations.get
        resources = get("resources")
        if resources is not None:
            resources = check_resources(resources, _naming("resources", key)) or None
        return TaskOptions(
            priority=self._call_priority + _integer(get("priority", 0), "priority", key),
            retries=_integer(get("retries", 0), "retries", key, minimum=0),
            workers=_addresses(get("workers"), key),
            allow_other_workers=_flag(get("allow_other_workers", False), key),
            resources=resources,
        )


def _fused_annotations(key: Hashable, node: Any, fallback: Mapping[Hashable, Annotations]
                       ) -> Annotations | None:
    """The annotations ``key`` had before optimisation; for a task fused from
    several (``Task.fuse``), those of its parts merged by dask's rule."""
    parts = [fallback[k] for k in _fused_keys(key, node) if k in fallback]
    if len(parts) <= 1:
        return parts[0] if parts else None
    from dask.blockwise import _fuse_annotations

    return _fuse_annotations(*parts)  # type: ignore[no-any-return]


def _fused_keys(key: Hashable, node: Any) -> list[Hashable]:
    """``key`` and, for a fused task, the keys of the tasks fused into it."""
    from dask._task_spec import _execute_subgraph

    keys = [key]
    if getattr(node, "func", None) is _execute_subgraph:
        inner = node.args[0]
        inner = getattr(inner, "value", inner)  # a DataNode, or the dict itself
        if isinstance(inner, Mapping):
            for inner_key, inner_node in inner.items():
                keys.extend(_fused_keys(inner_key, inner_node))
    return keys


def _naming(name: str, key: Hashable | None) -> str:
    """What an error calls an option: a task's annotation, or one for the whole call."""
    if key is None:
        return f"the {name} option (or annotation around the call)"
    return f"the {name} annotation of task {key!r}"


def _integer(value: Any, name: str, key: Hashable | None, minimum: int | None = None) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{_naming(name, key)} must be a whole number, not {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{_naming(name, key)} must be {minimum} or more, not {value!r}")
    return int(value)


def _flag(value: Any, key: Hashable | None) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{_naming('allow_other_workers', key)} must be True or False, "
                        f"not {value!r}")
    return value


def _addresses(value: Any, key: Hashable | None) -> tuple[str, ...] | None:
    """``workers``: an address or a list, tuple or set of them; none (an
    empty list, as dask's fusion of disjoint ones gives) restricts nothing,
    as in dask.distributed."""
    if value is None or (isinstance(value, (list, tuple, set, frozenset)) and not value):
        return None
    listed = [value] if isinstance(value, str) else value
    if not isinstance(listed, (list, tuple, set, frozenset)) or not all(
            isinstance(w, str) for w in listed):
        raise TypeError(f"{_naming('workers', key)} must be a worker address or a list of them, "
                        f"like 'tcp://127.0.0.1:40000', not {value!r}")
    try:
        return tuple(sorted({normalize_address(w) for w in listed}))
    except ValueError as exc:
        raise ValueError(f"{_naming('workers', key)}: {exc}") from None


__all__ = ["TASK_ANNOTATIONS", "TaskOptions", "TaskOptionsOf", "call_annotations",
           "fusion_kept_off", "graph_annotations", "unoptimised_annotations"]

