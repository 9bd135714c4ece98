"""``LocalCluster``: the embedded cluster behind ``Executor()``.

A scheduler on the cluster's event loop and ``n_workers`` workers on
loopback: worker processes under nannies (``processes=True``, the default),
or in-process workers on the same loop (``processes=False``; handy for
tests and debugging).  Sized to the machine by default; ``scale`` and
``adapt`` come from :class:`~taskmill.cluster.base.Cluster` (each worker is
its own group); closing it stops every process it started.  Its
``security`` (a fresh secret unless given one or the environment has one,
see :func:`~taskmill.security.own_cluster_security`) guards the scheduler,
the workers and the dashboard.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psutil

from taskmill.cluster.base import Cluster, WorkerGroup
from taskmill.cluster.sizing import default_sizing
from taskmill.units import parse_bytes
from taskmill.security import Security, own_cluster_security
from taskmill.server.nanny import Nanny
from taskmill.server.prestart import PrestartedProcess
from taskmill.server.scheduler import Scheduler
from taskmill.server.worker import Worker


class LocalGroup(WorkerGroup):
    """One worker on this machine: a nanny and its worker process, or an
    in-process worker."""

    def __init__(self, name: str, node: Nanny | Worker) -> None:
        super().__init__(name)
        self.node = node
        self._closing = False

    async def start(self) -> None:
        await self.node.start()

    async def close(self) -> None:
        self._closing = True
        await self.node.close()

    def ended(self) -> str | None:
        if self._closing or not self.node.closed_event.is_set():
            return None
        return f"the {type(self.node).__name__.lower()} stopped"


class LocalCluster(Cluster):
    """A scheduler plus workers on this machine.

    ``dashboard_address=":0"`` serves the dashboard on any free port
    (``None``: no dashboard; ``dashboard_port=`` is the older spelling).
    ``memory_limit`` is per worker: bytes, ``"4GB"``, or ``"auto"`` (the
    machine's memory shared among the workers).
    """

    group_prefix = "local"

    def __init__(self, n_workers: int | None = None, threads_per_worker: int | None = None,
                 processes: bool = True, memory_limit: int | str | None = "auto",
                 resources: dict[str, float] | None = None,
                 dashboard_address: str | None = ":0", security: Security | None = None,
                 *, asynchronous: bool = False, host: str = "127.0.0.1", scheduler_port: int = 0,
                 startup_timeout: float = 60.0, dashboard_port: int | None | str = "from-address",
                 ) -> None:
        n, threads = default_sizing(n_workers, threads_per_worker, processes)
        super().__init__(asynchronous=asynchronous, security=own_cluster_security(security),
                         threads_per_worker=threads)
        self.n_workers = n
        self.processes = processes
        total = psutil.virtual_memory().total
        self.memory_limit = (total // max(1, n) if memory_limit in (None, "auto")
                             else parse_bytes(memory_limit))  # type: ignore[arg-type]
        self.host = host
        self.scheduler_port = scheduler_port
        self.startup_timeout = startup_timeout
        #: the scheduler's web dashboard: 0 = any free port, None = off
        self.dashboard_port = (port_of_dashboard(dashboard_address) if isinstance(dashboard_port, str)
                               else dashboard_port)
        #: abstract resources each worker declares, e.g. {"GPU": 1}
        self.resources = dict(resources or {})
        self.scheduler: Scheduler | None = None
        #: worker processes started ahead, for the first nannies (``start``)
        self._prestarted: list[PrestartedProcess] = []
        self._start_if_blocking()

    @property
    def workers(self) -> list[Nanny | Worker]:
        """The nannies (or in-process workers) of the groups running now."""
        return [g.node for g in self.groups.values() if isinstance(g, LocalGroup)]

    async def _start(self, n_groups: int = 0) -> LocalCluster:
        try:
            await super()._start(n_groups or self.n_workers)
        finally:  # the first nannies adopted theirs; any left over are not needed
            left, self._prestarted = self._prestarted, []
            for process in left:
                await process.discard()
        assert self.scheduler is not None
        await self.scheduler.wait_for_workers(self.n_workers, self.startup_timeout)
        self.scheduler.start_dashboard()  # not before: aiohttp's import would slow the workers' start
        return self

    async def start(self, prestarted: Sequence[PrestartedProcess] = ()) -> LocalCluster:
        """Start the scheduler and the first ``n_workers`` workers; the first
        nannies adopt the ``prestarted`` worker processes (see
        :mod:`taskmill.server.prestart`) instead of starting their own."""
        self._prestarted = list(prestarted)
        return await self._start()

    async def _start_scheduler(self) -> tuple[str, str | None]:
        self.scheduler = await Scheduler(host=self.host, port=self.scheduler_port,
                                         dashboard_port=self.dashboard_port,
                                         security=self.security, dashboard_later=True).start()
        return self.scheduler.address, None

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's URL (it starts in the background: a blocking
        cluster waits for it here; an asynchronous one may say None until then)."""
        return in_process_dashboard_link(self)

    async def _close_scheduler(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.close()

    def _new_group(self, name: str) -> LocalGroup:
        kwargs: dict[str, Any] = dict(nthreads=self.threads_per_worker,
                                      memory_limit=self.memory_limit, host=self.host, name=name,
                                      resources=self.resources, security=self.security)
        if self.processes:
            prestarted = self._prestarted.pop() if self._prestarted else None
            node: Nanny | Worker = Nanny(self.scheduler_address, prestarted=prestarted, **kwargs)
        else:
            node = Worker(self.scheduler_address, **kwargs)
        return LocalGroup(name, node)


def in_process_dashboard_link(cluster: Cluster) -> str | None:
    """The dashboard link of the scheduler a cluster runs in this process
    (``cluster.scheduler``): a fresh one-time login link each time (with a
    token), waited for by a blocking cluster (the dashboard starts in the
    background)."""
    scheduler: Scheduler | None = getattr(cluster, "scheduler", None)
    if scheduler is None:
        return None
    if cluster._runner is not None and cluster.status == "running":
        return cluster._runner.run(scheduler.dashboard_ready())  # type: ignore[no-any-return]
    return scheduler.dashboard_link


def port_of_dashboard(dashboard_address: str | None) -> int | None:
    """``":8787"`` -> 8787, ``":0"`` -> 0 (any free port), None -> None (off)."""
    if dashboard_address is None:
        return None
    _, _, port = str(dashboard_address).rpartition(":")
    if not port.isdigit():
        raise ValueError(f"dashboard_address={dashboard_address!r}: write ':8787', "
                         f"':0' (any free port) or None (no dashboard)")
    return int(port)
