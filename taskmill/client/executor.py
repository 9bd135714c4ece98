"""``Executor``: the user's handle on a cluster.

Theory of operation
-------------------
The Executor is a thin facade over a :class:`Session`.  In blocking mode it
owns a private event loop on a daemon thread (:class:`LoopRunner`) and each
method runs the session's coroutine there and waits; in asynchronous mode it
lives on the caller's loop and methods return awaitables.  ``submit`` and
``map`` never wait in either mode: they pickle in the calling thread (so a
bad argument fails right here, naming itself) and queue one message.

Without an address, the Executor starts a :class:`LocalCluster` on its loop
and closes it with itself.  ``scheduler_file=`` names the file a scheduler
wrote (``taskmill-scheduler --scheduler-file``): its address, and its token
(:mod:`taskmill.scheduler_file`).

Security: the Executor proves the ``security`` it is given (a
:class:`~taskmill.security.Security`) to the scheduler and the workers; by
default the environment's for an address (the scheduler's own when it runs
in this process), the cluster's for a cluster object, and for the embedded
cluster a fresh secret of its own (see
:func:`~taskmill.security.own_cluster_security`).
"""

from __future__ import annotations

import asyncio
import atexit
import datetime
import importlib.util
import weakref
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from taskmill.client import dask_integration, registry
from taskmill.client.actor import Actor, actor_key, make_actor
from taskmill.client.cluster_methods import ClusterMethods, worker_list
from taskmill.client.calls import funcname, map_keys, pack_call, submit_options
from taskmill.client.future import Future
from taskmill.loop_runner import LoopRunner
from taskmill.client.nested import collect_futures, futures_in, rebuild
from taskmill.client.session import Session
from taskmill.scheduler_file import read_scheduler_file
from taskmill.comm import normalize_address
from taskmill.comm.core import receive_pool, receive_prefault
from taskmill.core.resources import check_resources
from taskmill.protocol import Serialized, serialize_function
from taskmill.protocol.vocabulary import TaskSpec
from taskmill.cluster.sizing import default_sizing
from taskmill.security import Security, in_process_security, own_cluster_security
from taskmill.server.prestart import PrestartedProcess, prestart

_live_executors: weakref.WeakSet[Executor] = weakref.WeakSet()


