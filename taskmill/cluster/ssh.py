"""``SSHCluster``: a scheduler and workers on a few machines reached over SSH.

Theory of operation
-------------------
The first of ``hosts`` runs ``taskmill-scheduler`` (``python -m
taskmill.cli.scheduler_cli --host HOST --port 0 --dashboard-port 0``); the
cluster reads the scheduler's address from its log line "scheduler ready:
connect with Executor('tcp://...')" and its dashboard from "dashboard: URL".
Every worker group is one ``taskmill-worker SCHEDULER --name GROUP --host
HOST`` (a nanny per worker; ``worker_options={"nworkers": 2}`` makes two
workers per group), placed on the worker host (``hosts[1:]``) that runs the
fewest groups; the cluster starts with one group per worker host, and
``scale``/``adapt`` (from :class:`~taskmill.cluster.base.Cluster`) add and
remove groups.

Each program runs through the launcher (:mod:`taskmill.cluster.launcher`) on
its own SSH connection (:mod:`taskmill.cluster.remote`): the cluster's secret
(``own_cluster_security``: the given ``security=``, else the environment's
token or TLS, else a fresh ``Security.temporary()``) reaches it on stdin,
never in a command line, and the program with everything it started stops
when the connection closes, whether by ``close()`` or because this process
died.  Both programs listen on their host's address with that secret, so the
loopback-only rule of the command line is met without ``--insecure``.

``worker_options`` and ``scheduler_options`` are the programs' command-line
options, named as in Python (``{"nthreads": 2, "memory_limit": "4GB"}``); an
unknown name fails at once, before any connection.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

import click

from taskmill import config, timeouts
from taskmill.cli import scheduler_cli, worker_cli
from taskmill.cluster.base import Cluster, WorkerGroup
from taskmill.cluster.launcher import GRACE, STARTED
from taskmill.cluster.remote import RemoteProcess
from taskmill.security import Security, own_cluster_security

_SCHEDULER_READY = re.compile(r"scheduler ready: connect with Executor\('([^']+)'\)")
_DASHBOARD = re.compile(r"dashboard: (\S+)")
_LAUNCHED = re.compile(re.escape(STARTED))
#: seconds to wait for the dashboard's line once the scheduler is ready
DASHBOARD_WAIT = 10.0
#: options the cluster sets itself, per program
_RESERVED = {"worker": {"scheduler_address", "scheduler_file", "host", "name"},
             "scheduler": {"host"}}


def command_line_options(program: str, command: click.Command,
                         options: dict[str, Any] | None) -> list[str]:
    """``{"memory_limit": "4GB", "no_nanny": True}`` -> ``["--memory-limit", "4GB",
    "--no-nanny"]`` for ``command``; an unknown or reserved name is a ValueError."""
    known = {p.name: p for p in command.params if isinstance(p, click.Option) and p.name}
    args: list[str] = []
    for key, value in (options or {}).items():
        name = str(key).replace("-", "_")
        param = known.get(name)
        if name in _RESERVED[program]:
            raise ValueError(f"SSHCluster({program}_options={{{key!r}: ...}}): the cluster sets "
                             f"{name} itself")
        if param is None:
            raise ValueError(f"SSHCluster({program}_options=...): unknown option {key!r}; "
                             f"taskmill-{program} takes {', '.join(sorted(known))}")
        flag = param.opts[0]
        if param.is_flag:
            if value:
                args.append(flag)
        elif param.multiple and isinstance(value, (list, tuple)):
            for item in value:
                args += [flag, str(item)]
        elif value is not None:
            args += [flag, str(value)]
    return args


def _per_host(name: str, value: Any, hosts: Sequence[str], default: Any) -> list[Any]:
    """One value for every host: ``value`` repeated, or a list of one per host."""
    if value is None:
        return [default] * len(hosts)
    if isinstance(value, (list, tuple)):
        if len(value) != len(hosts):
            raise ValueError(f"SSHCluster({name}=...): give one value for all hosts or a list of "
                             f"one per host ({len(hosts)}), not {len(value)}")
        return list(value)
    return [value] * len(hosts)


class SSHGroup(WorkerGroup):
    """One ``taskmill-worker`` program (one or more workers) on a host."""

    def __init__(self, name: str, n_workers: int, host_index: int, process: RemoteProcess,
                 timeout: float) -> None:
        super().__init__(name, n_workers)
        self.host_index = host_index
        self.process = process
        self.timeout = timeout

    async def start(self) -> None:
        await self.process.start(timeouts.CONNECT.get())
        await self.process.expect(_LAUNCHED, self.timeout)
        self.process.stop_watching()

    async def close(self) -> None:
        await self.process.close(GRACE + 5.0)

    def ended(self) -> str | None:
        return self.process.ended()


class SSHCluster(Cluster):
    """A scheduler on ``hosts[0]`` and a worker program on each of ``hosts[1:]``, over SSH.

    ``connect_options``: keyword arguments of ``asyncssh.connect`` (``port``,
    ``username``, ``client_keys``, ``known_hosts``, ...), one dict for all
    hosts or a list of one per host.  ``worker_options``/``scheduler_options``:
    options of ``taskmill-worker``/``taskmill-scheduler`` (e.g. ``{"nthreads":
    2, "nworkers": 1, "memory_limit": "4GB"}``).  ``remote_python``: the python
    to run on the hosts (an absolute path: remote commands do not see your
    virtual environment), one for all or a list of one per host; by default
    the path of this interpreter.  ``security``: the secret of the cluster (a
    fresh ``Security.temporary()`` by default); TLS files it names must exist
    on every host.  Give a host twice to run the scheduler and a worker (or
    several workers) on one machine.
    """

    group_prefix = "ssh"

    def __init__(self, hosts: Sequence[str],
                 connect_options: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
                 worker_options: dict[str, Any] | None = None,
                 scheduler_options: dict[str, Any] | None = None,
                 remote_python: str | Sequence[str] | None = None, *,
                 security: Security | None = None, asynchronous: bool = False,
                 startup_timeout: float = 60.0) -> None:
        if isinstance(hosts, str) or not hosts or not all(isinstance(h, str) and h for h in hosts):
            raise ValueError(f"SSHCluster(hosts=...) takes a list of host names, not {hosts!r}")
        if len(hosts) < 2:
            raise ValueError("SSHCluster(hosts=...): the first host runs the scheduler and the "
                             "others the workers, so give at least two (the same host twice "
                             "runs both on one machine)")
        worker_options = dict(worker_options or {})
        nworkers = worker_options.get("nworkers", 1)
        if not isinstance(nworkers, int) or isinstance(nworkers, bool) or nworkers < 1:
            raise ValueError(f"SSHCluster(worker_options={{'nworkers': {nworkers!r}}}): the "
                             f"number of workers per worker program must be an integer >= 1")
        nthreads = worker_options.get("nthreads")
        # everything is checked before the base starts its event loop thread
        connect = [dict(o) for o in _per_host("connect_options", connect_options, hosts, {})]
        pythons = [str(p) for p in _per_host("remote_python", remote_python, hosts, sys.executable)]
        worker_args = command_line_options("worker", worker_cli.main, worker_options)
        scheduler_args = command_line_options("scheduler", scheduler_cli.main,
                                              {"port": 0, "dashboard_port": 0,
                                               **(scheduler_options or {})})
        super().__init__(asynchronous=asynchronous,
                         security=own_cluster_security(security),
                         workers_per_group=nworkers,
                         threads_per_worker=int(nthreads) if nthreads is not None else None)
        self.hosts = list(hosts)
        #: asyncssh.connect options, per host
        self.connect_options = connect
        #: the python to run on each host
        self.remote_python = pythons
        self.worker_args = worker_args
        self.scheduler_args = scheduler_args
        self.startup_timeout = startup_timeout
        self.scheduler_process: RemoteProcess | None = None
        self._placed: list[SSHGroup] = []
        if not asynchronous:
            try:
                self._sync(self._start())
            except BaseException:
                self.close()
                raise

    async def _start(self, n_groups: int = 0) -> SSHCluster:
        await super()._start(n_groups or len(self.hosts) - 1)
        try:
            await self._wait_for_workers(self.planned_workers(), self.startup_timeout)
        except BaseException:
            await self._close()
            raise
        return self

    async def start(self) -> SSHCluster:
        """Start the scheduler and one worker program per worker host."""
        return await self._start()

    def _process(self, index: int, module: str, args: list[str], label: str) -> RemoteProcess:
        assert self.security is not None
        # the secret, and the options set with taskmill.config.set here (as a nanny passes them)
        env = {**self.security.environ(), **config.inheritable()}
        return RemoteProcess(self.hosts[index], self.connect_options[index],
                             self.remote_python[index], module, args, env, label)

    async def _start_scheduler(self) -> tuple[str, str | None]:
        process = self._process(0, "taskmill.cli.scheduler_cli",
                                ["--host", self.hosts[0], *self.scheduler_args], "scheduler")
        self.scheduler_process = process
        try:
            await process.start(timeouts.CONNECT.get())
            address = (await process.expect(_SCHEDULER_READY, self.startup_timeout)).group(1)
            dashboard = None
            if "--no-dashboard" not in self.scheduler_args:
                try:
                    dashboard = (await process.expect(_DASHBOARD, DASHBOARD_WAIT)).group(1)
                except RuntimeError:
                    pass  # a scheduler without a dashboard is still a scheduler
        except BaseException:
            await process.close(GRACE + 5.0)
            raise
        process.stop_watching()
        return address, dashboard

    async def _close_scheduler(self) -> None:
        if self.scheduler_process is not None:
            await self.scheduler_process.close(GRACE + 5.0)

    def _new_group(self, name: str) -> SSHGroup:
        # the groups that run or are about to (one launch makes several before starting any)
        self._placed = [g for g in self._placed if not g.process.closing and g.ended() is None]
        load = Counter(g.host_index for g in self._placed)
        index = min(range(1, len(self.hosts)), key=lambda i: load[i])
        host = self.hosts[index]
        process = self._process(index, "taskmill.cli.worker_cli",
                                [self.scheduler_address, "--name", name, "--host", host,
                                 *self.worker_args], name)
        group = SSHGroup(name, self.workers_per_group, index, process, self.startup_timeout)
        self._placed.append(group)
        return group
