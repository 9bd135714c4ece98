"""Import heavy libraries in a worker process before its first task needs them.

A task's first call in a fresh worker process pays for the imports its
function and arguments pull in when they are unpickled: ``numpy`` and
``dask`` alone cost about 0.4 s, on the critical path of the first
computation.  A worker process therefore imports them in a background thread
as soon as it starts, while it is still idle: ``numpy`` and ``dask`` when
installed, plus the modules of option ``worker.preload`` (for users' own
heavy libraries: a list, or the comma-separated ``$TASKMILL_PRELOAD``; a
module that fails to import is logged and skipped).

Two threads importing one package at once are not safe: Python's per-module
locks see a deadlock between numpy's interdependent submodules and hand one
thread a partially initialised module ("cannot import name 'asanyarray' from
partially initialized module 'numpy._core.numeric'"), which broke the first
scatter of an array in one fresh worker out of two.  So while the warm-up
runs, payloads are unpickled by a gated loader (installed with
:func:`taskmill.protocol.serialize.set_loads`): a pickle that names a class or
function of a module not imported when the warm-up began (or imports one, as
cloudpickle's by-value functions do with ``subimport``) first waits for the
warm-up to end.  A payload that needs nothing new, such as the first small
task of a benchmark, does not wait.  When the warm-up ends, plain
``pickle.loads`` comes back.  (A task that runs ``import`` itself during the
first half second is not gated.)
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


def modules_to_preload() -> list[str]:
    """The default modules that are installed, then those of option ``worker.preload``."""
    extra = config.read("worker.preload", config_checks.modules)
    found = [m for m in DEFAULT_MODULES if importlib.util.find_spec(m) is not None]
    return found + [m for m in extra if m not in found]


def start_warm_imports(modules: list[str]) -> threading.Thread | None:
    """Import ``modules`` one after the other in a daemon thread; payloads that
    would import something meanwhile wait for it to finish."""
    if not modules:
        return None
    gate = ImportGate()
    set_loads(gate.loads)
    thread = threading.Thread(target=_import_all, args=(modules, gate), name="taskmill-warmup",
                              daemon=True)
    thread.start()
    return thread


class ImportGate:
    """Holds back unpickling that would import a module until the warm-up ends."""

    def __init__(self) -> None:
        self.settled = frozenset(sys.modules)  # fully imported before the warm-up began
        self.done = threading.Event()

    def open(self) -> None:
        """The warm-up is over: plain ``pickle.loads`` from now on."""
        set_loads(None)
        self.done.set()

    def loads(self, data: Any, *, buffers: Any = ()) -> Any:
        if self.done.is_set():
            return pickle.loads(data, buffers=buffers)
        return _GatedUnpickler(self, io.BytesIO(data), buffers=buffers).load()

    def wait_unless_settled(self, module: str) -> None:
        if module not in self.settled:
            self.done.wait()


class _GatedUnpickler(pickle.Unpickler):
    def __init__(self, gate: ImportGate, file: io.BytesIO, buffers: Any) -> None:
        super().__init__(file, buffers=buffers)
        self.gate = gate

    def find_class(self, module: str, name: str) -> Any:
        self.gate.wait_unless_settled(module)
        found = super().find_class(module, name)
        if (module, name) in _IMPORTING_FUNCTIONS:
            return _waiting_first(self.gate, found)
        return found


def _waiting_first(gate: ImportGate, subimport: Callable[..., Any]) -> Callable[..., Any]:
    def gated(name: str, *args: Any) -> Any:
        gate.wait_unless_settled(name)
        return subimport(name, *args)
    return gated


def _import_all(modules: list[str], gate: ImportGate) -> None:
    try:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception as exc:  # a user's preload: report and go on
                logger.warning("could not preload module %r: %s: %s", name, type(exc).__name__, exc)
    finally:
        gate.open()
