"""Where taskmill's options come from: defaults, YAML files, the environment.

Theory of operation
-------------------
:mod:`taskmill.config` is the public face and the cache; this module does the
reading, on donfig (dask's configuration system as a library), and is only
imported on the first use of an option, so that ``import taskmill`` does not
pay for donfig and PyYAML.

A :class:`Store` holds one donfig ``Config("taskmill")`` built from, lowest
precedence first:

1. the defaults, ``taskmill/taskmill.yaml`` (shipped with the package);
2. YAML files in donfig's search path: ``/etc/taskmill/`` (or
   ``$TASKMILL_ROOT_CONFIG``), ``<prefix>/etc/taskmill/``,
   ``~/.config/taskmill/`` and ``$TASKMILL_CONFIG``, later ones winning;
3. environment variables, through :func:`option_variables`:
   ``TASKMILL_SECTION__KEY`` (``__`` separates levels, ``_`` stands for
   ``-``, the value is a Python literal or else a string) for the sections of
   the defaults, and the older names of :data:`OLD_VARIABLES`, which set the
   same options (the new name wins when both are set).  Other ``TASKMILL_*``
   variables (``TASKMILL_TOKEN``, ``TASKMILL_TLS_*``...) are not options.

The result of those three is kept (``collected``); the options given to
``taskmill.config.set`` are laid over a copy of it in the order they were
set (:meth:`Store.rebuild`), so ending a ``with`` block rebuilds instead of
patching back.  The values set in a process travel to the worker processes
its nannies start as ``$TASKMILL_INTERNAL_INHERIT_CONFIG`` (like dask's
``DASK_INTERNAL_INHERIT_CONFIG``, but laid over the child's own files and
environment instead of under them): :func:`serialize_overrides`.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import donfig
import yaml
from donfig.config_obj import ConfigSet, canonical_name, collect_yaml

DEFAULTS_FILE = Path(__file__).with_name("taskmill.yaml")
PREFIX = "TASKMILL_"
#: the values set in the parent process, for the worker processes of a nanny
INHERIT_VARIABLE = "TASKMILL_INTERNAL_INHERIT_CONFIG"

#: the environment variables that set an option before the configuration
#: existed, and the option each sets now
OLD_VARIABLES: dict[str, str] = {
    "TASKMILL_CONNECT_TIMEOUT": "comm.timeouts.connect",
    "TASKMILL_PEER_CONNECT_TIMEOUT": "comm.timeouts.peer-connect",
    "TASKMILL_REQUEST_TIMEOUT": "comm.timeouts.request",
    "TASKMILL_DATA_TIMEOUT": "comm.timeouts.data",
    "TASKMILL_RETIRE_TIMEOUT": "comm.timeouts.retire",
    "TASKMILL_RECONNECT_TIMEOUT": "comm.timeouts.reconnect",
    "TASKMILL_CLIENT_RECONNECT_TIMEOUT": "comm.timeouts.client-reconnect",
    "TASKMILL_HELD_KEYS_GRACE": "scheduler.held-keys-grace",
    "TASKMILL_MAX_MESSAGE_BYTES": "comm.max-message-bytes",
    "TASKMILL_EVENT_LOOP": "comm.event-loop",
    "TASKMILL_ALLOWED_FAILURES": "scheduler.allowed-failures",
    "TASKMILL_LEASE_TIMEOUT": "scheduler.lease-timeout",
    "TASKMILL_MEMORY_TARGET": "worker.memory.target",
    "TASKMILL_MEMORY_SPILL": "worker.memory.spill",
    "TASKMILL_MEMORY_PAUSE": "worker.memory.pause",
    "TASKMILL_MEMORY_TERMINATE": "worker.memory.terminate",
    "TASKMILL_MEMORY_MONITOR_INTERVAL": "worker.memory.monitor-interval",
    "TASKMILL_PRELOAD": "worker.preload",
    "TASKMILL_LOG_LEVEL": "logging.level",
    "TASKMILL_LOG_LENGTH": "logging.length",
    "TASKMILL_STRICT": "debug.strict",
    "TASKMILL_STIMULUS_DIR": "debug.stimulus-dir",
}


def load_defaults() -> dict[str, Any]:
    """The defaults shipped with taskmill, as a nested dict."""
    with open(DEFAULTS_FILE) as f:  # libyaml's loader when there is one: a third of the time
        defaults: dict[str, Any] = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return defaults


def normal(key: str) -> str:
    """``key`` with ``_`` written as ``-``, as the defaults spell every option."""
    return key.replace("_", "-")


def variable_name(key: str) -> str:
    """The environment variable of option ``key``: ``TASKMILL_SECTION__KEY``."""
    return PREFIX + key.upper().replace(".", "__").replace("-", "_")


def leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of every option below ``tree``."""
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping) and value:
            yield from leaves(value, key + ".")
        else:
            yield key, value


