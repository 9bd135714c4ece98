"""The joblib backend ``"taskmill"``: ``joblib.Parallel`` (and scikit-learn) on a cluster.

Theory of operation
-------------------
Importing this module registers :class:`TaskmillBackend` with joblib under the
name ``"taskmill"`` (``import taskmill`` alone never imports joblib).  Inside
``joblib.parallel_config(backend="taskmill")`` every ``Parallel(...)`` call
runs on an Executor chosen when the call starts: the one passed as
``executor=``, else the most recently opened Executor of this process that is
still open; without one the call fails at once, saying how to open one.

*Batches.*  joblib hands the backend batches of calls, their size tuned by
joblib's ``AutoBatchingMixin`` so a batch takes between
``MIN_IDEAL_BATCH_DURATION`` and ``MAX_IDEAL_BATCH_DURATION`` seconds.  Each
batch is one task, ``run_batch(calls)``, submitted with ``pure=False`` under a
fresh key (two equal calls of a random function must not share a result).
``n_jobs=-1`` (the default) is every thread of the cluster, ``-2`` all but
one, and so on; a positive ``n_jobs`` is taken as given.  A cluster without
workers is waited for (a probe task) up to ``wait_for_workers_timeout``.

*Large arguments are scattered once.*  Before a batch goes out, each
positional or keyword argument of at least ``SCATTER_THRESHOLD`` bytes is put
on the cluster with ``scatter`` and replaced by its Future; the worker hands
the call the value.  Scattered objects are remembered by identity for the rest
of the ``Parallel`` call (weak references: an argument that dies frees its
entry, and an id reused by a new object is not taken for the old one), so an
array shared by a thousand calls crosses the network once instead of with
every batch.  Below the threshold an argument rides with its batch: on a local
2-worker cluster a 64 KiB array adds about 0.3 ms to a batch, a scatter (two
round trips: the scheduler, then a worker) costs about 0.65 ms, and 1 MiB
costs 1.4 ms either way.  A scatter pays off once an argument is shared by
three batches or so, whatever its size, and costs about 0.35 ms when it is
not; the threshold bets that small arguments are more often per-call ones
(dask's bets the other way, at 1 kB).  Objects that take no weak reference
(lists, tuples, dicts) ride too, as with dask.
joblib dispatches under its own lock, so two batches never scatter the same
object twice.  The memory is per call, so an array mutated in place between
two calls is sent again; ``scatter=[objects]`` keeps objects (lists too) on
every worker for as long as the backend lives (the ``parallel_config`` block).

*Completion and errors.*  joblib's callback is attached to each batch's Future
(``add_done_callback``: it runs on the client's callback thread, which may
block); it fetches the results and releases the Future, and the identity
memory releases its Futures when the call ends, so a finished ``Parallel``
call leaves nothing on the cluster.  A batch that raised re-raises the task's
exception from ``result()`` (its own type, the remote traceback as
``__cause__``); joblib then calls :meth:`TaskmillBackend.abort_everything`,
which cancels every batch still out.

*Nested calls.*  A ``Parallel`` call made inside a task runs sequentially in
that task's thread: the outer call already keeps every thread of the cluster
busy, and the scheduler counts one thread per task.

Where this differs from dask's backend (``joblib/_dask.py``), on purpose:
completions come by callback, not from a coroutine polling every 10 ms; an
abort cancels the outstanding tasks on the cluster (dask's only forgets them
locally, so they run on); ``n_jobs`` is honoured (dask always uses every
thread); only arguments of at least 64 KiB are scattered (dask scatters
anything over 1 kB, one round trip per cross-validation index array);
nested calls stay in their task (dask sends them to the cluster through a
worker client, which needs seceding from the worker's thread count).
"""

from __future__ import annotations

import concurrent.futures
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import joblib
from joblib.parallel import AutoBatchingMixin, ParallelBackendBase

from taskmill.client import registry
from taskmill.client.calls import funcname, unique_token
from taskmill.client.executor import Executor
from taskmill.client.future import Future
from taskmill.server.sizeof import sizeof

BACKEND_NAME = "taskmill"

#: Arguments at least this large (estimated by ``sizeof``) are scattered once
#: per Parallel call instead of travelling with every batch that uses them.
SCATTER_THRESHOLD = 64 * 1024

#: The options of ``Executor.submit`` that ``parallel_config(backend="taskmill",
#: ...)`` passes on to every batch.
SUBMIT_OPTIONS = frozenset({"workers", "allow_other_workers", "retries", "priority", "resources"})

Call = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]

NO_EXECUTOR = (
    "the joblib backend 'taskmill' found no open Executor in this process. Open one first:\n\n"
    "    from taskmill import Executor\n"
    "    executor = Executor()                     # a local cluster, or\n"
    "    executor = Executor('scheduler-host:8786')\n\n"
    "or pass one: parallel_config(backend='taskmill', executor=executor)"
)


