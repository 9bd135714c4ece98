"""The open Executors of this process, most recent last (the default ones)."""

from __future__ import annotations

import threading
import weakref
from typing import Any

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