class Executor(ClusterMethods):
    """Connect to a taskmill cluster, or start an embedded local one.

    ``Executor()`` starts a scheduler and worker processes on loopback,
    protected by a fresh secret; ``Executor("host:8786")`` connects to a
    running scheduler (with ``security=``, or the ``TASKMILL_*`` environment's
    token and TLS files), ``Executor(cluster)`` to the scheduler of a
    :class:`~taskmill.cluster.base.Cluster` (with its ``security``).  Use it as
    a context manager, or call ``close()`` (twice is fine).
    """

    def __init__(self, address: str | Any = None, *, asynchronous: bool = False,
                 n_workers: int | None = None, threads_per_worker: int | None = None,
                 processes: bool = True, memory_limit: int | str | None = None,
                 timeout: float = 10.0, set_as_default: bool = True,
                 dashboard_port: int | None = 0,
                 resources: dict[str, float] | None = None,
                 security: Security | None = None,
                 scheduler_file: str | None = None) -> None:
        self.asynchronous = asynchronous
        #: the Cluster this Executor was given (its owner closes it, not the Executor), or None
        self.given_cluster: Any = None
        if address is not None and not isinstance(address, str):
            if not hasattr(address, "scheduler_address"):
                raise TypeError(f"Executor(address): give 'host:port', a Cluster, or nothing (an "
                                f"embedded cluster), not {type(address).__name__}")
            self.given_cluster = address
            if security is None:
                security = getattr(address, "security", None)
            address = address.scheduler_address
        if scheduler_file is not None:
            if address is not None:
                raise ValueError("give the scheduler's address or scheduler_file=, not both")
            contact = read_scheduler_file(scheduler_file)
            address = contact.address
            if security is None:  # the scheduler's own token, if the file has one
                security = contact.security_here()
        self._address = normalize_address(address) if address is not None else None
        #: the token and TLS files connections prove (the embedded cluster's once started)
        self._security = (in_process_security(self._address, security)
                          if self._address is not None else security)
        if resources is not None and self._address is not None:
            raise ValueError("resources= declares what the workers of an embedded cluster have; "
                             "workers of a running cluster declare theirs with "
                             "`taskmill-worker ADDRESS --resources \"GPU=2\"`")
        self._cluster_options: dict[str, Any] = dict(
            n_workers=n_workers, threads_per_worker=threads_per_worker, processes=processes,
            memory_limit=memory_limit, dashboard_port=dashboard_port,
            resources=check_resources(resources, "worker resources", allow_zero=True))
        self._timeout = timeout
        self._set_as_default = set_as_default
        self.cluster: Any = None
        self._session: Session | None = None
        self._runner: LoopRunner | None = None
        self._funcs_sent: set[str] = set()
        self.status = "created"
        if not asynchronous:
            self._runner = LoopRunner()
            try:
                self._runner.run(self._start())
            except BaseException:
                self._runner.stop()
                self.status = "closed"
                raise

    # ------------------------------------------------------------------ #
    # Lifecycle
    # ------------------------------------------------------------------ #
    async def _start(self) -> Executor:
        if self.status == "running":
            return self
        loop = asyncio.get_running_loop()
        address = self._address
        prefault = receive_prefault()  # a bad option fails here, before anything starts
        prestarted = await self._prepare_cluster() if address is None else []
        # dask support is imported in a thread while the cluster starts (a tenth
        # of a second; not before: it would slow the worker processes' start)
        future_class = loop.run_in_executor(None, dask_future_class)
        try:
            if address is None:
                await self.cluster.start(prestarted)
                address = self.cluster.scheduler_address
                self._security = self.cluster.security
        finally:
            future_cls = await future_class
        session = Session(address, loop, self, connect_timeout=self._timeout,
                          local_scheduler=self.cluster.scheduler if self.cluster else None,
                          future_class=future_cls, security=self._security)
        try:
            await session.start()
        except BaseException:
            if self.cluster is not None:
                await self.cluster.close()
            raise
        self._session = session
        self.status = "running"
        # memory for the first large result this process receives, at the lowest priority
        receive_pool().prefault_in_background(*prefault, loop)
        _live_executors.add(self)
        if self._set_as_default:
            registry.set_default(self)
            dask_integration.default_scheduler.push(self)
        return self

    async def _prepare_cluster(self) -> list[PrestartedProcess]:
        """The embedded cluster, not started yet, and its worker processes,
        started first: they import their modules while this process imports
        and starts the scheduler and the nannies that adopt them
        (:mod:`taskmill.server.prestart`)."""
        options = self._cluster_options
        security = own_cluster_security(self._security)
        n, _ = default_sizing(options["n_workers"], options["threads_per_worker"],
                              options["processes"])
        prestarted = await prestart(n if options["processes"] else 0, security)
        try:
            from taskmill.cluster.local import LocalCluster

            self.cluster = LocalCluster(asynchronous=True, **options, security=security)
        except BaseException:
            for process in prestarted:
                await process.discard()
            raise
        return prestarted

    async def _close(self) -> None:
        receive_pool().stop_prefault()  # no first large result to come: no memory to fault
        if self._session is not None:
            await self._session.close()
        if self.cluster is not None:
            await self.cluster.close()
        # the pool's idle timer ran on this loop, which closes: give back what nothing uses
        receive_pool().release_idle()

    def close(self) -> Any:
        """Close the connection (and the embedded cluster, if any).  Safe to call twice."""
        if self.status in ("closed", "closing", "created") and self._session is None:
            self.status = "closed"
            return _done_awaitable() if self.asynchronous else None
        self.status = "closing"
        registry.unset_default(self)
        dask_integration.default_scheduler.remove(self)
        if self.asynchronous:
            return self._finish_async_close()
        assert self._runner is not None
        try:
            self._runner.run(self._close(), timeout=30)
        finally:
            self._runner.stop()
            self._session = None
            self.status = "closed"
        return None

    async def _finish_async_close(self) -> None:
        try:
            await self._close()
        finally:
            self._session = None
            self.status = "closed"

    shutdown = close

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Executor:
        return await self._start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __await__(self) -> Any:
        return self._start().__await__()

    def __del__(self) -> None:
        if getattr(self, "status", "closed") == "running" and not self.asynchronous:
            try:
                self.close()
            except Exception:
                pass

    @property
    def session(self) -> Session:
        if self._session is None or self.status != "running":
            raise RuntimeError(
                f"this Executor is {self.status}: create a new Executor to submit work"
            )
        return self._session

    @property
    def scheduler_address(self) -> str:
        return self.session.scheduler_address

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
        if self.asynchronous:
            return coro
        return self.session.sync(coro, timeout)

    # ------------------------------------------------------------------ #
    # Submitting work
    # ------------------------------------------------------------------ #
    def _is_future(self, obj: Any) -> bool:
        if type(obj) is not Future and not isinstance(obj, Future):
            return False
        if obj._session is not self._session and obj._session.scheduler_address != self.scheduler_address:
            raise ValueError(f"{obj!r} belongs to a cluster at {obj._session.scheduler_address}, "
                             f"not this one at {self.scheduler_address}")
        return True

    def _is_dependency(self, obj: Any) -> bool:
        """A Future, or an actor's proxy of this cluster: a call's argument
        that becomes a dependency (the task gets the key's value, for an
        actor its proxy, and the key is held until the task has run)."""
        if type(obj) is Actor:
            return bool(obj._scheduler_address == self.scheduler_address)
        return self._is_future(obj)

    @staticmethod
    def _serialize_function(fn: Callable[..., Any]) -> tuple[str, Serialized]:
        if not callable(fn):
            raise TypeError(f"submit/map needs a callable as first argument, got {type(fn).__name__}")
        return serialize_function(fn)

    def _functions_to_send(self, token: str, payload: Serialized) -> dict[str, Serialized]:
        """The scheduler keeps functions by token: send each one once."""
        if token in self._funcs_sent:
            return {}
        self._funcs_sent.add(token)
        return {token: payload}

    def submit(self, fn: Callable[..., Any], *args: Any, key: str | None = None, pure: bool = True,
               workers: str | Iterable[str] | None = None, allow_other_workers: bool = False,
               retries: int = 0, priority: int = 0, resources: dict[str, float] | None = None,
               fifo_timeout: str | float | datetime.timedelta | None = "100 ms",
               actor: bool = False, actors: bool = False, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` on the cluster and return a Future.

        Futures among the arguments (also inside lists, tuples, dicts and
        sets) are dependencies: the function receives their values.
        ``resources={"GPU": 1}`` runs it only on a worker that declared at
        least that much, and only while that much is free there (it holds
        it while it runs).

        ``fifo_timeout`` is accepted for dask.distributed's sake and does
        nothing: there it lets calls submitted within that time share a
        priority; here every submission is ordered as it came (``priority``
        first).  ``actor=True`` (or ``actors=True``) makes ``fn``, a class,
        an actor: one object on one worker, the Future's result an
        :class:`~taskmill.client.actor.Actor` proxy to it (see
        :mod:`taskmill.client.actor`).  None of these options reaches ``fn``.
        """
        if submit_options(fifo_timeout, actor, actors, fn):
            fn, args, key, pure = make_actor, (fn, *args), key or actor_key(fn), False
        return self.submit_call(fn, args, kwargs, key=key, pure=pure, workers=workers,
                                allow_other_workers=allow_other_workers, retries=retries,
                                priority=priority, resources=resources)

    def submit_call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *,
                    key: str | None = None, pure: bool = True,
                    workers: str | Iterable[str] | None = None, allow_other_workers: bool = False,
                    retries: int = 0, priority: int = 0,
                    resources: dict[str, float] | None = None) -> Future:
        """``submit`` with the call's keyword arguments kept apart from the
        options, so a function may take keywords named like them."""
        session = self.session
        session.check_running()
        needs = task_resources(resources)
        token, func = self._serialize_function(fn)
        call = pack_call(fn, token, args, kwargs, pure=pure, key=key, is_future=self._is_dependency, found={})
        generation = session.next_generation()
        restrictions = worker_list(workers)
        task = TaskSpec(call.key, token, call.args, call.dependencies, (-priority, generation, 0),
                        retries, None if restrictions is None else tuple(restrictions),
                        allow_other_workers, needs, fn is make_actor)
        return session.submit_tasks([task], self._functions_to_send(token, func))[0]

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], key: str | list[str] | None = None,
            pure: bool = True, workers: str | Iterable[str] | None = None,
            allow_other_workers: bool = False, retries: int = 0, priority: int = 0,
            resources: dict[str, float] | None = None,
            fifo_timeout: str | float | datetime.timedelta | None = "100 ms",
            actor: bool = False, actors: bool = False, **kwargs: Any) -> list[Future]:
        """Submit ``fn`` over each element of the iterables; returns a list of
        Futures.  The options apply to every call (see ``submit``, also for
        ``fifo_timeout`` and ``actor``); ``kwargs`` go to every call."""
        make_actors = submit_options(fifo_timeout, actor, actors, fn)
        session = self.session
        session.check_running()
        if not iterables:
            raise TypeError("map needs at least one iterable")
        calls = list(zip(*iterables))
        keys = map_keys(key, len(calls))
        if make_actors:  # one actor per element, each made by its own task
            return [self.submit_call(make_actor, (fn, *args), kwargs, key=k or actor_key(fn), pure=False,
                                     workers=workers, allow_other_workers=allow_other_workers,
                                     retries=retries, priority=priority, resources=resources)
                    for args, k in zip(calls, keys)]
        needs = task_resources(resources)
        token, func = self._serialize_function(fn)
        generation = session.next_generation()
        listed = worker_list(workers)
        restrictions = None if listed is None else tuple(listed)
        tasks = []
        for i, (args, k) in enumerate(zip(calls, keys)):
            call = pack_call(fn, token, args, kwargs, pure=pure, key=k, is_future=self._is_dependency, found={})
            tasks.append(TaskSpec(call.key, token, call.args, call.dependencies, (-priority, generation, i),
                                  retries, restrictions, allow_other_workers, needs))
        return session.submit_tasks(tasks, self._functions_to_send(token, func))

    # ------------------------------------------------------------------ #
    # Data
    # ------------------------------------------------------------------ #
    def gather(self, futures: Any, errors: str = "raise", direct: bool | None = None) -> Any:
        """The values of ``futures``, in the same nested structure (lists,
        tuples, dicts, sets); ``errors="skip"`` leaves out failed ones."""
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', not {errors!r}")
        found = collect_futures(futures, self._is_future)
        session = self.session

        async def run() -> Any:
            states = session.states_for(found)
            await session.gather_states(states, errors)
            fetched = {ks.key: ks.user_value(session) for ks in states if ks.has_value}
            return rebuild(futures, self._is_future, fetched, skip_missing=errors == "skip")

        return self._call(run())

    def scatter(self, data: Any, workers: str | Iterable[str] | None = None, broadcast: bool = False,
                hash: bool = True) -> Any:
        """Put local data on the cluster.  A list gives a list of Futures, a
        dict a dict of Futures (its keys name the data), anything else one Future."""
        from taskmill.client.scatter import plan_scatter, scatter_payloads

        session = self.session
        payloads = scatter_payloads(data, hash=hash)

        async def run() -> Any:
            futures = await plan_scatter(session, payloads, worker_list(workers), broadcast)
            if isinstance(data, dict):
                return dict(zip(data, futures))
            if isinstance(data, (list, tuple, set, frozenset)):
                return type(data)(futures) if not isinstance(data, (set, frozenset)) else futures
            return futures[0]

        return self._call(run())

    def cancel(self, futures: Any, force: bool = False) -> Any:
        """Cancel futures (a Future, a persisted dask collection, or lists of
        them), dask's way: their keys are released on the cluster
        and every Future of them (here and in other clients) becomes
        cancelled, also when the call already runs (unlike
        ``Future.cancel()``); their dependents are cancelled too.  A running
        call cannot be interrupted: it goes on to its end on its worker
        thread and its outcome is dropped.  ``force=True`` also frees that
        thread's slot at once: the worker abandons the call (it still runs
        to its end in a thread of its own) and starts other work meanwhile.
        Futures already done are left as they are."""
        pending = [f for f in futures_in(futures) if not f.done()]
        if pending:
            self.session.cancel_keys(list(dict.fromkeys(f.key for f in pending)), force)
            for f in pending:
                f._cancel_locally()
        return _done_awaitable() if self.asynchronous else None

    # ------------------------------------------------------------------ #
    # Dask collections
    # ------------------------------------------------------------------ #
    def get(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        """A dask-compatible scheduler: ``x.compute(scheduler=e.get)``.  Takes a
        graph (or anything with ``__dask_graph__``) and returns the values of
        ``keys`` in their (nested-list) shape.  Honours the options ``priority``,
        ``retries``, ``workers``, ``allow_other_workers`` and ``resources``
        (``x.compute(retries=2)`` passes them on) and ``dask.annotate``."""
        return dask_integration.get(self, dsk, keys, **kwargs)

    def compute(self, collections: Any, sync: bool = False, optimize_graph: bool = True,
                priority: int = 0, resources: dict[str, float] | None = None,
                workers: str | Iterable[str] | None = None, allow_other_workers: bool = False,
                retries: int = 0) -> Any:
        """Start computing dask collections: a Future for each (a list for a
        list); ``sync=True`` waits and returns the values.  The options apply to
        every task of the graphs (see ``submit``); ``dask.annotate``
        annotations of the collections take precedence, and an annotated
        priority adds to ``priority``."""
        return dask_integration.compute(self, collections, sync=sync, optimize_graph=optimize_graph,
                                        options=_graph_options(priority, resources, workers,
                                                               allow_other_workers, retries))

    def persist(self, collections: Any, optimize_graph: bool = True, priority: int = 0,
                resources: dict[str, float] | None = None,
                workers: str | Iterable[str] | None = None, allow_other_workers: bool = False,
                retries: int = 0) -> Any:
        """The same collections, backed by data computed and held on the
        cluster.  The options are those of ``compute``."""
        return dask_integration.persist(self, collections, optimize_graph=optimize_graph,
                                        options=_graph_options(priority, resources, workers,
                                                               allow_other_workers, retries))

    def concurrent_executor(self) -> Any:
        """A strict ``concurrent.futures.Executor`` view over this cluster."""
        from taskmill.client.concurrent_view import ClusterPoolExecutor

        return ClusterPoolExecutor(self)

    # ------------------------------------------------------------------ #
    def __repr__(self) -> str:
        if self._session is None or self.status != "running":
            return f"<Executor: {self.status}>"
        return f"<Executor: scheduler={self._session.scheduler_address!r}>"

    def _repr_html_(self) -> str:
        from taskmill.client.diagnostics import executor_html

        return executor_html(self)


def dask_future_class() -> type[Future]:
    """Futures are dask TaskRefs too where dask is installed."""
    if importlib.util.find_spec("dask") is None:
        return Future
    from taskmill.client.dask_future import DaskFuture

    return DaskFuture


def task_resources(resources: dict[str, float] | None) -> dict[str, float] | None:
    """A task's resource requirement as it travels (None: none), checked
    here so a bad one fails in the caller's thread."""
    return check_resources(resources, "task resources") or None


def _graph_options(priority: int, resources: dict[str, float] | None,
                   workers: str | Iterable[str] | None, allow_other_workers: bool,
                   retries: int) -> dict[str, Any]:
    """The options of ``compute``/``persist``, checked here (in the caller's
    thread), as ``dask_integration`` takes them."""
    return {"priority": priority, "resources": task_resources(resources),
            "workers": worker_list(workers), "allow_other_workers": allow_other_workers,
            "retries": retries}


async def _nothing() -> None:
    return None


def _done_awaitable() -> Any:
    return _nothing()


@atexit.register
def _close_executors_at_exit() -> None:
    for executor in list(_live_executors):
        if not executor.asynchronous:
            try:
                executor.close()
            except Exception:
                pass


__all__ = ["Executor", "funcname"]