def run_batch(calls: list[Call]) -> list[Any]:
    """Run one batch of joblib calls inside a task (scattered arguments
    already replaced by their values); nested Parallel calls run sequentially."""
    with joblib.parallel_config(backend="sequential"):
        return [func(*args, **kwargs) for func, args, kwargs in calls]


def _wait_for_a_worker() -> None:
    """Runs as soon as the cluster has a worker: what an empty cluster waits for."""


class ScatterMemory:
    """Futures of scattered objects, looked up by the objects' identity.

    An entry lives as long as its object: a weak reference's callback drops
    it (and with it the Future, so the cluster frees the data), and a reused
    ``id`` never finds the Future of a dead object.  No lock: the callback
    may run inside a garbage collection on any thread, even one in the
    middle of ``get`` or ``put``, and single dict operations are atomic.
    """

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref[Any], Future]] = {}

    def get(self, obj: Any) -> Future | None:
        entry = self._entries.get(id(obj))
        if entry is None or entry[0]() is not obj:
            return None
        return entry[1]

    def put(self, obj: Any, future: Future) -> None:
        key = id(obj)
        entries = self._entries

        def forget(ref: weakref.ref[Any]) -> None:
            entry = entries.get(key)
            if entry is not None and entry[0] is ref:
                entries.pop(key, None)

        entries[key] = (weakref.ref(obj, forget), future)

    def release_all(self) -> None:
        """Forget every entry and release its Future (the cluster frees the
        data once no task needs it)."""
        entries = list(self._entries.values())
        self._entries.clear()
        for _, future in entries:
            future.release()


