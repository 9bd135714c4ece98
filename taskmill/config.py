"""taskmill's options: ``taskmill.config.get(key)`` and ``taskmill.config.set({...})``.

Theory of operation
-------------------
Every option of taskmill (timeouts, memory thresholds, log level...) has a
dotted key, such as ``comm.timeouts.connect``, and a default in
``taskmill/taskmill.yaml``; docs/configuration.md lists them.  A value comes
from, highest precedence first: :func:`set` in this process (or in the
process whose nanny started this worker process), an environment variable
(``TASKMILL_COMM__TIMEOUTS__CONNECT``, or the older name
``TASKMILL_CONNECT_TIMEOUT``), a YAML file (``~/.config/taskmill/`` over
``/etc/taskmill/``), the defaults.  :mod:`taskmill.config_store` reads them.

Speed.  ``import taskmill`` imports only this module: the store (donfig and
PyYAML, about 15 ms) is built on the first :func:`get`, :func:`read` or
:func:`set`.  Values are cached per key (:func:`read` caches them checked and
converted, which is what a timeout read per request uses); the caches are
dropped whenever :func:`set` takes effect or ends, or :func:`refresh` runs.

Environment variables and files are read when the store is built and on
:func:`refresh`, as dask reads ``DASK_*`` at import: a variable changed
later in the same process (``monkeypatch.setenv``) takes effect after
:func:`refresh`; a process started later reads it anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from taskmill.config_store import Store

T = TypeVar("T")

_lock = threading.RLock()
_store: Store | None = None
#: the option sets in force, oldest first (their values laid over the store's reading)
_overrides: list[Override] = []
#: key -> value, and key -> checked value, since the last change
_values: dict[str, Any] = {}
_checked: dict[str, Any] = {}


class Override:
    """Options set by :func:`set`: in force from the call on; as a context
    manager, only until the end of the ``with`` block."""

    def __init__(self, options: dict[str, Any], origin: str) -> None:
        self.options = options
        self.origin = origin

    def __enter__(self) -> Override:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with _lock:
            if self in _overrides:
                _overrides.remove(self)
                _rebuild()


def _load() -> Store:
    """The store, built on first use (with the options inherited from a parent process)."""
    global _store
    store = _store
    if store is None:
        with _lock:
            if _store is None:
                from taskmill.config_store import Store, inherited_overrides

                _store = Store()
                inherited = [Override(o, "taskmill.config.set in the parent process")
                             for o in inherited_overrides()]
                _overrides[:0] = inherited
                _rebuild()
            store = _store
    return store


def _rebuild() -> None:
    """Lay the overrides over the store's reading and drop the caches (lock held)."""
    global _values, _checked
    store = _store
    if store is None:
        return
    store.rebuild([o.options for o in _overrides])
    _values, _checked = {}, {}


def get(key: str) -> Any:
    """The value of option ``key`` (e.g. ``"comm.timeouts.connect"``; a
    section such as ``"comm.timeouts"`` gives a dict).  Raises KeyError
    naming the nearest options when there is no option ``key``."""
    try:
        return _values[key]
    except KeyError:
        with _lock:
            value = _values[key] = _load().get(key)
        return value


def read(key: str, check: Callable[[Any], T]) -> T:
    """``check(get(key))``, cached until the configuration changes: how
    taskmill reads an option where it is used (a timeout, once per request).
    ``check`` converts the value or raises ValueError saying what is
    expected; that error is raised again naming the option, its value and
    where the value came from."""
    try:
        return _checked[key]  # type: ignore[no-any-return]
    except KeyError:
        pass
    with _lock:
        value = get(key)
        try:
            result = _checked[key] = check(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"option {key} = {value!r} from {origin(key)}: {exc}") from None
    return result


def set(options: Mapping[str, Any] | None = None, **kwargs: Any) -> Override:
    """Set options from now on: ``set({"comm.timeouts.connect": 20})``, or
    ``set(comm__timeouts__connect=20)`` (``__`` for a dot).  As a context
    manager (``with taskmill.config.set(...):``) they are in force only in
    the block.  The values win over environment, files and defaults, also in
    the worker processes that nannies of this process start later.  Raises
    KeyError for a key that is no option."""
    given = dict(options or {})
    given.update({k.replace("__", "."): v for k, v in kwargs.items()})
    with _lock:
        _load().check_keys(given)
        override = Override(given, "taskmill.config.set")
        _overrides.append(override)
        _rebuild()
    return override


def refresh() -> None:
    """Read the YAML files and the environment again (what :func:`set`
    gave stays in force)."""
    global _store
    with _lock:
        if _store is None:
            _load()  # the first reading (with what a parent process set)
            return
        from taskmill.config_store import Store

        _store = Store()
        _rebuild()


def origin(key: str) -> str:
    """Where the value of option ``key`` came from, in words (a file's path,
    an environment variable, ``taskmill.config.set``, the defaults)."""
    from taskmill.config_store import flatten, normal

    with _lock:
        store = _load()
        store.get(key)
        wanted = normal(key).split(".")
        for override in reversed(_overrides):  # the last one setting key, in or above it, wins
            for given in flatten(override.options):
                parts = normal(given).split(".")
                if parts[:len(wanted)] == wanted or wanted[:len(parts)] == parts:
                    return store.origin(key, override.origin)
        return store.origin(key, None)


def entries() -> list[tuple[str, Any, str]]:
    """``(key, value, where it came from)`` of every option, sorted by key."""
    from taskmill.config_store import leaves

    with _lock:
        config = _load().donfig.config
        return [(key, value, origin(key)) for key, value in sorted(leaves(config))]


def paths() -> list[str]:
    """The files and directories searched for YAML files, lowest precedence first."""
    return _load().paths


def inheritable() -> dict[str, str]:
    """Environment variables that give a child process the options set here
    (empty when none are): a nanny adds them to its worker's environment."""
    with _lock:
        if not _overrides:
            return {}
        from taskmill.config_store import INHERIT_VARIABLE, serialize_overrides

        return {INHERIT_VARIABLE: serialize_overrides([o.options for o in _overrides])}
