"""References to other tasks' results inside a task's arguments.

The client replaces every Future found in a call's arguments (also inside
lists, tuples, dicts and sets) with a :class:`TaskRef`; the worker replaces
each TaskRef with the dependency's value just before running the call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


class TaskRef:
    """A placeholder for the value of ``key``."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __reduce__(self) -> tuple[type[TaskRef], tuple[str]]:
        return (TaskRef, (self.key,))

    def __repr__(self) -> str:
        return f"TaskRef({self.key!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskRef) and other.key == self.key

    def __hash__(self) -> int:
        return hash(("TaskRef", self.key))


def map_nested(obj: Any, leaf: Callable[[Any], Any], is_leaf: Callable[[Any], bool]) -> Any:
    """Rebuild ``obj`` with every ``is_leaf`` element replaced by ``leaf(el)``,
    descending into lists, tuples, dicts, sets and frozensets (exact builtin
    types only, so user subclasses and namedtuples are left alone)."""
    if is_leaf(obj):
        return leaf(obj)
    typ = type(obj)
    if typ is list or typ is tuple or typ is set or typ is frozenset:
        return typ(map_nested(x, leaf, is_leaf) for x in obj)
    if typ is dict:
        return {k: map_nested(v, leaf, is_leaf) for k, v in obj.items()}
    return obj


def substitute_refs(obj: Any, data: Mapping[str, Any]) -> Any:
    """Replace every TaskRef inside ``obj`` by ``data[ref.key]``."""
    return map_nested(obj, lambda ref: data[ref.key], lambda x: type(x) is TaskRef)
