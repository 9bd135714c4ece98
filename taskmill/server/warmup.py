"""Import heavy libraries in a worker process before its first task needs them.

A task's first call in a fresh worker process pays for the imports its
function and arguments pull in when they are unpickled: ``numpy`` and
``dask`` alone cost about 0.4 s, on the critical path of the first
computation.  A worker process therefore imports them in a background thread
while it is idle: ``numpy`` and ``dask`` when installed, plus the modules of
option ``worker.preload`` (for users' own heavy libraries: a list, or the
comma-separated ``$TASKMILL_PRELOAD``; a module that fails to import is
logged and skipped).

The warm-up starts ``worker.warmup-delay`` (default 1 s) after the worker
registered, not at once: while a cluster starts, its processes share the
machine's cores, and 0.3 s of imports in each fresh worker would slow the
start of the others, and the first tasks, which usually arrive within that
second.  A first task that needs numpy imports it itself, as it would have
waited for the warm-up to import it.

Two threads importing one package at once are not safe: Python's per-module
locks see a deadlock between numpy's interdependent submodules and hand one
thread a partially initialised module ("cannot import name 'asanyarray' from
partially initialized module 'numpy._core.numeric'"), which broke the first
scatter of an array in one fresh worker out of two.  So from registration
until the warm-up ends, payloads are unpickled by a gated loader (installed
with :func:`taskmill.protocol.serialize.set_loads`), and imports take turns:
the warm-up holds the gate's lock while it imports each module, and a
pickle that names a class or function of a module not imported when the
gate was set up (or imports one, as cloudpickle's by-value functions do with
``subimport``) holds it while it does.  A payload that needs nothing new does
not take the lock, and one that does waits at most for the module the
warm-up is importing at that moment.  When the warm-up ends, plain
``pickle.loads`` comes back.  (A task that runs ``import`` itself while the
warm-up runs is not gated.)
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import logging
import pickle
import sys
import threading
from collections.abc import Callable
from typing import Any

from taskmill import config, config_checks
from taskmill.protocol.serialize import set_loads

logger = logging.getLogger("taskmill.worker")

DEFAULT_MODULES = ("numpy", "dask")

#: cloudpickle's functions that import a module while a by-value function is unpickled
_IMPORTING_FUNCTIONS = {("cloudpickle.cloudpickle", "subimport"),
                        ("cloudpickle.cloudpickle", "dynamic_subimport")}


def warmup_delay() -> float:
    """Seconds from registration to the start of the warm-up (option ``worker.warmup-delay``)."""
    return config.read("worker.warmup-delay", config_checks.delay)


def modules_to_preload() -> list[str]:
    """The default modules that are installed, then those of option ``worker.preload``."""
    extra = config.read("worker.preload", config_checks.modules)
    found = [m for m in DEFAULT_MODULES if importlib.util.find_spec(m) is not None]
    return found + [m for m in extra if m not in found]


def start_warm_imports(modules: list[str], delay: float = 0.0) -> threading.Thread | None:
    """Import ``modules`` one after the other in a daemon thread, ``delay``
    seconds from now; from now on, payloads that import something take turns
    with it."""
    if not modules:
        return None
    gate = ImportGate()
    set_loads(gate.loads)
    thread = threading.Timer(delay, _import_all, args=(modules, gate))
    thread.name, thread.daemon = "taskmill-warmup", True
    thread.start()
    return thread


class ImportGate:
    """Makes unpickling that would import a module take turns with the warm-up."""

    def __init__(self) -> None:
        self.settled = frozenset(sys.modules)  # fully imported before the gate was set up
        self.done = threading.Event()
        #: held by the warm-up while it imports a module, and by a payload while it imports one
        #: (reentrant: a module imported by a payload may unpickle another one)
        self.turn = threading.RLock()

    def open(self) -> None:
        """The warm-up is over: plain ``pickle.loads`` from now on."""
        set_loads(None)
        self.done.set()

    def loads(self, data: Any, *, buffers: Any = ()) -> Any:
        if self.done.is_set():
            return pickle.loads(data, buffers=buffers)
        return _GatedUnpickler(self, io.BytesIO(data), buffers=buffers).load()

    def is_settled(self, module: str) -> bool:
        """Whether ``module`` needs no turn: imported before the gate, or the warm-up is over."""
        return module in self.settled or self.done.is_set()


class _GatedUnpickler(pickle.Unpickler):
    def __init__(self, gate: ImportGate, file: io.BytesIO, buffers: Any) -> None:
        super().__init__(file, buffers=buffers)
        self.gate = gate

    def find_class(self, module: str, name: str) -> Any:
        if self.gate.is_settled(module):
            found = super().find_class(module, name)
        else:
            with self.gate.turn:
                found = super().find_class(module, name)
        if (module, name) in _IMPORTING_FUNCTIONS:
            return _taking_turns(self.gate, found)
        return found


def _taking_turns(gate: ImportGate, subimport: Callable[..., Any]) -> Callable[..., Any]:
    def gated(name: str, *args: Any) -> Any:
        if gate.is_settled(name):
            return subimport(name, *args)
        with gate.turn:
            return subimport(name, *args)
    return gated


def _import_all(modules: list[str], gate: ImportGate) -> None:
    try:
        for name in modules:
            with gate.turn:
                try:
                    importlib.import_module(name)
                except Exception as exc:  # a user's preload: report and go on
                    logger.warning("could not preload module %r: %s: %s", name,
                                   type(exc).__name__, exc)
    finally:
        gate.open()
