"""A taskmill cluster across the namespaces of a :class:`~tests.multihost.hosts.Network`.

Theory of operation
-------------------
The scheduler runs on one host (``taskmill-scheduler`` listening on that
host's address, port 8786, so that a restarted scheduler is found at the same
address), each worker on a host of its own (``taskmill-worker`` with its
nanny, listening on its host's address), each started with ``ip netns exec``
as ``python -m taskmill.cli...``.  Every process gets the cluster's token
through ``TASKMILL_TOKEN_FILE`` (a 0600 file), as an operator would deploy
it; the client is an ``Executor`` in the test process (the root namespace, on the
bridge) with ``Security(token=...)``.

Workers are told apart by their host: :meth:`MultihostCluster.workers_on`
lists the scheduler's workers whose address is on a host.  :meth:`stop`
ends every process it started (SIGTERM, then SIGKILL of the process group
after a deadline) and returns the processes still running in the network's
namespaces afterwards: a test asserts that list is empty.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskmill import Executor, Security
from tests.multihost.hosts import Host, Network
from tests.multiprocess.helpers import Proc

PORT = 8786


def wait_until(condition: Callable[[], Any], timeout: float, message: str,
               interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something true (returned); fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} did not happen within {timeout:.0f}s")
        time.sleep(interval)


class MultihostCluster:
    """A scheduler host and worker hosts of ``network``, protected by a fresh token."""

    def __init__(self, network: Network, directory: Path) -> None:
        self.network = network
        self.token = secrets.token_urlsafe(32)
        self.token_file = directory / "token"
        self.token_file.write_text(self.token + "\n")
        os.chmod(self.token_file, 0o600)
        self.env = {"TASKMILL_TOKEN_FILE": str(self.token_file)}
        self.scheduler_host: Host | None = None
        self.scheduler: Proc | None = None
        self.workers: dict[str, Proc] = {}
        self.executors: list[Executor] = []

    @property
    def address(self) -> str:
        """The scheduler's address."""
        assert self.scheduler_host is not None, "start_scheduler first"
        return f"tcp://{self.scheduler_host.address}:{PORT}"

    def start_scheduler(self, host: Host) -> Proc:
        """Start the scheduler on ``host`` and wait until it listens."""
        self.scheduler_host = host
        self.scheduler = host.run("-m", "taskmill.cli.scheduler_cli", "--host", host.address,
                                  "--port", str(PORT), "--no-dashboard",
                                  env=self.env)
        self.scheduler.wait_for_line(r"scheduler ready", timeout=30)
        return self.scheduler

    def start_worker(self, host: Host, *args: str) -> Proc:
        """Start a one-thread worker (under its nanny) on ``host``."""
        proc = host.run("-m", "taskmill.cli.worker_cli", self.address, "--host", host.address,
                        "--nthreads", "1", "--memory-limit", "1GB", "--name", host.name, *args,
                        env=self.env)
        self.workers[host.name] = proc
        return proc

    def executor(self) -> Executor:
        """A client in the test process (closed by :meth:`stop`)."""
        e = Executor(self.address, security=Security(token=self.token))
        self.executors.append(e)
        return e

    def workers_on(self, e: Executor, host: Host) -> list[str]:
        """The scheduler's workers listening on ``host``."""
        return [w for w in e.scheduler_info()["workers"] if w.startswith(f"tcp://{host.address}:")]

    def wait_for_hosts(self, e: Executor, *hosts: Host, timeout: float = 30) -> dict[str, str]:
        """Wait until one worker of each of ``hosts`` is registered: {host name: worker address}."""
        def registered() -> dict[str, str] | None:
            found = {h.name: self.workers_on(e, h) for h in hosts}
            return {n: ws[0] for n, ws in found.items()} if all(found.values()) else None
        return wait_until(registered, timeout, f"workers on {[h.name for h in hosts]} registering")

    def kill_scheduler(self) -> None:
        """SIGKILL the scheduler process."""
        assert self.scheduler is not None
        self.scheduler.popen.kill()
        self.scheduler.popen.wait()

    def stop(self) -> dict[str, list[int]]:
        """Close the clients, stop workers then scheduler; the processes left in the namespaces."""
        for e in self.executors:
            e.close()
        procs = [*self.workers.values(), *([self.scheduler] if self.scheduler else [])]
        for proc in procs:
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in procs:
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.popen.wait()
        return wait_for_no_processes(self.network)


def wait_for_no_processes(network: Network, timeout: float = 10) -> dict[str, list[int]]:
    """The processes still in the namespaces once they had ``timeout`` s to end (empty: none)."""
    deadline = time.monotonic() + timeout
    while (left := network.leftover_processes()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left
