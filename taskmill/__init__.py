"""taskmill: a dynamic distributed task scheduler for Python.

``Executor`` connects to a cluster (or starts one on this machine), runs
Python calls there and returns ``Future`` objects; see docs/api.md for
the contract.  Importing taskmill does not import dask, numpy or pandas.

Every exported name loads its module on first use (a module
``__getattr__``): ``import taskmill`` itself imports nothing else, and
``from taskmill import Executor`` imports what an Executor needs.  A
process that imports a part of the package, a worker process above all
(``taskmill.server...``), no longer pays for the client's modules, which
every import of a submodule used to pull in through this file.
"""

from __future__ import annotations

import gc as _gc
import importlib as _importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the names' types, for type checkers (loaded lazily at run time)
    from taskmill import config
    from taskmill.client.actor import Actor, ActorFuture
    from taskmill.client.executor import Executor
    from taskmill.client.future import Future
    from taskmill.client.locks import Event, Lock, Semaphore
    from taskmill.client.nested import futures_of
    from taskmill.client.progress import progress
    from taskmill.client.shared import Queue, Variable
    from taskmill.client.waiting import as_completed, fire_and_forget, wait
    from taskmill.client.worker_client import (get_client, get_worker, rejoin, secede,
                                               worker_client)
    from taskmill.cluster.jobqueue import PBSCluster, SLURMCluster
    from taskmill.cluster.local import LocalCluster
    from taskmill.cluster.ssh import SSHCluster
    from taskmill.errors import (ActorLostError, FutureLostError, KilledWorker,
                                 MissingDependencyError, NoWorkersError, RemoteTaskError,
                                 SchedulerGoneError, TaskmillError)
    from taskmill.plugins import (Environ, NannyPlugin, SchedulerPlugin, UploadDirectory,
                                  WorkerPlugin)
    from taskmill.security import Security

__version__ = "0.1.0"

#: exported name -> the module that defines it, imported on first use
_LAZY = {
    **dict.fromkeys(["Actor", "ActorFuture"], "taskmill.client.actor"),
    "Executor": "taskmill.client.executor",
    "Future": "taskmill.client.future",
    **dict.fromkeys(["Event", "Lock", "Semaphore"], "taskmill.client.locks"),
    "futures_of": "taskmill.client.nested",
    "progress": "taskmill.client.progress",
    **dict.fromkeys(["Queue", "Variable"], "taskmill.client.shared"),
    **dict.fromkeys(["as_completed", "fire_and_forget", "wait"], "taskmill.client.waiting"),
    **dict.fromkeys(["get_client", "get_worker", "rejoin", "secede", "worker_client"],
                    "taskmill.client.worker_client"),
    "Security": "taskmill.security",
    **dict.fromkeys(["Environ", "NannyPlugin", "SchedulerPlugin", "UploadDirectory",
                     "WorkerPlugin"], "taskmill.plugins"),
    **dict.fromkeys(["ActorLostError", "FutureLostError", "KilledWorker",
                     "MissingDependencyError", "NoWorkersError", "RemoteTaskError",
                     "SchedulerGoneError", "TaskmillError"], "taskmill.errors"),
    "LocalCluster": "taskmill.cluster.local",
    **dict.fromkeys(["PBSCluster", "SLURMCluster"], "taskmill.cluster.jobqueue"),
    "SSHCluster": "taskmill.cluster.ssh",  # needs asyncssh (the ssh extra): not in __all__
}


def __getattr__(name: str) -> object:
    if name == "config":  # a submodule, as ``from taskmill import config`` finds it
        return _importlib.import_module("taskmill.config")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'taskmill' has no attribute {name!r}")
    # Loading the client makes some 16,000 objects that live as long as the
    # process: the cyclic collector's 40-odd passes meanwhile find nothing
    # to free (5 ms of CPU, 7% of the import), so it pauses.
    collecting = _gc.isenabled()
    _gc.disable()
    try:
        value = getattr(_importlib.import_module(module), name)
    finally:
        if collecting:
            _gc.enable()
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "Actor",
    "ActorFuture",
    "ActorLostError",
    "Environ",
    "Event",
    "Executor",
    "Future",
    "FutureLostError",
    "KilledWorker",
    "LocalCluster",
    "Lock",
    "MissingDependencyError",
    "NannyPlugin",
    "NoWorkersError",
    "PBSCluster",
    "Queue",
    "RemoteTaskError",
    "SchedulerGoneError",
    "SLURMCluster",
    "SchedulerPlugin",
    "Security",
    "Semaphore",
    "TaskmillError",
    "UploadDirectory",
    "WorkerPlugin",
    "Variable",
    "as_completed",
    "config",
    "fire_and_forget",
    "futures_of",
    "get_client",
    "get_worker",
    "progress",
    "rejoin",
    "secede",
    "wait",
    "worker_client",
]