def flatten(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options given as ``{"comm.timeouts": {"connect": 5}}`` or
    ``{"comm.timeouts.connect": 5}``, as ``{"comm.timeouts.connect": 5}``."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, Mapping) and value:
            out.update({f"{key}.{k}": v for k, v in leaves(value)})
        else:
            out[key] = value
    return out


def option_variables(sections: set[str]) -> dict[str, str]:
    """The ``TASKMILL_*`` variables of ``os.environ`` that set options, by
    their new names, each with the variable it was read from: an old name
    (ignored when empty, as before) or the new name itself, which wins."""
    found: dict[str, str] = {}
    for old, key in OLD_VARIABLES.items():
        if os.environ.get(old, "").strip():
            found[variable_name(key)] = old
    for name in os.environ:
        if name.startswith(PREFIX) and "__" in name and name != INHERIT_VARIABLE:
            if normal(name[len(PREFIX):].split("__", 1)[0].lower()) in sections:
                found[name] = name
    return found


class Store:
    """One reading of the defaults, files and environment (``collected``)
    and the options set over it (``config``)."""

    def __init__(self) -> None:
        self.defaults = load_defaults()
        self.known = {normal(k) for k, _ in leaves(self.defaults)}
        #: new name -> the variable it was read from, as the environment was when the store was built
        self.variables = option_variables(set(self.defaults))
        environment = {name: os.environ[source] for name, source in self.variables.items()}
        self.donfig = donfig.Config("taskmill", defaults=[self.defaults], env=environment)
        self.collected = copy.deepcopy(self.donfig.config)
        self._warn_unknown()

    @property
    def paths(self) -> list[str]:
        """The files and directories searched for YAML files, lowest precedence first."""
        return list(self.donfig.paths)

    def files(self) -> list[str]:
        """The YAML files found in :attr:`paths`, lowest precedence first."""
        found: list[str] = []
        for path in self.paths:
            if os.path.isdir(path):
                found += sorted(os.path.join(path, p) for p in os.listdir(path)
                                if os.path.splitext(p)[1].lower() in (".yaml", ".yml", ".json"))
            elif os.path.exists(path):
                found.append(path)
        return found

    def rebuild(self, overrides: list[Mapping[str, Any]]) -> None:
        """The collected options with ``overrides`` laid over them in order."""
        config = copy.deepcopy(self.collected)
        for options in overrides:  # leaf by leaf: setting a section keeps its other options
            ConfigSet(config, nullcontext(), {}, flatten(options))
        self.donfig.config = config

    def get(self, key: str) -> Any:
        """The value of option ``key`` (a section gives a dict); KeyError
        naming the closest options when there is no such option."""
        try:
            return self.donfig.get(key)
        except (KeyError, TypeError, IndexError):
            raise KeyError(self.unknown(key)) from None

    def check_keys(self, options: Mapping[str, Any]) -> None:
        """KeyError unless every option in ``options`` exists."""
        for key in flatten(options):
            if normal(key) not in self.known:
                raise KeyError(self.unknown(key))

    def unknown(self, key: str) -> str:
        """Why ``key`` is not an option, with the nearest ones."""
        near = difflib.get_close_matches(normal(key), sorted(self.known), n=3)
        hint = f"; did you mean {' or '.join(near)}?" if near else \
            "; `taskmill config list` shows every option"
        return f"taskmill has no option {key!r}{hint}"

    def origin(self, key: str, overridden: str | None) -> str:
        """Where the value of option ``key`` came from, for messages;
        ``overridden`` names the ``set`` that gave it, if one did."""
        if overridden is not None:
            return overridden
        name = variable_name(normal(key))
        source = self.variables.get(name)
        if source == name:
            return f"the environment variable {name}"
        if source is not None:
            return f"the environment variable {source} (the old name of {normal(key)})"
        for path in reversed(self.files()):
            tree: Any = collect_yaml([path])
            if tree and _has(tree[0], key):
                return f"the file {path}"
        return "the defaults (taskmill/taskmill.yaml)"

    def _warn_unknown(self) -> None:
        """A warning for each variable or file entry that sets no option (a typo, most likely)."""
        found = [(f"the environment variable {name}", normal(name[len(PREFIX):].lower().replace("__", ".")))
                 for name in self.variables]
        for path in self.files():
            for tree in collect_yaml([path]):
                found += [(f"{key!r} in {path}", normal(key)) for key, value in leaves(tree)
                          if not isinstance(value, Mapping)]  # an empty section is no typo
        for where, key in found:
            if key not in self.known:
                warnings.warn(f"{where} sets no taskmill option: {self.unknown(key)}", stacklevel=4)


def _has(tree: Any, key: str) -> bool:
    for part in key.split("."):
        if not isinstance(tree, Mapping):
            return False
        name = canonical_name(part, tree)
        if name not in tree:
            return False
        tree = tree[name]
    return True


def serialize_overrides(overrides: list[Mapping[str, Any]]) -> str:
    """The options set in this process, as the text of :data:`INHERIT_VARIABLE`
    (JSON, as dask's); TypeError naming an option whose value JSON cannot hold."""
    flat = [flatten(o) for o in overrides]
    for options in flat:
        for key, value in options.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise TypeError(f"option {key} = {value!r} (set with taskmill.config.set) cannot be "
                                f"passed on to worker processes: give a number, string, boolean, "
                                f"list or dict") from None
    return donfig.serialize(flat)


def inherited_overrides() -> list[dict[str, Any]]:
    """The options the parent process set (:data:`INHERIT_VARIABLE`), in order."""
    text = os.environ.get(INHERIT_VARIABLE)
    if not text:
        return []
    try:
        overrides = donfig.deserialize(text)
    except ValueError as exc:
        raise ValueError(f"${INHERIT_VARIABLE} is not what a taskmill nanny writes "
                         f"(unset it): {exc}") from None
    return list(overrides)