class TaskmillBackend(AutoBatchingMixin, ParallelBackendBase):  # type: ignore[misc]
    """joblib's ``"taskmill"`` backend: each batch of calls is a task.

    Parameters (given to ``joblib.parallel_config(backend="taskmill", ...)``):

    executor
        The Executor to run on; default: the most recently opened one that
        is still open, looked up when each Parallel call starts.
    scatter
        A list of objects to put on every worker once, for the life of the
        backend (large arguments are scattered per call anyway).
    wait_for_workers_timeout
        Seconds to wait for a first worker when the cluster has none.
    workers, allow_other_workers, retries, priority, resources
        Passed to ``Executor.submit`` for every batch.
    """

    MIN_IDEAL_BATCH_DURATION = 0.2
    MAX_IDEAL_BATCH_DURATION = 1.0
    supports_retrieve_callback = True
    default_n_jobs = -1

    def __init__(self, executor: Executor | None = None, scatter: Iterable[Any] | None = None,
                 wait_for_workers_timeout: float = 10.0, nesting_level: int | None = None,
                 **submit_options: Any) -> None:
        super().__init__(nesting_level=nesting_level)  # Parallel(backend="taskmill") passes it
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError(f"executor= takes a taskmill Executor, not {type(executor).__name__}")
        if scatter is not None and not isinstance(scatter, (list, tuple)):
            raise TypeError(f"scatter= takes a list or tuple of objects, not {type(scatter).__name__}")
        if not isinstance(wait_for_workers_timeout, (int, float)) or wait_for_workers_timeout < 0:
            raise ValueError(f"wait_for_workers_timeout= takes seconds (a number >= 0), "
                             f"not {wait_for_workers_timeout!r}")
        unknown = sorted(set(submit_options) - SUBMIT_OPTIONS)
        if unknown:
            raise TypeError(f"the joblib backend 'taskmill' got unknown options {unknown}; it takes "
                            f"executor, scatter, wait_for_workers_timeout and the submit options "
                            f"{sorted(SUBMIT_OPTIONS)}")
        self._given_executor = executor
        self._scatter_always = list(scatter or ())
        self._always_scattered: dict[int, Future] = {}
        self._always_scattered_on: Executor | None = None
        self.wait_for_workers_timeout = float(wait_for_workers_timeout)
        self.submit_options = submit_options
        self._executor: Executor | None = None
        self._call_memory = ScatterMemory()
        self._outstanding: set[Future] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ #
    # Which Executor, how many jobs
    # ------------------------------------------------------------------ #
    def _find_executor(self) -> Executor:
        if self._given_executor is not None:
            if self._given_executor.status != "running":
                raise RuntimeError("the Executor passed to the joblib backend 'taskmill' as executor= "
                                   f"is {self._given_executor.status}: pass an open one")
            return self._given_executor
        opened = registry.open_executors()
        if not opened:
            raise RuntimeError(NO_EXECUTOR)
        executor: Executor = opened[0]
        if executor.asynchronous:
            raise RuntimeError(
                "the joblib backend 'taskmill' needs a blocking Executor, but the most recently "
                "opened one is asynchronous: open Executor() without asynchronous=True, or pass "
                "a blocking one as parallel_config(backend='taskmill', executor=...)")
        return executor

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """How many batches run at once: ``n_jobs`` when positive, else the
        cluster's threads (``-1``: all of them, ``-2``: all but one, ...)."""
        return self._n_jobs_on(self._find_executor(), n_jobs)

    def _n_jobs_on(self, executor: Executor, n_jobs: int | None) -> int:
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning: use -1 for every thread "
                             "of the cluster, or a positive number")
        if n_jobs is not None and n_jobs > 0:
            return n_jobs
        threads = self._cluster_threads(executor)
        return max(threads + 1 + (n_jobs if n_jobs is not None else -1), 1)

    def _cluster_threads(self, executor: Executor) -> int:
        threads = sum(executor.nthreads().values())
        if threads or not self.wait_for_workers_timeout:
            return threads
        probe = executor.submit(_wait_for_a_worker, pure=False)
        try:
            probe.result(timeout=self.wait_for_workers_timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(
                f"the cluster at {executor.scheduler_address} has had no worker for "
                f"{self.wait_for_workers_timeout:g} s: start workers (taskmill-worker "
                f"{executor.scheduler_address}), or wait longer with parallel_config(backend="
                f"'taskmill', wait_for_workers_timeout={max(10.0, 2 * self.wait_for_workers_timeout):g})"
            ) from None
        finally:
            executor.cancel([probe])
        return int(sum(executor.nthreads().values()))

    def configure(self, n_jobs: int | None = 1, parallel: Any = None, **backend_args: Any) -> int:
        """Start of a Parallel call: find the Executor and size the call."""
        self.parallel = parallel
        self._executor = self._find_executor()
        return self._n_jobs_on(self._executor, n_jobs)

    def start_call(self) -> None:
        """A Parallel call starts dispatching."""
        self._call_memory = ScatterMemory()

    def stop_call(self) -> None:
        """A Parallel call ends: release the data scattered for it."""
        self._call_memory.release_all()

    # ------------------------------------------------------------------ #
    # Batches
    # ------------------------------------------------------------------ #
    def submit(self, func: Any, callback: Callable[[Any], object] | None = None) -> Future:
        """Send one joblib batch (``func.items``) as a task; ``callback`` runs
        when it is done, with the Future."""
        executor = self._executor
        assert executor is not None, "joblib configures a backend before it submits to it"
        calls: list[Call] = [(f, tuple(self._shipped(executor, a) for a in args),
                              {k: self._shipped(executor, v) for k, v in kwargs.items()})
                             for f, args, kwargs in func.items]
        key = f"joblib-{funcname(calls[0][0])}-{unique_token()}"
        future = executor.submit_call(run_batch, (calls,), {}, key=key, pure=False,
                                      **self.submit_options)
        with self._lock:
            self._outstanding.add(future)

        def done(fut: Future) -> None:
            with self._lock:
                self._outstanding.discard(fut)
            if callback is not None:
                callback(fut)

        future.add_done_callback(done)
        return future

    def _shipped(self, executor: Executor, arg: Any) -> Any:
        """``arg`` itself, or the Future of its scattered copy when it is large."""
        if self._scatter_always:
            found = self._always_scattered_futures(executor).get(id(arg))
            if found is not None:
                return found
        future = self._call_memory.get(arg)
        if future is not None:
            return future
        if sizeof(arg) < SCATTER_THRESHOLD or not _weakly_referable(arg):
            return arg
        future = executor.scatter([arg], hash=False)[0]
        self._call_memory.put(arg, future)
        return future

    def _always_scattered_futures(self, executor: Executor) -> dict[int, Future]:
        """The ``scatter=`` objects' Futures on ``executor``, scattered (to
        every worker) the first time they are needed there."""
        if self._always_scattered_on is not executor:
            for future in self._always_scattered.values():
                future.release()
            futures = executor.scatter(self._scatter_always, broadcast=True, hash=False)
            self._always_scattered = {id(obj): f for obj, f in zip(self._scatter_always, futures)}
            self._always_scattered_on = executor
        return self._always_scattered

    def retrieve_result_callback(self, out: Future) -> Any:
        """The batch's results (or its exception raised); then the Future is released."""
        try:
            return out.result()
        finally:
            out.release()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """A call failed (or was interrupted): cancel every batch still out."""
        with self._lock:
            outstanding = list(self._outstanding)
            self._outstanding.clear()
        if outstanding and self._executor is not None and self._executor.status == "running":
            self._executor.cancel(outstanding)


def _weakly_referable(obj: Any) -> bool:
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True


joblib.register_parallel_backend(BACKEND_NAME, TaskmillBackend)

__all__ = ["BACKEND_NAME", "SCATTER_THRESHOLD", "TaskmillBackend", "run_batch"]
