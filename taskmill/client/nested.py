"""Finding futures inside nested Python structures and putting values back.

``futures_of(x)`` is dask.distributed's: the Futures inside ``x``, which may be
a Future, a persisted dask collection (whose graph holds the Futures of its
keys), or lists, tuples, sets and dicts of them, nested.  It never imports
dask: where dask is not imported yet, nothing can be a dask collection.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from taskmill.client.future import Future
from taskmill.core.taskref import map_nested

_MISSING = object()


def collect_futures(obj: Any, is_future: Callable[[Any], bool]) -> list[Any]:
    """Every distinct future inside ``obj`` (lists, tuples, dicts, sets)."""
    found: dict[str, Any] = {}

    def keep(fut: Any) -> Any:
        found.setdefault(fut.key, fut)
        return fut

    map_nested(obj, keep, is_future)
    return list(found.values())


def rebuild(obj: Any, is_future: Callable[[Any], bool], values: Mapping[str, Any],
            skip_missing: bool = False) -> Any:
    """``obj`` with each future replaced by ``values[future.key]``; with
    ``skip_missing``, futures without a value are left out of lists/dicts."""
    if not skip_missing:
        return map_nested(obj, lambda f: values[f.key], is_future)
    out = map_nested(obj, lambda f: values.get(f.key, _MISSING), is_future)
    return _drop_missing(out)


def _drop_missing(obj: Any) -> Any:
    typ = type(obj)
    if typ is list or typ is tuple or typ is set or typ is frozenset:
        return typ(_drop_missing(x) for x in obj if x is not _MISSING)
    if typ is dict:
        return {k: _drop_missing(v) for k, v in obj.items() if v is not _MISSING}
    return obj


def futures_of(obj: Any) -> list[Future]:
    """The Futures inside ``obj``, each once, in the order found: ``obj`` may
    be a Future, a dask collection (a persisted one holds the Futures of its
    keys; one not persisted holds none), or lists, tuples, sets and dicts
    (their values) of those, nested."""
    dask = sys.modules.get("dask")
    is_collection = dask.is_dask_collection if dask is not None else None
    found: dict[int, Future] = {}
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, Future):
            found.setdefault(id(x), x)
        elif type(x) in (list, tuple, set, frozenset):
            stack.extend(reversed(list(x)))
        elif type(x) is dict:
            stack.extend(reversed(list(x.values())))
        elif is_collection is not None and is_collection(x):
            stack.extend(reversed(list(x.__dask_graph__().values())))
    return list(found.values())


def futures_in(obj: Any) -> list[Future]:
    """:func:`futures_of`, also over any other iterable of them (a generator,
    ``dict.values()``): what the functions that take "futures" accept."""
    if isinstance(obj, Future) or type(obj) in (list, tuple, set, frozenset, dict):
        return futures_of(obj)
    dask = sys.modules.get("dask")
    if dask is not None and dask.is_dask_collection(obj):
        return futures_of(obj)
    try:
        items = list(obj)
    except TypeError:
        raise TypeError(f"expected Futures, persisted dask collections or lists of them, "
                        f"not {type(obj).__name__}") from None
    return futures_of(items)
