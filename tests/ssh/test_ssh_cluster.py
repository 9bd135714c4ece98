"""SSHCluster against a real OpenSSH server on loopback (see conftest.py).
The cluster's own connections and ``Executor(cluster)`` prove the cluster's
secret by themselves: nothing is set in this process's environment."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from taskmill import Executor, Security, wait
from taskmill.cluster.remote import RemoteError
from tests.conftest import wait_for
from tests.ssh.conftest import LOOPBACK_HOSTS, SSHServer, cluster_processes

pytest.importorskip("asyncssh")
from taskmill.cluster.ssh import SSHCluster  # noqa: E402

HOSTS = ["127.0.0.1", "127.0.0.1"]
WORKER = {"nthreads": 1, "memory_limit": "500MB"}


@pytest.fixture
def security() -> Security:
    """The cluster's secret (known to the test, to find the cluster's processes by it)."""
    return Security(token=secrets.token_urlsafe(16))


@pytest.fixture
def make_cluster(sshd: SSHServer, security: Security) -> Iterator[Callable[..., SSHCluster]]:
    """SSHCluster(...) on the test sshd; after the test: closed, and nothing left on the host."""
    made: list[SSHCluster] = []

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
    try:
        wait_for(lambda: not cluster_processes(sshd, security.token), timeout=20,
                 message="no processes left on the host")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {cluster_processes(sshd, security.token)}") from None


def test_import_taskmill_leaves_asyncssh_alone() -> None:
    import subprocess
    import sys

    code = ("import sys, taskmill; assert 'asyncssh' not in sys.modules; "
            "from taskmill import SSHCluster; assert 'asyncssh' in sys.modules")
    done = subprocess.run([sys.executable, "-W", "error", "-c", code],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_contracts_signature() -> None:
    import inspect

    import taskmill

    assert taskmill.SSHCluster is SSHCluster
    params = list(inspect.signature(SSHCluster).parameters)
    assert params[:5] == ["hosts", "connect_options", "worker_options",
                          "scheduler_options", "remote_python"]
    assert "security" in params
    for method in ["scale", "adapt", "close", "wait_for_workers"]:
        assert callable(getattr(SSHCluster, method)), method


def test_two_workers_compute(make_cluster: Callable[..., SSHCluster], sshd: SSHServer,
                             security: Security) -> None:
    cluster = make_cluster(LOOPBACK_HOSTS)
    assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
    assert cluster.dashboard_link is not None and cluster.dashboard_link.startswith("http")
    with Executor(cluster) as ex:
        workers = ex.scheduler_info()["workers"]
        # one worker on each worker host, listening on its host's address
        assert sorted((w["name"], a.rpartition(":")[0]) for a, w in workers.items()) == [
            ("ssh-0", "tcp://127.0.0.2"), ("ssh-1", "tcp://127.0.0.3")]
        assert ex.submit(sum, [1, 2, 3]).result() == 6
        assert sum(ex.gather(ex.map(lambda x: x * x, range(20)))) == sum(x * x for x in range(20))
    # the secret is in no command line of the cluster's processes
    running = cluster_processes(sshd, security.token)
    assert running and not any(str(security.token) in line for line in running)
    cluster.close()
    cluster.close()  # twice is fine
    assert cluster.status == "closed"


def test_without_security_the_cluster_makes_a_fresh_secret(sshd: SSHServer) -> None:
    cluster = SSHCluster(HOSTS, connect_options=sshd.connect_options(), remote_python=sshd.python,
                         worker_options=WORKER)
    try:
        assert cluster.security is not None and cluster.security.token
        with Executor(cluster) as ex:  # proves the cluster's secret: no set-up here
            assert ex.submit(sum, [4, 5]).result() == 9
        with pytest.raises(OSError):  # anyone else is refused, even on loopback
            Executor(cluster.scheduler_address, security=Security(), timeout=3)
    finally:
        cluster.close()
    wait_for(lambda: not cluster_processes(sshd, cluster.security.token), timeout=20,
             message="no processes left on the host")


def test_scale_up_and_down_keeps_data(make_cluster: Callable[..., SSHCluster]) -> None:
    cluster = make_cluster()
    with Executor(cluster) as ex:
        started = time.monotonic()
        cluster.scale(3)
        cluster.wait_for_workers(3, timeout=30)
        print(f"scale(1 -> 3): two more workers registered in {time.monotonic() - started:.2f}s")
        assert len(ex.scheduler_info()["workers"]) == 3
        futures = ex.map(lambda x: bytes(1000) * x, range(30), pure=False)
        wait(futures)
        assert len({w for ws in ex.who_has(futures).values() for w in ws}) > 1
        cluster.scale(1)
        assert len(cluster.groups) == 1
        wait_for(lambda: len(ex.scheduler_info()["workers"]) == 1, timeout=20,
                 message="two workers gone")
        assert [len(f.result()) for f in futures] == [1000 * x for x in range(30)]


def test_a_refused_host_says_which_and_what_to_do(make_cluster: Callable[..., SSHCluster],
                                                   sshd: SSHServer) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(RemoteError, match=rf"cannot connect to 127.0.0.1:{closed} over SSH.*sshd"):
        make_cluster(connect_options=sshd.connect_options(port=closed))


def test_a_refused_worker_host_closes_the_cluster(make_cluster: Callable[..., SSHCluster],
                                                  sshd: SSHServer) -> None:
    good = sshd.connect_options()
    with pytest.raises(RuntimeError, match=r"ssh-1: cannot connect to 127.0.0.1:1 over SSH"):
        make_cluster(["127.0.0.1", "127.0.0.1", "127.0.0.1"],
                     connect_options=[good, good, sshd.connect_options(port=1)])
    # (the fixture checks that the scheduler and the other worker are gone)


def test_a_key_the_host_refuses_says_so(make_cluster: Callable[..., SSHCluster],
                                        sshd: SSHServer, tmp_path: Any) -> None:
    import asyncssh

    other = asyncssh.generate_private_key("ssh-ed25519")
    other.write_private_key(str(tmp_path / "other_key"))
    (tmp_path / "other_key").chmod(0o600)
    options = sshd.connect_options(client_keys=[str(tmp_path / "other_key")], agent_path=None)
    with pytest.raises(RemoteError, match=r"refused to log in 'root'.*authorized_keys on 127.0.0.1"):
        make_cluster(connect_options=options)


def test_an_unknown_host_key_says_how_to_trust_it(make_cluster: Callable[..., SSHCluster],
                                                  sshd: SSHServer, tmp_path: Any) -> None:
    import asyncssh

    stranger = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {stranger}")
    with pytest.raises(RemoteError, match=r"host key is unknown or has changed.*ssh-keyscan"):
        make_cluster(connect_options=sshd.connect_options(known_hosts=str(known)))


def test_a_missing_remote_python_says_so(make_cluster: Callable[..., SSHCluster]) -> None:
    with pytest.raises(RemoteError, match=r"remote python '/nonexistent/python' could not be run"):
        make_cluster(remote_python="/nonexistent/python")


def test_a_remote_python_without_taskmill_says_so(make_cluster: Callable[..., SSHCluster],
                                                  sshd: SSHServer) -> None:
    # the scheduler's python is fine, the workers' is not: the cluster closes what it started
    with pytest.raises(RuntimeError, match=r"/usr/bin/python3 cannot import taskmill: install"):
        make_cluster(remote_python=[sshd.python, "/usr/bin/python3"])


def test_bad_options_fail_before_connecting(no_leaks: None) -> None:
    with pytest.raises(ValueError, match=r"unknown option 'threads'.*nthreads"):
        SSHCluster(HOSTS, worker_options={"threads": 2})
    with pytest.raises(ValueError, match=r"sets host itself"):
        SSHCluster(HOSTS, scheduler_options={"host": "0.0.0.0"})
    with pytest.raises(ValueError, match=r"at least two"):
        SSHCluster(["127.0.0.1"])
    with pytest.raises(ValueError, match=r"one per host \(2\), not 3"):
        SSHCluster(HOSTS, remote_python=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"'nworkers': 0.*integer >= 1"):
        SSHCluster(HOSTS, worker_options={"nworkers": 0})


_OWNER = """
import json, sys, threading
from taskmill import Security
from taskmill.cluster.ssh import SSHCluster
kwargs = json.loads(sys.argv[1])
cluster = SSHCluster(["127.0.0.1", "127.0.0.1"], security=Security(token=kwargs.pop("token")), **kwargs)
print("ready", flush=True)
threading.Event().wait()
"""


def test_the_remote_processes_die_with_their_client(sshd: SSHServer, security: Security) -> None:
    """A client that is killed (no close()) leaves nothing running on the host."""
    import json
    import os
    import subprocess
    import sys

    from tests.ssh.conftest import ROOT

    kwargs = dict(connect_options=sshd.connect_options(), remote_python=sshd.python,
                  worker_options=WORKER, token=security.token)
    owner = subprocess.Popen([sys.executable, "-c", _OWNER, json.dumps(kwargs)],
                             stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert owner.stdout is not None and owner.stdout.readline() == "ready\n"
        assert len(cluster_processes(sshd, security.token)) >= 4  # sessions, scheduler, nanny, worker
    finally:
        owner.kill()
        owner.wait()
    try:
        wait_for(lambda: not cluster_processes(sshd, security.token), timeout=30,
                 message="the cluster's processes gone after its client died")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {cluster_processes(sshd, security.token)}") from None


def test_asynchronous_use(sshd: SSHServer, security: Security) -> None:
    async def main() -> str:
        async with SSHCluster(HOSTS, connect_options=sshd.connect_options(), worker_options=WORKER,
                              remote_python=sshd.python, security=security,
                              asynchronous=True) as cluster:
            async with Executor(cluster, asynchronous=True) as ex:
                assert await ex.submit(pow, 2, 10) == 1024
        return cluster.status

    assert asyncio.run(main()) == "closed"
    wait_for(lambda: not cluster_processes(sshd, security.token), timeout=20,
             message="no processes left on the host")


def test_a_worker_that_exits_is_reported_with_its_output(
        make_cluster: Callable[..., SSHCluster]) -> None:
    with pytest.raises(RuntimeError, match=r"(?s)worker group ssh-0 ended: ssh-0 on 127.0.0.1: "
                                           r"taskmill.cli.worker_cli exited with status \d+.*'lots'"):
        make_cluster(worker_options={"memory_limit": "lots"})


def test_several_workers_per_program(make_cluster: Callable[..., SSHCluster]) -> None:
    cluster = make_cluster(worker_options={**WORKER, "nworkers": 2})
    with Executor(cluster) as ex:
        names = sorted(w["name"] for w in ex.scheduler_info()["workers"].values())
        assert names == ["ssh-0-0", "ssh-0-1"]
        cluster.scale(3)  # rounded up to whole programs: two of them, four workers
        assert len(cluster.groups) == 2
        cluster.wait_for_workers(4, timeout=30)
        assert ex.submit(lambda: 42).result() == 42


def _slow_identity(x: int) -> int:
    time.sleep(0.5)
    return x


def test_adapt_grows_on_a_burst_and_shrinks_when_idle(
        make_cluster: Callable[..., SSHCluster]) -> None:
    cluster = make_cluster()
    with Executor(cluster) as ex:
        cluster.adapt(minimum=1, maximum=3, target_duration="1s", interval="0.2s", wait_count=3)
        futures = ex.map(_slow_identity, range(24), pure=False)
        wait_for(lambda: len(ex.scheduler_info()["workers"]) > 1, timeout=30,
                 message="adapt() added workers for the burst")
        assert sorted(f.result() for f in futures) == list(range(24))
        wait_for(lambda: len(cluster.groups) == 1 and len(ex.scheduler_info()["workers"]) == 1,
                 timeout=30, message="adapt() went back to its minimum when idle")
        assert sorted(ex.gather(futures)) == list(range(24))  # no key lost on the way down


def read_option(key: str) -> object:
    from taskmill import config

    return config.get(key)


def test_options_set_here_reach_the_clusters_programs(
        make_cluster: Callable[..., SSHCluster]) -> None:
    from taskmill import config

    with config.set({"comm.timeouts.retire": 45}):
        cluster = make_cluster()
    with Executor(cluster) as ex:
        assert set(ex.run(read_option, "comm.timeouts.retire").values()) == {45}
        assert ex.run_on_scheduler(read_option, "comm.timeouts.retire") == 45
