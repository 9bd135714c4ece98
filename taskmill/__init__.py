"""taskmill: a dynamic distributed task scheduler for Python.

``Executor`` connects to a cluster (or starts one on this machine), runs
Python calls there and returns ``Future`` objects; see docs/api.md for
the contract.  Importing taskmill does not import dask, numpy or pandas.
"""

import gc as _gc

# Importing the package makes some 16,000 objects that live as long as the
# process: the cyclic collector's 40-odd passes meanwhile find nothing to
# free (5 ms of CPU, 7% of the import), so it pauses.
_collecting = _gc.isenabled()
_gc.disable()
try:
    from taskmill.client.actor import Actor, ActorFuture
    from taskmill.client.executor import Executor
    from taskmill.client.future import Future
    from taskmill.client.locks import Event, Lock, Semaphore
    from taskmill.client.nested import futures_of
    from taskmill.client.progress import progress
    from taskmill.client.shared import Queue, Variable
    from taskmill.client.waiting import as_completed, fire_and_forget, wait
    from taskmill.client.worker_client import get_client, get_worker, rejoin, secede, worker_client
    from taskmill.security import Security
    from taskmill import config
    from taskmill.plugins import Environ, NannyPlugin, SchedulerPlugin, UploadDirectory, WorkerPlugin
    from taskmill.errors import (
        ActorLostError,
        FutureLostError,
        KilledWorker,
        MissingDependencyError,
        NoWorkersError,
        RemoteTaskError,
        SchedulerGoneError,
        TaskmillError,
    )
finally:
    if _collecting:
        _gc.enable()

__version__ = "0.1.0"

#: exported names whose modules load on first use (``import taskmill`` stays light)
_LAZY = {
    "LocalCluster": "taskmill.cluster.local",
    "PBSCluster": "taskmill.cluster.jobqueue",
    "SLURMCluster": "taskmill.cluster.jobqueue",
    "SSHCluster": "taskmill.cluster.ssh",  # needs asyncssh (the ssh extra): not in __all__
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'taskmill' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
