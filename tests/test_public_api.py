"""The names and signatures API.md promises."""

from __future__ import annotations

import concurrent.futures
import inspect
import subprocess
import sys

import taskmill
from taskmill import Executor, Future


def test_exports() -> None:
    for name in ["Executor", "Future", "wait", "as_completed", "progress", "fire_and_forget",
                 "futures_of"]:
        assert hasattr(taskmill, name), name
    assert issubclass(Future, concurrent.futures.Future)


def test_executor_methods_and_parameters() -> None:
    params = inspect.signature(Executor.submit).parameters
    for p in ["key", "pure", "workers", "allow_other_workers", "retries", "priority", "resources"]:
        assert p in params, p
    assert params["pure"].default is True and params["retries"].default == 0
    for method in ["map", "scatter", "gather", "cancel", "restart", "upload_file", "run", "who_has",
                   "has_what", "nthreads", "scheduler_info", "concurrent_executor", "close", "shutdown"]:
        assert callable(getattr(Executor, method)), method
    init = inspect.signature(Executor.__init__).parameters
    for p in ["asynchronous", "n_workers", "threads_per_worker", "processes"]:
        assert p in init, p
    assert "broadcast" in inspect.signature(Executor.scatter).parameters
    assert inspect.signature(Executor.gather).parameters["errors"].default == "raise"


def test_actor_names() -> None:
    for name in ["Actor", "ActorFuture", "ActorLostError"]:
        assert hasattr(taskmill, name), name
    for p in ["actor", "actors"]:
        assert inspect.signature(Executor.submit).parameters[p].default is False
        assert inspect.signature(Executor.map).parameters[p].default is False
    for method in ["result", "done", "__await__"]:
        assert callable(getattr(taskmill.ActorFuture, method)), method
    assert issubclass(taskmill.ActorLostError, (taskmill.TaskmillError, ConnectionError))


def test_future_methods() -> None:
    for method in ["result", "exception", "traceback", "done", "cancel", "add_done_callback", "release"]:
        assert callable(getattr(Future, method)), method
    assert isinstance(Future.status, property)


def test_import_does_not_pull_heavy_libraries() -> None:
    code = ("import sys, taskmill; heavy = [m for m in ('dask', 'numpy', 'pandas', 'joblib') if m in sys.modules];"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_plugin_names() -> None:
    from taskmill import Environ, NannyPlugin, SchedulerPlugin, UploadDirectory, WorkerPlugin

    for method in ["setup", "teardown", "transition"]:
        assert callable(getattr(WorkerPlugin, method)), method
    for method in ["start", "close", "add_worker", "remove_worker", "transition", "update_graph"]:
        assert callable(getattr(SchedulerPlugin, method)), method
    assert NannyPlugin.restart is False and Environ.restart is True
    assert issubclass(Environ, NannyPlugin) and issubclass(UploadDirectory, WorkerPlugin)
    assert list(inspect.signature(Executor.register_plugin).parameters) == ["self", "plugin", "name"]
    assert inspect.signature(Executor.register_plugin).parameters["name"].default is None
    assert callable(Executor.unregister_plugin)


def test_waiting_primitives() -> None:
    from taskmill import Event, Lock, Semaphore

    assert list(inspect.signature(Lock).parameters) == ["name", "client"]
    assert list(inspect.signature(Lock.acquire).parameters) == ["self", "blocking", "timeout"]
    assert list(inspect.signature(Semaphore).parameters) == ["max_leases", "name", "client"]
    assert inspect.signature(Semaphore).parameters["max_leases"].default == 1
    assert list(inspect.signature(Event).parameters) == ["name", "client"]
    for cls, methods in [(Lock, ["release", "locked", "__enter__", "__exit__"]),
                         (Semaphore, ["acquire", "release", "get_value"]),
                         (Event, ["set", "clear", "wait", "is_set"])]:
        for method in methods:
            assert callable(getattr(cls, method)), (cls, method)


def test_shared_values_names_and_parameters() -> None:
    from taskmill import Queue, Variable

    assert list(inspect.signature(Queue).parameters)[:1] == ["name"]
    assert inspect.signature(Queue).parameters["maxsize"].default == 0
    assert list(inspect.signature(Queue.get).parameters)[1:] == ["timeout", "batch"]
    assert list(inspect.signature(Queue.put).parameters)[1:] == ["value", "timeout"]
    for method in ["put", "get", "qsize"]:
        assert callable(getattr(Queue, method)), method
    for method in ["set", "get", "delete"]:
        assert callable(getattr(Variable, method)), method
    for method in ["publish_dataset", "get_dataset", "unpublish_dataset", "list_datasets"]:
        assert callable(getattr(Executor, method)), method
    assert isinstance(Executor.datasets, property)
    assert "default" in inspect.signature(Executor.get_dataset).parameters


def test_cluster_names_load_on_first_use() -> None:
    code = ("import sys, taskmill; assert 'taskmill.cluster.local' not in sys.modules; "
            "from taskmill import LocalCluster; import taskmill.cluster.base as b; "
            "assert issubclass(LocalCluster, b.Cluster)")
    subprocess.run([sys.executable, "-c", code], check=True)
    params = inspect.signature(taskmill.LocalCluster.__init__).parameters
    for p in ["n_workers", "threads_per_worker", "processes", "memory_limit", "resources",
              "dashboard_address", "security"]:
        assert p in params, p
    for method in ["scale", "adapt", "close", "wait_for_workers"]:
        assert callable(getattr(taskmill.LocalCluster, method)), method
    assert "jobs" in inspect.signature(taskmill.LocalCluster.scale).parameters


def test_job_queue_clusters_load_on_first_use() -> None:
    code = ("import sys, taskmill; assert 'taskmill.cluster.jobqueue' not in sys.modules; "
            "from taskmill import SLURMCluster, PBSCluster; import taskmill.cluster.base as b; "
            "assert issubclass(SLURMCluster, b.Cluster) and issubclass(PBSCluster, b.Cluster)")
    subprocess.run([sys.executable, "-c", code], check=True)
    for cls in (taskmill.SLURMCluster, taskmill.PBSCluster):
        params = inspect.signature(cls.__init__).parameters
        for p in ["cores", "memory"]:
            assert p in params, p
        for method in ["scale", "adapt", "close", "job_script", "wait_for_workers"]:
            assert callable(getattr(cls, method)), method
    params = inspect.signature(taskmill.SLURMCluster.__init__).parameters
    for p in ["processes", "walltime", "queue", "account", "job_extra_directives",
              "job_script_prologue", "python"]:
        assert p in params, p
