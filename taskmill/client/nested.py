"""Finding futures inside nested Python structures and putting values back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

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
