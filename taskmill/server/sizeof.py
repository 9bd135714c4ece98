"""Cheap estimates of how many bytes a value holds, without importing numpy
or pandas: we only look at attributes those libraries provide."""

from __future__ import annotations

import sys
from typing import Any


def sizeof(obj: Any) -> int:
    """Approximate size in bytes of ``obj`` (buffers counted, not copied)."""
    try:
        typ = type(obj)
        if typ is bytes or typ is bytearray:
            return len(obj) + 33
        if typ is memoryview:
            return obj.nbytes
        nbytes = getattr(obj, "nbytes", None)
        if isinstance(nbytes, int) and typ.__module__.startswith("numpy"):
            return nbytes + 100
        usage = getattr(obj, "memory_usage", None)
        if usage is not None and typ.__module__.startswith("pandas"):
            total = usage(deep=True)
            return int(total.sum() if hasattr(total, "sum") else total)
        if typ in (list, tuple, set, frozenset) and len(obj) < 1000:
            return sys.getsizeof(obj) + sum(sizeof(x) for x in obj)
        if typ is dict and len(obj) < 1000:
            return sys.getsizeof(obj) + sum(sizeof(k) + sizeof(v) for k, v in obj.items())
        return sys.getsizeof(obj)
    except Exception:
        return 64
