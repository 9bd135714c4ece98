"""Abstract worker resources: what a worker declares and what a task asks for.

A worker declares totals of named, abstract resources (``GPU=2``,
``MEMORY=10e9``); a task asks for amounts (``resources={"GPU": 1}``).  The
names mean nothing to taskmill: the scheduler only counts (see
``taskmill.core.scheduler.resource_index``).  This module holds the pure checks
shared by the client, the command line, the worker and the scheduler, so a
bad specification fails where it is written, with the same message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

#: A canonical requirement: ``(name, amount)`` pairs sorted by name (hashable).
ResourceSpec = tuple[tuple[str, float], ...]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_FORM = "NAME=AMOUNT pairs separated by commas or spaces, e.g. \"GPU=2,MEMORY=10e9\""


def check_resources(resources: Mapping[str, Any] | None, what: str,
                    allow_zero: bool = False) -> dict[str, float]:
    """``resources`` as ``{name: float}``, or ValueError/TypeError naming
    ``what`` ("task resources", "worker resources") and the bad entry.
    Amounts must be finite and positive (or zero with ``allow_zero``: a
    worker may declare none of something)."""
    if resources is None:
        return {}
    if not isinstance(resources, Mapping):
        raise TypeError(f"{what} must be a dict like {{'GPU': 1}}, not {type(resources).__name__}")
    out: dict[str, float] = {}
    for name, amount in resources.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{what}: bad resource name {name!r} (use letters, digits, '_', '.', "
                             "'-', starting with a letter or '_')")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise TypeError(f"{what}: amount of {name!r} must be a number, not {amount!r}")
        value = float(amount)
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            need = "zero or more" if allow_zero else "more than zero"
            raise ValueError(f"{what}: amount of {name!r} must be finite and {need}, not {amount!r}")
        out[name] = value
    return out


def parse_resources(text: str) -> dict[str, float]:
    """Parse a worker's ``--resources`` option: ``"GPU=2,MEMORY=10e9"`` (commas
    and/or spaces between pairs) -> ``{"GPU": 2.0, "MEMORY": 1e10}``.  An empty
    string declares nothing.  Raises ValueError saying what was wrong and the
    expected form."""
    out: dict[str, float] = {}
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        name, sep, amount = item.partition("=")
        if not sep or not name or not amount:
            raise ValueError(f"bad resource {item!r} in {text!r}: expected {_FORM}")
        try:
            value = float(amount)
        except ValueError:
            raise ValueError(f"bad amount {amount!r} for resource {name!r} in {text!r}: "
                             f"expected a number ({_FORM})") from None
        if name in out:
            raise ValueError(f"resource {name!r} is given twice in {text!r}")
        out[name] = value
    return check_resources(out, "worker resources", allow_zero=True)


def resource_spec(resources: Mapping[str, float] | None) -> ResourceSpec | None:
    """The canonical, hashable form of a task's requirement (None: none)."""
    if not resources:
        return None
    return tuple(sorted((str(k), float(v)) for k, v in resources.items()))


def format_resources(resources: Mapping[str, float] | ResourceSpec) -> str:
    """``GPU=1, MEMORY=1e+10`` for messages."""
    items = resources.items() if isinstance(resources, Mapping) else resources
    return ", ".join(f"{k}={v:g}" for k, v in items)
