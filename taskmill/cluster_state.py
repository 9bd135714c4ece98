"""A whole cluster's state in one file, for bug reports: ``Executor.dump_cluster_state(path)``.

Theory of operation
-------------------
When a computation stalls or misbehaves, the first question is what each
process believed.  ``e.dump_cluster_state(path)`` asks the scheduler, which
asks every worker, for a plain snapshot of its state machine and writes them,
with the scheduler's and the workers' recent log lines, into one JSON file
(gzip-compressed when ``path`` ends with ``.gz``); :func:`load_cluster_state`
reads it back as nested dicts.  Being JSON, the file also opens in any viewer
and can be attached to an issue as it is.

A snapshot (:func:`snapshot_record`) lists every field of a record (the
``__slots__`` of its classes).  A record met inside another (a task's
dependencies, a task's worker) is written as its name (a task's key, a
worker's address), so the snapshot has no cycles and each record is written
once.  Pickled payloads (functions, arguments, results) are never unpickled
nor written: only their size.  Sets become sorted lists, tuples lists, other
objects their ``repr``.

The file's shape (``"format": 1``)::

    {"format": 1, "time": ..., "scheduler": {"address", "tasks": {key: {...}},
     "workers": {address: {...}}, "clients": {id: {...}}, "info": {...}, "logs": [[level, line]]},
     "workers": {address: {"tasks": {key: {...}}, "executing": [...], "logs": [...]}
                 | {"error": "why it did not answer"}}}
"""

from __future__ import annotations

import json
from typing import Any

from taskmill.protocol.serialize import Serialized

__all__ = ["FORMAT", "load_cluster_state", "snapshot_record", "snapshot_records", "write_cluster_state"]

FORMAT = 1

_NAMED_BY = ("key", "address", "client")  # how a record met inside another is written


def _fields(record: Any) -> list[str]:
    names: list[str] = []
    for cls in type(record).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name not in names and not name.startswith("__"):
                names.append(name)
    return names


def _name_of(record: Any) -> Any:
    for attribute in _NAMED_BY:
        value = getattr(record, attribute, None)
        if isinstance(value, str):
            return value
    return repr(record)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Serialized):
        return {"serialized bytes": value.nbytes}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytes": len(value)}
    if isinstance(value, dict):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        items = [_plain(v) for v in value]
        return sorted(items, key=repr)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if _fields(value):
        return _name_of(value)  # another record: by name
    return repr(value)


def snapshot_record(record: Any) -> dict[str, Any]:
    """Every field of ``record`` as plain data (records inside it by name)."""
    return {name: _plain(getattr(record, name, None)) for name in _fields(record)}


def snapshot_records(records: dict[Any, Any]) -> dict[str, dict[str, Any]]:
    """``{name: snapshot}`` of a mapping of records."""
    return {str(name): snapshot_record(rec) for name, rec in records.items()}


def write_cluster_state(state: dict[str, Any], path: str) -> None:
    """Write a dump to ``path`` (gzip-compressed when it ends with ``.gz``)."""
    text = json.dumps(state, indent=1, sort_keys=True, default=repr)
    import gzip  # here, not at the top: import taskmill stays light

    if path.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


def load_cluster_state(path: str) -> dict[str, Any]:
    """Read a file written by ``Executor.dump_cluster_state``: the scheduler's
    and every worker's state as nested dicts (see the module docstring for
    the shape).  A file of another format is a ``ValueError``."""
    import gzip

    opener: Any = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        state: dict[str, Any] = json.load(f)
    if state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a taskmill cluster state of format {FORMAT} "
                         f"(format {state.get('format')!r}); write it with Executor.dump_cluster_state")
    return state
