"""``LocalCluster``: the embedded cluster behind ``Executor()``.

A scheduler on the current event loop and ``n_workers`` workers on
loopback: worker processes under nannies (``processes=True``, the default),
or in-process workers on the same loop (``processes=False``; handy for
tests and debugging).  Sized to the machine by default; closing it stops
every process it started.  Its ``security`` (a fresh secret unless given one
or the environment has one, see :func:`~taskmill.security.own_cluster_security`)
guards the scheduler, the workers and the dashboard.
"""

from __future__ import annotations

import asyncio
import math
import os
from typing import Any

import psutil

from taskmill.core.units import parse_bytes
from taskmill.security import Security, own_cluster_security
from taskmill.server.nanny import Nanny
from taskmill.server.scheduler import Scheduler
from taskmill.server.worker import Worker


def default_sizing(n_workers: int | None, threads_per_worker: int | None,
                   processes: bool) -> tuple[int, int]:
    """Workers and threads per worker that use every core once."""
    cpus = os.cpu_count() or 1
    if not processes:
        return n_workers or 1, threads_per_worker or cpus
    if n_workers is None and threads_per_worker is None:
        n_workers = cpus if cpus <= 4 else max(1, int(math.sqrt(cpus)))
    if n_workers is None:
        n_workers = max(1, cpus // (threads_per_worker or 1))
    if threads_per_worker is None:
        threads_per_worker = max(1, cpus // n_workers)
    return n_workers, threads_per_worker


class LocalCluster:
    """A scheduler plus workers on this machine."""

    def __init__(self, n_workers: int | None = None, threads_per_worker: int | None = None,
                 processes: bool = True, memory_limit: int | str | None = None,
                 host: str = "127.0.0.1", scheduler_port: int = 0,
                 startup_timeout: float = 60.0, dashboard_port: int | None = 0,
                 resources: dict[str, float] | None = None,
                 security: Security | None = None) -> None:
        self.n_workers, self.threads_per_worker = default_sizing(n_workers, threads_per_worker, processes)
        self.processes = processes
        total = psutil.virtual_memory().total
        self.memory_limit = (parse_bytes(memory_limit) if memory_limit is not None
                             else total // self.n_workers)
        self.host = host
        self.scheduler_port = scheduler_port
        self.startup_timeout = startup_timeout
        #: the scheduler's web dashboard: 0 = any free port, None = off
        self.dashboard_port = dashboard_port
        #: abstract resources each worker declares, e.g. {"GPU": 1}
        self.resources = dict(resources or {})
        self.scheduler: Scheduler | None = None
        self.workers: list[Any] = []
        #: the token (and TLS files) of this cluster's processes and clients
        self.security = own_cluster_security(security)

    @property
    def scheduler_address(self) -> str:
        if self.scheduler is None:
            raise RuntimeError("the cluster is not started")
        return self.scheduler.address

    async def start(self) -> LocalCluster:
        self.scheduler = await Scheduler(host=self.host, port=self.scheduler_port,
                                         dashboard_port=self.dashboard_port,
                                         security=self.security).start()
        try:
            self.workers = [self._make_worker(i) for i in range(self.n_workers)]
            await asyncio.wait_for(asyncio.gather(*(w.start() for w in self.workers)),
                                   self.startup_timeout)
            await self.scheduler.wait_for_workers(self.n_workers, self.startup_timeout)
        except BaseException:
            await self.close()
            raise
        return self

    def _make_worker(self, i: int) -> Any:
        kwargs = dict(nthreads=self.threads_per_worker, memory_limit=self.memory_limit,
                      host=self.host, name=f"local-{i}", resources=self.resources,
                      security=self.security)
        if self.processes:
            return Nanny(self.scheduler_address, **kwargs)  # type: ignore[arg-type]
        return Worker(self.scheduler_address, **kwargs)  # type: ignore[arg-type]

    async def close(self) -> None:
        await asyncio.gather(*(w.close() for w in self.workers), return_exceptions=True)
        if self.scheduler is not None:
            await self.scheduler.close()

    async def __aenter__(self) -> LocalCluster:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
