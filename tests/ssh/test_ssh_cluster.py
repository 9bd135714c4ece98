"""SSHCluster against a real OpenSSH server on loopback (see conftest.py).

Until the security plumbing lets a cluster's own connections and
``Executor(cluster)`` prove ``cluster.security`` by themselves, each test
puts the cluster's token in ``$TASKMILL_TOKEN`` around the cluster.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from taskmill import Executor, Security
from taskmill.cluster.remote import RemoteError
from tests.conftest import wait_for
from tests.ssh.conftest import SSHServer, cluster_processes

pytest.importorskip("asyncssh")
from taskmill.cluster.ssh import SSHCluster  # noqa: E402

HOSTS = ["127.0.0.1", "127.0.0.1"]
WORKER = {"nthreads": 1, "memory_limit": "500MB"}


@pytest.fixture
def security(monkeypatch: pytest.MonkeyPatch) -> Security:
    """The cluster's secret, also in this process's environment (see the module docstring)."""
    token = secrets.token_urlsafe(16)
    monkeypatch.setenv("TASKMILL_TOKEN", token)
    return Security(token=token)


@pytest.fixture
def make_cluster(sshd: SSHServer, security: Security) -> Iterator[Callable[..., SSHCluster]]:
    """SSHCluster(...) on the test sshd; after the test: closed, and nothing left on the host."""
    made: list[SSHCluster] = []
    before = cluster_processes(sshd, None)

    def make(hosts: list[str] = HOSTS, **kwargs: Any) -> SSHCluster:
        options: dict[str, Any] = dict(connect_options=sshd.connect_options(),
                                       remote_python=sshd.python, worker_options=WORKER,
                                       security=security)
        options.update(kwargs)
        cluster = SSHCluster(hosts, **options)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.close()
    wait_for(lambda: cluster_processes(sshd, security.token) == before, timeout=20,
             message=f"no processes left on the host (left: {cluster_processes(sshd, security.token)})")


def test_two_workers_compute(make_cluster: Callable[..., SSHCluster], sshd: SSHServer,
                             security: Security) -> None:
    cluster = make_cluster(["127.0.0.1", "127.0.0.1", "127.0.0.1"])
    assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
    assert cluster.dashboard_link is not None and cluster.dashboard_link.startswith("http")
    with Executor(cluster) as ex:
        workers = ex.scheduler_info()["workers"]
        assert sorted(w["name"] for w in workers.values()) == ["ssh-0", "ssh-1"]
        assert ex.submit(sum, [1, 2, 3]).result() == 6
        assert sum(ex.gather(ex.map(lambda x: x * x, range(20)))) == sum(x * x for x in range(20))
    # the secret is in no command line of the cluster's processes
    running = cluster_processes(sshd, security.token)
    assert running and not any(str(security.token) in line for line in running)
