"""``Cluster``: one interface over every way taskmill starts workers.

Theory of operation
-------------------
A cluster is a scheduler plus *worker groups*, the units it starts and stops
as a whole: a nanny on this machine (:class:`~taskmill.cluster.local.LocalCluster`),
a ``taskmill worker`` command over SSH, a batch job of ``processes`` workers
(the job-queue clusters).  A subclass says how to start and stop its
scheduler (``_start_scheduler``, ``_close_scheduler``) and how to make a
group (``_new_group``); the base does the rest, the same for all:

* ``scale(n)`` (workers) or ``scale(jobs=n)`` (groups) sets how many groups
  there are.  Going up, the new groups are launched at once, and a launch
  that fails raises here, naming the group; their workers register with the
  scheduler a little later (``wait_for_workers``).  Going down, groups none of
  whose workers registered yet go first (a pending job is cancelled); then
  registered ones, idle and holding least data first, are *retired* through
  the scheduler (their unique data moves to the workers that stay) and only
  then stopped.  A group whose data found nowhere to go stays.
* A watcher, every ``WATCH_INTERVAL`` seconds, looks at the scheduler's
  workers, lets the subclass refresh what it knows of its groups
  (``_poll_groups``: one batch-system query for all jobs), and asks each group whether it
  ended by itself (a job that died before its worker registered, workers
  that reached their ``--lifetime``), forgets such groups and logs why;
  ``wait_for_workers`` raises with that reason instead of waiting forever.
* ``adapt(...)`` hands the count to an :class:`~taskmill.cluster.adaptive.Adaptive`,
  which asks the scheduler what the work needs and scales within bounds.

Groups are matched to the scheduler's workers by name: a group named
``g`` runs one worker named ``g``, or workers ``g-0``, ``g-1``, ... when it
runs several (as ``taskmill-worker --name g --nworkers N`` names them).

Blocking or asynchronous: made with ``asynchronous=True`` a cluster lives on
the caller's event loop (``await cluster`` or ``async with`` starts it) and
its methods return awaitables; otherwise it owns an event loop on a daemon
thread, as the blocking Executor does, and its methods wait.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import logging
import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Coroutine, Generator
from typing import Any

from taskmill import timeouts
from taskmill.loop_runner import LoopRunner
from taskmill.cluster.adaptive import Adaptive
from taskmill.comm.pool import RPC, ConnectionPool
from taskmill.units import format_bytes
from taskmill.protocol.vocabulary import RetireWorkers, SchedulerInfo
from taskmill.security import Security

logger = logging.getLogger("taskmill.cluster")

#: seconds between two looks at the groups and the scheduler's workers
WATCH_INTERVAL = 1.0


class WorkerGroup(ABC):
    """What a cluster starts and stops as one: one or more workers.

    ``start()`` returns once the group is launched (not registered);
    ``close()`` stops it and leaves nothing behind (idempotent); ``ended()``
    says why it stopped by itself, or None while it runs."""

    def __init__(self, name: str, n_workers: int = 1) -> None:
        self.name = name
        self.n_workers = n_workers

    @property
    def worker_names(self) -> list[str]:
        """The names its workers register with."""
        if self.n_workers == 1:
            return [self.name]
        return [f"{self.name}-{i}" for i in range(self.n_workers)]

    @abstractmethod
    async def start(self) -> None:
        """Launch it; raise an error naming the group when that fails."""

    @abstractmethod
    async def close(self) -> None:
        """Stop it and everything it started."""

    def ended(self) -> str | None:
        """Why it stopped by itself (None while it runs or after ``close``)."""
        return None


class Cluster:
    """A scheduler and workers that taskmill starts, scales and stops.

    Use ``Executor(cluster)`` to run work on it, ``scale``/``adapt`` to size
    it, and ``close()`` (or a ``with`` block) to stop every process it started.
    """

    #: groups are named ``f"{group_prefix}-{i}"``
    group_prefix = "worker"

    def __init__(self, *, asynchronous: bool = False, security: Security | None = None,
                 workers_per_group: int = 1, threads_per_worker: int | None = None) -> None:
        self.asynchronous = asynchronous
        #: what every process of this cluster proves on each connection
        self.security = security
        self.workers_per_group = workers_per_group
        self.threads_per_worker = threads_per_worker
        self.groups: dict[str, WorkerGroup] = {}
        self.status = "created"
        #: the adaptive scaler while ``adapt()`` is on, else None
        self.adaptive: Adaptive | None = None
        self._next_group = itertools.count()
        self._address: str | None = None
        self._dashboard: str | None = None
        self._pool: ConnectionPool | None = None
        self._scaling: asyncio.Lock | None = None
        self._watcher: asyncio.Task[None] | None = None
        #: why recent groups ended by themselves (newest last)
        self.failures: deque[str] = deque(maxlen=20)
        #: how many groups ended by themselves so far, and how many of those
        #: a ``wait_for_workers`` has raised for
        self._ended_count = self._ended_reported = 0
        #: the scheduler's workers at the watcher's last look (for repr)
        self._seen_workers: dict[str, dict[str, Any]] = {}
        self._runner: LoopRunner | None = None if asynchronous else LoopRunner("taskmill-cluster")

    # ------------------------------------------------------------------ #
    # What subclasses provide
    # ------------------------------------------------------------------ #
    async def _start_scheduler(self) -> tuple[str, str | None]:
        """Start (or find) the scheduler; -> (its address, its dashboard link or None)."""
        raise NotImplementedError

    async def _close_scheduler(self) -> None:
        """Stop the scheduler started by ``_start_scheduler``."""
        raise NotImplementedError

    def _new_group(self, name: str) -> WorkerGroup:
        """A group of ``workers_per_group`` workers named after ``name``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ #
    # Lifecycle
    # ------------------------------------------------------------------ #
    def _sync(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro``: returned as an awaitable when asynchronous, else waited for."""
        if self._runner is None:
            return coro
        return self._runner.run(coro)

    async def _start(self, n_groups: int = 0) -> Cluster:
        if self.status == "running":
            return self
        if self.status != "created":
            raise RuntimeError(f"{type(self).__name__} is {self.status}: make a new one")
        self.status = "starting"
        self._scaling = asyncio.Lock()
        try:
            self._address, self._dashboard = await self._start_scheduler()
            self._pool = ConnectionPool(timeout=timeouts.CONNECT, security=self.security)
            self.status = "running"
            if n_groups:
                await self._scale_groups(n_groups)
            self._watcher = asyncio.ensure_future(self._watch())
        except BaseException:
            await self._close()
            raise
        return self

    def _start_if_blocking(self) -> None:
        """(End of a subclass's ``__init__``.)  A blocking cluster starts now,
        closing what it started when that fails; an asynchronous one when awaited."""
        if self._runner is None:
            return
        try:
            self._sync(self._start())
        except BaseException:
            self.close()
            raise

    def __await__(self) -> Generator[Any, None, Cluster]:
        return self._start().__await__()

    def close(self, timeout: float | None = None) -> Any:
        """Stop the adaptive scaler, every worker group and the scheduler.
        Safe to call twice."""
        if self._runner is None:
            return self._close()
        if not self._runner.thread.is_alive():  # closed before
            return None
        try:
            return self._runner.run(self._close(), timeout)
        finally:
            self._runner.stop()

    async def _close(self) -> None:
        if self.status in ("closing", "closed"):
            return
        self.status = "closing"
        if self.adaptive is not None:
            self.adaptive.stop()
            self.adaptive = None
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        groups, self.groups = list(self.groups.values()), {}
        results = await asyncio.gather(*(g.close() for g in groups), return_exceptions=True)
        for group, result in zip(groups, results):
            if isinstance(result, BaseException):
                logger.warning("closing worker group %s failed: %r", group.name, result)
        if self._address is not None:
            await self._close_scheduler()
        if self._pool is not None:
            await self._pool.close()
        self.status = "closed"

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Cluster:
        return await self._start()

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    # ------------------------------------------------------------------ #
    # What users read
    # ------------------------------------------------------------------ #
    @property
    def scheduler_address(self) -> str:
        """The scheduler's address, ``"tcp://host:port"``."""
        if self._address is None:
            raise RuntimeError(f"the {type(self).__name__} is not started "
                               f"(status {self.status!r}): await it or use `async with`")
        return self._address

    @property
    def dashboard_link(self) -> str | None:
        """The URL of the scheduler's dashboard (None without a dashboard)."""
        return self._dashboard

    @property
    def scheduler_rpc(self) -> RPC:
        """Requests to the scheduler over the cluster's own connections."""
        if self._pool is None:
            raise RuntimeError(f"the {type(self).__name__} is not running")
        return self._pool.rpc(self.scheduler_address)

    def __repr__(self) -> str:
        workers = self._seen_workers
        threads = sum(int(w.get("nthreads", 0)) for w in workers.values())
        return (f"<{type(self).__name__} {self._address or self.status!r}: "
                f"{len(workers)} workers, {threads} threads, {len(self.groups)} groups>")

    def _repr_html_(self) -> str:
        workers = self._seen_workers
        threads = sum(int(w.get("nthreads", 0)) for w in workers.values())
        memory = sum(int(w.get("memory_limit", 0)) for w in workers.values())
        link = self.dashboard_link
        rows = [("Scheduler", html.escape(str(self._address or self.status))),
                ("Dashboard", f'<a href="{html.escape(link)}" target="_blank">{html.escape(link)}</a>'
                 if link else "none"),
                ("Workers", str(len(workers))), ("Threads", str(threads)),
                ("Memory", format_bytes(memory)),
                ("Adaptive", html.escape(repr(self.adaptive)) if self.adaptive else "off")]
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{v}</td></tr>" for k, v in rows)
        return f"<div><strong>{html.escape(type(self).__name__)}</strong><table>{body}</table></div>"

    # ------------------------------------------------------------------ #
    # Scaling
    # ------------------------------------------------------------------ #
    def scale(self, n: int | None = None, jobs: int | None = None) -> Any:
        """Run ``n`` workers (rounded up to whole groups), or ``jobs`` groups.

        Returns once new groups are launched (their workers register a moment
        later: ``wait_for_workers``) or removed ones are retired and stopped.
        While ``adapt()`` is on, ``n`` must stay within its bounds."""
        groups = self._groups_for(n, jobs)
        if self.adaptive is not None:
            self.adaptive.check_within(groups * self.workers_per_group)
        return self._sync(self._scale_groups(groups))

    def _groups_for(self, n: int | None, jobs: int | None) -> int:
        if (n is None) == (jobs is None):
            raise ValueError("scale(n) takes a number of workers, or scale(jobs=n) a number of "
                             "jobs (groups of workers); give exactly one")
        count = jobs if jobs is not None else n
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ValueError(f"scale: the number of {'jobs' if jobs is not None else 'workers'} "
                             f"must be an integer >= 0, not {count!r}")
        return count if jobs is not None else math.ceil(count / self.workers_per_group)

    def adapt(self, minimum: int = 0, maximum: int | float = math.inf,
              target_duration: str | float = "5s", interval: str | float = "1s",
              wait_count: int = 3) -> Adaptive:
        """Scale between ``minimum`` and ``maximum`` workers with the work
        (see :class:`~taskmill.cluster.adaptive.Adaptive`); replaces an earlier
        ``adapt``.  ``stop()`` on the returned object turns it off."""
        if self.status != "running":
            raise RuntimeError(f"adapt() needs a running cluster; it is {self.status}")
        adaptive = Adaptive(self, minimum=minimum, maximum=maximum,
                            target_duration=target_duration, interval=interval,
                            wait_count=wait_count)
        if self.adaptive is not None:
            self.adaptive.stop()
        self.adaptive = adaptive
        loop = self._runner.loop if self._runner is not None else asyncio.get_running_loop()
        loop.call_soon_threadsafe(adaptive.start)
        return adaptive

    def planned_workers(self) -> int:
        """Workers started or starting: the groups times their workers."""
        return len(self.groups) * self.workers_per_group

    async def _scale_groups(self, wanted: int, prefer: tuple[str, ...] = ()) -> None:
        """Have ``wanted`` groups; going down, close the groups whose workers
        are all in ``prefer`` (addresses) first among the registered ones."""
        assert self._scaling is not None
        async with self._scaling:
            have = len(self.groups)
            if wanted > have:
                await self._launch(wanted - have)
            elif wanted < have:
                await self._shrink(have - wanted, prefer)

    async def scale_to_workers(self, n: int, prefer: tuple[str, ...] = ()) -> None:
        """Have the fewest whole groups holding ``n`` workers (what
        :class:`~taskmill.cluster.adaptive.Adaptive` asks for)."""
        await self._scale_groups(math.ceil(n / self.workers_per_group), prefer)

    async def _launch(self, n: int) -> None:
        if self.status != "running":
            raise RuntimeError(f"cannot scale a {type(self).__name__} that is {self.status}")
        new = [self._new_group(f"{self.group_prefix}-{next(self._next_group)}") for _ in range(n)]
        for group in new:
            self.groups[group.name] = group
        results = await asyncio.gather(*(g.start() for g in new), return_exceptions=True)
        failed = [(g, r) for g, r in zip(new, results) if isinstance(r, BaseException)]
        for group, _ in failed:
            self.groups.pop(group.name, None)
        await asyncio.gather(*(g.close() for g, _ in failed), return_exceptions=True)
        if failed:
            reasons = "; ".join(f"{g.name}: {r}" for g, r in failed)
            raise RuntimeError(f"{type(self).__name__}: {len(failed)} of {n} new worker groups "
                               f"could not be started ({reasons})") from failed[0][1]

    async def _shrink(self, n: int, prefer: tuple[str, ...]) -> int:
        """Stop ``n`` groups: unregistered ones first, then the registered
        groups whose workers are all in ``prefer`` (addresses), then the idle
        ones holding least data.  -> how many were stopped."""
        workers = await self._workers()
        by_name = {info.get("name", ""): (addr, info) for addr, info in workers.items()}
        Member = tuple[WorkerGroup, list[tuple[str, dict[str, Any]]]]
        pending: list[Member] = []
        registered: list[Member] = []
        for group in self.groups.values():
            mine = [by_name[w] for w in group.worker_names if w in by_name]
            (registered if mine else pending).append((group, mine))
        stop = [g for g, _ in reversed(pending)][:n]
        if len(stop) < n:
            preferred = set(prefer)

            def cost(item: Member) -> tuple[Any, ...]:
                _, mine = item
                return (not all(addr in preferred for addr, _ in mine),
                        sum(int(i.get("processing", 0)) for _, i in mine),
                        sum(int(i.get("nbytes", 0)) for _, i in mine))

            chosen = sorted(registered, key=cost)[: n - len(stop)]
            addresses = [addr for _, mine in chosen for addr, _ in mine]
            retired = set(await self._retire(addresses))
            for group, mine in chosen:
                if all(addr in retired for addr, _ in mine):
                    stop.append(group)
                else:
                    logger.warning("worker group %s stays: its data found no other worker in time",
                                   group.name)
        for group in stop:
            self.groups.pop(group.name, None)
        await asyncio.gather(*(g.close() for g in stop), return_exceptions=True)
        return len(stop)

    async def _retire(self, addresses: list[str]) -> list[str]:
        if not addresses:
            return []
        wait = timeouts.RETIRE.get()
        retired = await self.scheduler_rpc.ask(RetireWorkers(tuple(addresses), None, True, wait),
                                               timeout=wait + timeouts.REQUEST.get())
        return list(retired)

    async def _workers(self) -> dict[str, dict[str, Any]]:
        info = await self.scheduler_rpc.ask(SchedulerInfo(), timeout=timeouts.REQUEST)
        workers: dict[str, dict[str, Any]] = info["workers"]
        self._seen_workers = workers
        return workers

    # ------------------------------------------------------------------ #
    # Watching
    # ------------------------------------------------------------------ #
    async def _watch(self) -> None:
        while self.status == "running":
            try:
                await self._workers()
            except (OSError, asyncio.TimeoutError) as exc:
                logger.debug("cluster watcher: scheduler-info failed: %r", exc)
            await self._poll_groups()
            self._forget_ended()
            await asyncio.sleep(WATCH_INTERVAL)

    async def _poll_groups(self) -> None:
        """Refresh what the groups' ``ended()`` reads, once per look of the
        watcher, after it saw the scheduler's workers (a job-queue cluster asks
        its batch system here which jobs are still queued).  Must not raise."""

    def _forget_ended(self) -> list[str]:
        """Drop the groups that ended by themselves; -> why each ended."""
        reasons = []
        for group in list(self.groups.values()):
            why = group.ended()
            if why is not None:
                del self.groups[group.name]
                reason = f"worker group {group.name} ended: {why}"
                logger.warning("%s", reason)
                self.failures.append(reason)
                self._ended_count += 1
                reasons.append(reason)
        return reasons

    def wait_for_workers(self, n: int, timeout: float | None = None) -> Any:
        """Wait until ``n`` workers have registered with the scheduler.

        Raises RuntimeError as soon as a group ends by itself (with the
        reason, e.g. a job's output), or when groups ended since the last
        such error (the watcher notices them between calls), and TimeoutError
        after ``timeout`` seconds (default: $TASKMILL_CONNECT_TIMEOUT x 6)."""
        return self._sync(self._wait_for_workers(n, timeout))

    async def _wait_for_workers(self, n: int, timeout: float | None) -> None:
        limit = timeout if timeout is not None else 6 * timeouts.CONNECT.get()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            self._forget_ended()  # the watcher may have forgotten some already: count them all
            if self._ended_count > self._ended_reported:
                unreported = list(self.failures)[self._ended_reported - self._ended_count:]
                self._ended_reported = self._ended_count
                raise RuntimeError("; ".join(unreported))
            workers = await self._workers()
            if len(workers) >= n:
                return
            if loop.time() > deadline:
                raise TimeoutError(f"only {len(workers)} of {n} workers registered with "
                                   f"{self.scheduler_address} within {limit:g}s")
            await asyncio.sleep(0.05)
