"""The Executor's cluster operations: queries, copies, diagnostics, code on
every node, plugins, datasets, restarts.

Theory of operation
-------------------
:class:`ClusterMethods` is the part of :class:`~taskmill.client.executor.Executor`
that speaks to the cluster as a whole rather than to tasks: each method builds
one request (or a coroutine of a few) and runs it with the Executor's
``_call`` (blocking, or an awaitable in asynchronous mode), through the
Executor's ``session``.  It is a base class of ``Executor`` only, kept in its
own module so that neither grows past what one can read; the attributes it
uses are declared below and provided by ``Executor``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from taskmill import timeouts
from taskmill.client import cluster_ops, forwarding, plugins, shared
from taskmill.client.future import Future
from taskmill.client.keystate import FINISHED, KeysWaiter
from taskmill.client.nested import collect_futures, futures_in
from taskmill.client.session import Session
from taskmill.client.waiting import check_n_workers, wait_for_workers
from taskmill.cluster_state import write_cluster_state
from taskmill.comm import normalize_address
from taskmill.protocol import serialize
from taskmill.protocol.vocabulary import (
    DumpClusterState,
    HasWhat,
    NThreads,
    Rebalance,
    Replicate,
    Restart,
    RestartWorkers,
    RetireWorkers,
    Run,
    RunningKeys,
    SchedulerInfo,
    Story,
    TaskStream,
    UploadFile,
    WhoHas,
)

__all__ = ["ClusterMethods", "worker_list"]


class ClusterMethods:
    """The cluster-wide methods of ``Executor`` (see the module docstring)."""

    # provided by Executor
    asynchronous: bool
    cluster: Any
    given_cluster: Any
    _dashboard_link: Any

    @property
    def session(self) -> Session:
        raise NotImplementedError

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
        raise NotImplementedError

    def _is_future(self, obj: Any) -> bool:
        raise NotImplementedError

    # ------------------------------------------------------------------ #
    # Cluster operations
    # ------------------------------------------------------------------ #
    def who_has(self, futures: Future | Iterable[Future] | None = None) -> Any:
        """``{key: [worker_address, ...]}`` for the given futures (or all keys)."""
        keys = None if futures is None else [f.key for f in collect_futures(futures, self._is_future)]
        return self._call(self.session.scheduler_call(WhoHas(None if keys is None else tuple(keys))))

    def has_what(self) -> Any:
        """``{worker_address: [key, ...]}``."""
        return self._call(self.session.scheduler_call(HasWhat()))

    def nthreads(self) -> Any:
        """``{worker_address: number_of_threads}``."""
        return self._call(self.session.scheduler_call(NThreads()))

    ncores = nthreads

    def running_keys(self) -> Any:
        """The keys whose functions are running on a worker thread right now."""
        async def run() -> set[str]:
            return set(await self.session.scheduler_call(RunningKeys()))

        return self._call(run())

    def scheduler_info(self) -> Any:
        """``{"address": ..., "workers": {address: {"nthreads", "memory_limit", ...}}, ...}``."""
        return self._call(self.session.scheduler_call(SchedulerInfo()))

    def wait_for_workers(self, n_workers: int, timeout: float | None = None) -> Any:
        """Wait until the scheduler has at least ``n_workers`` running workers
        (neither paused nor retiring), as dask.distributed's does; awaitable in
        asynchronous mode.  Raises ``TimeoutError`` naming how many there are
        when they are not there within ``timeout`` seconds (None: no limit)."""
        check_n_workers(n_workers, timeout)
        return self._call(wait_for_workers(self.session, n_workers, timeout))

    def replicate(self, futures: Future | Iterable[Future], n: int | None = None,
                  workers: str | Iterable[str] | None = None, timeout: float | None = None) -> Any:
        """Keep copies of the futures' data on ``n`` workers (default: all),
        chosen among ``workers`` (default: all), so it survives the death of
        a worker holding it: scattered data has no lineage to recompute it from.

        Waits for the futures to finish, then for the copies; failed futures
        are skipped.  Copies are made once (later deaths are not made good)
        and not on paused or retiring workers.  Raises ``TimeoutError`` when
        the copies are not made within ``timeout`` seconds (default
        ``$TASKMILL_RETIRE_TIMEOUT``, 30)."""
        found = collect_futures(futures, self._is_future)
        session = self.session
        targets = worker_list(workers)

        async def run() -> None:
            waiter = KeysWaiter(session.states_for(found))
            if waiter.remaining:
                await waiter.future
            keys = list(dict.fromkeys(f.key for f in found if f.status == FINISHED))
            if keys:
                wait = timeouts.RETIRE.get() if timeout is None else timeout
                await session.scheduler_call(
                    Replicate(tuple(keys), n, None if targets is None else tuple(targets), wait),
                    timeout=wait + timeouts.REQUEST.get())

        return self._call(run())

    def rebalance(self, futures: Any = None, workers: str | Iterable[str] | None = None,
                  timeout: float | None = None) -> Any:
        """Even out the data the workers hold, as dask.distributed's
        ``rebalance``: move the data of ``futures`` (Futures or persisted
        collections; default: every key in memory) among ``workers`` (default:
        every open worker) until each holds within 10% of their mean bytes,
        moving as little as that takes (a few large keys may not allow it).
        Nothing is lost: each move is a copy first, and the sender drops its
        own only once the copy arrived.  Waits for the futures to finish, then
        for the moves; raises ``TimeoutError`` if they do not settle within
        ``timeout`` seconds (default ``$TASKMILL_RETIRE_TIMEOUT``)."""
        found = None if futures is None else futures_in(futures)
        session = self.session
        targets = worker_list(workers)

        async def run() -> None:
            keys: tuple[str, ...] | None = None
            if found is not None:
                waiter = KeysWaiter(session.states_for(found))
                if waiter.remaining:
                    await waiter.future
                keys = tuple(dict.fromkeys(f.key for f in found if f.status == FINISHED))
                if not keys:
                    return
            wait = timeouts.RETIRE.get() if timeout is None else timeout
            await session.scheduler_call(
                Rebalance(keys, None if targets is None else tuple(targets), wait),
                timeout=wait + timeouts.REQUEST.get())

        return self._call(run())

    def retire_workers(self, workers: str | Iterable[str] | None = None, n: int | None = None,
                       close_workers: bool = True, timeout: float | None = None) -> Any:
        """Scale down gracefully: retire ``workers`` (addresses), or the ``n``
        holding least data.  No new task goes to them; the data held only
        there is copied to the other workers; then each is removed and, with
        ``close_workers``, closed (its nanny does not start it again).  No
        Future's data is lost.  Returns the addresses of the workers retired:
        one whose data found no other worker to go to (or not within
        ``timeout`` seconds, default ``$TASKMILL_RETIRE_TIMEOUT``) stays at work."""
        if workers is None and n is None:
            raise ValueError("retire_workers needs workers=[addresses] or n=<how many to retire>")
        session = self.session
        wait = timeouts.RETIRE.get() if timeout is None else timeout
        targets = worker_list(workers)
        return self._call(session.scheduler_call(
            RetireWorkers(None if targets is None else tuple(targets), n, close_workers, wait),
            timeout=wait + timeouts.REQUEST.get()))

    # ------------------------------------------------------------------ #
    # Diagnostics (taskmill.client.diagnostics, taskmill.dashboard)
    # ------------------------------------------------------------------ #
    @property
    def dashboard_link(self) -> str | None:
        """The URL of the scheduler's web dashboard (None when it has none): a
        one-time login link when the scheduler runs in this process (an
        embedded cluster, or a Cluster given to the Executor), else its plain
        address (the browser then asks for the cluster's token)."""
        if self.given_cluster is not None and not self.asynchronous:
            return self.given_cluster.dashboard_link  # type: ignore[no-any-return]
        if self.cluster is not None and self.cluster.scheduler is not None:
            scheduler = self.cluster.scheduler
            if self.asynchronous:
                return scheduler.dashboard_link  # type: ignore[no-any-return]
            # it starts in the background with the cluster: wait for it here
            return self.session.sync(scheduler.dashboard_ready())  # type: ignore[no-any-return]
        if not hasattr(self, "_dashboard_link"):
            if self.asynchronous:
                return None  # unknown without a round trip; see scheduler_info()["dashboard"]
            self._dashboard_link = self.scheduler_info().get("dashboard")
        return self._dashboard_link  # type: ignore[no-any-return]

    def story(self, *keys: Future | str) -> Any:
        """What the scheduler did with these keys (futures or key strings), and
        why: ``[key, from_state, to_state, stimulus_id, note]`` entries, oldest
        first.  E.g. a task waiting in ``no-worker`` says which resources no
        worker declares."""
        names = [k.key if isinstance(k, Future) else k for k in keys]
        return self._call(self.session.scheduler_call(Story(tuple(names))))

    def get_task_stream(self, start: float = 0.0, stop: float | None = None) -> Any:
        """Records of the tasks that ended between ``start`` and ``stop`` (wall
        times; default: all the scheduler remembers, the last 100,000): dicts
        with key, group, worker, thread, start, stop, transfer (seconds spent
        fetching its inputs) and status ("OK" or "error")."""
        return self._call(self.session.scheduler_call(TaskStream(start, stop)))

    def performance_report(self, filename: str = "taskmill-report.html",
                           title: str = "taskmill performance report") -> Any:
        """``with e.performance_report("report.html"): ...`` writes one
        self-contained HTML file (task stream, per-group timings, worker memory)
        about what ran inside the block (``async with`` in asynchronous mode)."""
        from taskmill.client.diagnostics import PerformanceReport

        return PerformanceReport(self, filename, title)

    def run(self, fn: Callable[..., Any], *args: Any, workers: Iterable[str] | None = None,
            **kwargs: Any) -> Any:
        """Call ``fn(*args, **kwargs)`` on every worker; ``{worker_address: result}``."""
        session = self.session
        payload = serialize((fn, args, kwargs))

        async def run() -> dict[str, Any]:
            targets = list(workers) if workers is not None else list(
                await session.scheduler_call(NThreads()))
            replies = await asyncio.gather(
                *(session.worker_call(w, Run(payload), timeout=None)  # user code: no limit
                  for w in targets))
            return {w: r.deserialize() for w, r in zip(targets, replies)}

        return self._call(run())

    def run_on_scheduler(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn(*args, **kwargs)`` in the scheduler process and return its
        result.  It runs on the scheduler's event loop (blocking the scheduler
        meanwhile; a coroutine function is awaited there); a function that
        declares a ``scheduler`` or ``dask_scheduler`` keyword parameter gets
        the scheduler object under that name.  An exception comes back with
        its type and the scheduler's traceback as ``__cause__``."""
        return self._call(cluster_ops.run_on_scheduler(self.session, fn, args, kwargs))

    def register_plugin(self, plugin: Any, name: str | None = None) -> Any:
        """Register a plugin (an instance of a subclass of ``WorkerPlugin``,
        ``NannyPlugin`` or ``SchedulerPlugin``, see :mod:`taskmill.plugins`):
        set up on every worker (nanny, or the scheduler) now and on every
        worker that joins later.  ``name`` (default: ``plugin.name``, else
        the class name and a unique suffix) identifies it; registering a name
        again replaces the plugin.  Returns ``{address: "OK"}``.  A setup that
        raises fails the call with the original exception (the remote
        traceback as ``__cause__``); the plugin is then not registered and
        the nodes keep running."""
        return self._call(plugins.register_plugin(self.session, plugin, name))

    def unregister_plugin(self, name: str) -> Any:
        """Tear the plugin ``name`` down everywhere (``teardown``, or ``close``
        for a scheduler plugin) and forget it; a ValueError naming the
        registered plugins when there is none of that name."""
        return self._call(plugins.unregister_plugin(self.session, name))

    def get_scheduler_logs(self, n: int | None = None) -> Any:
        """The scheduler process's recent ``taskmill`` log records, oldest
        first: ``[(level, line), ...]`` (level a name such as "INFO"; line
        formatted with time, logger and pid); the last ``n``, or all it keeps
        (the last 10,000) when ``n`` is None."""
        return self._call(cluster_ops.scheduler_logs(self.session, n))

    def get_worker_logs(self, n: int | None = None, workers: Iterable[str] | None = None) -> Any:
        """``{worker_address: [(level, line), ...]}``: each worker process's
        recent log records, as :meth:`get_scheduler_logs`.  A worker that does
        not answer within ``TASKMILL_REQUEST_TIMEOUT`` is left out (a warning
        on the client names it).  In-process workers share their process's
        records with each other and with an embedded scheduler."""
        return self._call(cluster_ops.worker_logs(self.session, n, workers))

    def forward_logging(self, logger_name: str | None = None, level: int | str = 0) -> Any:
        """Re-emit here the log records of tasks on every worker (now and later) on
        ``logger_name`` (None: root) at ``level`` or above: :mod:`taskmill.client.forwarding`."""
        return self._call(forwarding.forward_logging(self.session, logger_name, level))

    def unforward_logging(self, logger_name: str | None = None) -> Any:
        """Stop re-emitting here the records of ``logger_name`` (None: root)
        that ``forward_logging`` asked for; once no client wants them, the
        workers stop capturing them."""
        return self._call(forwarding.unforward_logging(self.session, logger_name))

    # ------------------------------------------------------------------ #
    # Datasets (taskmill.client.shared)
    # ------------------------------------------------------------------ #
    def publish_dataset(self, *args: Any, name: str | None = None, override: bool = False,
                        **kwargs: Any) -> Any:
        """Publish values under names on the scheduler, for any client to
        read: ``publish_dataset(x=value, ...)`` or ``publish_dataset(value,
        name="x")``.  Futures inside a value keep their data on the cluster
        while it is published, after this Executor closes too.  A name
        already published is a ``KeyError`` (nothing published) unless
        ``override=True``."""
        return self._call(shared.publish(self, args, name, override, kwargs))

    def get_dataset(self, name: str, default: Any = shared.NO_DEFAULT) -> Any:
        """The value published as ``name`` (its Futures held by this
        Executor); not published: ``default`` if given, else ``KeyError``."""
        return self._call(shared.get_dataset(self, name, default))

    def unpublish_dataset(self, name: str) -> Any:
        """Remove the dataset ``name`` (its Futures' data is released unless
        held otherwise); not published: ``KeyError``."""
        return self._call(shared.unpublish(self, name))

    def list_datasets(self) -> Any:
        """The names of the published datasets, sorted."""
        return self._call(shared.list_datasets(self))

    @property
    def datasets(self) -> shared.Datasets:
        """The published datasets as a mutable mapping (blocking mode only)."""
        return shared.Datasets(self)

    def restart(self, timeout: float | None = None, wait_for_workers: bool = True) -> Any:
        """Restart every worker process and drop all data; the Executor stays
        usable.  With ``wait_for_workers`` (the default) it returns once as
        many workers as before are back, or raises ``TimeoutError`` after
        ``timeout`` seconds (default 60)."""
        max_wait = _restart_wait(timeout)
        session = self.session

        async def run() -> ClusterMethods:
            await session.scheduler_call(Restart(max_wait, wait_for_workers),
                                         timeout=max_wait + timeouts.REQUEST.get())
            return self

        return self._call(run())

    def restart_workers(self, workers: Iterable[str], timeout: float | None = None) -> Any:
        """Restart the processes of ``workers`` (addresses) through their
        nannies, as dask.distributed's ``restart_workers``: the other workers
        keep their data; the keys held only by the restarted ones are lost,
        their tasks run again where anyone still wants them.  Returns
        ``{address: "OK"}`` once as many workers as before are back; a worker
        that is unknown or runs without a nanny is a ``ValueError`` before
        anything restarts, and a cluster that does not come back within
        ``timeout`` seconds (default 60) a ``TimeoutError``."""
        addresses = tuple(worker_list(workers) or ())
        max_wait = _restart_wait(timeout)
        return self._call(self.session.scheduler_call(
            RestartWorkers(addresses, max_wait), timeout=max_wait + timeouts.REQUEST.get()))

    def dump_cluster_state(self, path: str) -> Any:
        """Write the scheduler's and every worker's state, with their recent
        log lines, into one JSON file at ``path`` (gzip-compressed when it ends
        with ``.gz``), for a bug report; ``taskmill.cluster_state.load_cluster_state(path)``
        reads it back.  A worker that does not answer in time appears with
        the reason instead of its state."""
        session = self.session

        async def run() -> None:
            state = await session.scheduler_call(DumpClusterState(), timeout=2 * timeouts.REQUEST.get())
            await asyncio.to_thread(write_cluster_state, state, path)

        return self._call(run())

    def upload_file(self, path: str) -> Any:
        """Ship a ``.py``, ``.zip`` or ``.egg`` file to every worker (present
        and future) and make it importable there."""
        if not path.endswith((".py", ".zip", ".egg")):
            raise ValueError(f"upload_file takes a .py, .zip or .egg file, not {path!r}")
        with open(path, "rb") as f:
            data = f.read()
        filename = os.path.basename(path)
        return self._call(self.session.scheduler_call(
            UploadFile(filename, data), timeout=timeouts.DATA.get() + timeouts.REQUEST.get()))


def worker_list(workers: str | Iterable[str] | None) -> list[str] | None:
    """Worker addresses as the scheduler spells them (None: no restriction)."""
    if workers is None:
        return None
    if isinstance(workers, str):
        workers = [workers]
    return [normalize_address(w) for w in workers]


def _restart_wait(timeout: float | None) -> float:
    """Seconds a restart waits for its workers (60 when not told)."""
    if timeout is None:
        return 60.0
    if timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)
