"""Import heavy libraries in a worker process before its first task needs them.

A task's first call in a fresh worker process pays for the imports its
function and arguments pull in when they are unpickled: ``numpy`` and
``dask`` alone cost about 0.4 s, on the critical path of the first
computation.  A worker process therefore imports them in a background thread
as soon as it starts, while it is still idle: ``numpy`` and ``dask`` when
installed, plus the comma-separated modules in ``$TASKMILL_PRELOAD`` (for
users' own heavy libraries; a module that fails to import is logged and
skipped).

Tasks do not wait for the warm-up: a task that needs a module the warm-up
thread is importing blocks on Python's per-module import lock until it is
ready, then goes on with everything imported so far.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import threading

logger = logging.getLogger("taskmill.worker")

DEFAULT_MODULES = ("numpy", "dask")


def modules_to_preload() -> list[str]:
    """The default modules that are installed, then those of ``$TASKMILL_PRELOAD``."""
    extra = [m.strip() for m in os.environ.get("TASKMILL_PRELOAD", "").split(",") if m.strip()]
    found = [m for m in DEFAULT_MODULES if importlib.util.find_spec(m) is not None]
    return found + [m for m in extra if m not in found]


def start_warm_imports(modules: list[str]) -> threading.Thread | None:
    """Import ``modules`` one after the other in a daemon thread."""
    if not modules:
        return None
    thread = threading.Thread(target=_import_all, args=(modules,), name="taskmill-warmup",
                              daemon=True)
    thread.start()
    return thread


def _import_all(modules: list[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a user's preload: report and go on
            logger.warning("could not preload module %r: %s: %s", name, type(exc).__name__, exc)
