"""The open Executors of this process, most recent last: a Future unpickled
here is rebuilt against one connected to its cluster."""

from __future__ import annotations

import threading
import weakref
from typing import Any

from taskmill.protocol.vocabulary import WantKeys

_lock = threading.Lock()
_defaults: list[weakref.ref[Any]] = []


def open_executors() -> list[Any]:
    """The open Executors of this process (those opened as defaults), most recent first."""
    with _lock:
        candidates = [r() for r in reversed(_defaults)]
    return [ex for ex in candidates if ex is not None and ex.status == "running"]


def set_default(executor: Any) -> None:
    with _lock:
        _defaults.append(weakref.ref(executor))


def unset_default(executor: Any) -> None:
    with _lock:
        _defaults[:] = [r for r in _defaults if r() is not None and r() is not executor]


def future_from_key(key: str, scheduler_address: str) -> Any:
    """Rebuild a pickled Future against an open Executor of the same cluster."""
    with _lock:
        candidates = [r() for r in reversed(_defaults)]
    for ex in candidates:
        if ex is not None and ex.status == "running" and ex.scheduler_address == scheduler_address:
            fut = ex.session.future_class(key, ex.session)
            ex.session.send(WantKeys("", ex.session.id, (key,)))
            return fut
    raise RuntimeError(
        f"cannot unpickle the Future {key!r}: no open Executor connected to {scheduler_address} "
        "in this process. Open one with Executor(address) first."
    )
