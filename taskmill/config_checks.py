"""Converters for option values, for :func:`taskmill.config.read`.

Theory of operation
-------------------
An option's value may come from YAML (already a number or a list), from an
environment variable (a Python literal, or else the raw string) or from
``taskmill.config.set`` (anything).  Each converter here accepts the forms a
user would write for one kind of option and returns the one type the code
uses, or raises ValueError saying what is expected;
:func:`taskmill.config.read` adds the option's name, value and origin to
that message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from taskmill.units import parse_bytes, parse_seconds

_OFF = ("off", "false", "none", "no", "")
_ON = ("on", "true", "yes", "1")


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError("expected a number") from None
    if isinstance(value, (int, float)):
        return float(value)
    raise ValueError(f"expected a number, not {type(value).__name__}")


def seconds(value: Any) -> float:
    """A duration in seconds > 0 (a number, or a string of one)."""
    try:
        result = _number(value)
    except ValueError:
        result = -1.0
    if not result > 0:
        raise ValueError("give a number of seconds > 0")
    return result


def delay(value: Any) -> float:
    """A delay in seconds >= 0 (a number, or a string of one; 0: at once)."""
    try:
        result = _number(value)
    except ValueError:
        result = -1.0
    if not result >= 0:
        raise ValueError("give a number of seconds >= 0 (0: at once)")
    return result


def duration(value: Any) -> float | None:
    """A duration ("90s", "5m", "1h" or seconds) >= 0; ``off``/``false``/None give None (never)."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in _OFF):
        return None
    result = parse_seconds(value)  # its ValueError says what is expected
    if result < 0:
        raise ValueError("give a duration >= 0 such as '90s', '5m' or '1h', or null")
    return result


def fraction(value: Any) -> float:
    """A fraction of the memory limit between 0 and 1.5; ``off``/``false``/None give 0 (disabled)."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in _OFF):
        return 0.0
    try:
        result = _number(value)
    except ValueError:
        raise ValueError("expected a fraction of the memory limit such as 0.8, or 'off'") from None
    if not 0.0 <= result <= 1.5:
        raise ValueError("expected a fraction of the memory limit between 0 and 1.5")
    return result


def count(value: Any) -> int:
    """A whole number >= 0."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError("expected a whole number >= 0")


def boolean(value: Any) -> bool:
    """True/False, 1/0, or a string such as ``yes``, ``off``, ``1``, ``0``."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _OFF + ("0",):
        return False
    if isinstance(value, str) and value.strip().lower() in _ON:
        return True
    raise ValueError("expected true or false (or 1 / 0)")


def size(value: Any) -> int:
    """A number of bytes > 0, or a size such as ``"512MiB"``."""
    if isinstance(value, bool):
        raise ValueError("expected a number of bytes or a size such as '512MiB'")
    result = parse_bytes(value)
    if result <= 0:
        raise ValueError("expected a size > 0")
    return result


def size_or_off(value: Any) -> int:
    """A number of bytes >= 0, or a size such as ``"256MiB"``; 0, ``off`` or None: none."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in _OFF):
        return 0
    expected = "expected a number of bytes >= 0, a size such as '256MiB', or 'off'"
    if isinstance(value, bool):
        raise ValueError(expected)
    try:
        result = parse_bytes(value)
    except (ValueError, TypeError):
        raise ValueError(expected) from None
    if result < 0:
        raise ValueError(expected)
    return result


def modules(value: Any) -> tuple[str, ...]:
    """Module names: a list, or one comma-separated string."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not all(isinstance(m, str) for m in value):
        raise ValueError("expected a list of module names (or one comma-separated string)")
    return tuple(m.strip() for m in value if m.strip())


def log_level(value: Any) -> str:
    """A level name of the logging module (any case), upper-cased."""
    if isinstance(value, str) and isinstance(logging.getLevelName(value.upper()), int):
        return value.upper()
    raise ValueError("expected a log level: DEBUG, INFO, WARNING, ERROR or CRITICAL")


def directory(value: Any) -> str | None:
    """A directory path, or None (empty) for the default."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    raise ValueError("expected a directory path or null")


def choice(*allowed: str) -> Callable[[Any], str]:
    """A converter accepting one of ``allowed`` strings (any case)."""
    def check(value: Any) -> str:
        if isinstance(value, str) and value.lower() in allowed:
            return value.lower()
        raise ValueError(f"expected one of {', '.join(allowed)}")
    return check
