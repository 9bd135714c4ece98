"""Which ``Security`` a cluster, an Executor and a worker process use."""

from __future__ import annotations

import asyncio
import os

import pytest

from taskmill import Executor, LocalCluster, Security
from taskmill.comm.auth import AuthenticationError
from taskmill.security import own_cluster_security

pytestmark = pytest.mark.timeout(60)

SECURITY_VARIABLES = ("TASKMILL_TOKEN", "TASKMILL_TOKEN_FILE", "TASKMILL_TLS_CA_FILE",
                      "TASKMILL_TLS_CERT_FILE", "TASKMILL_TLS_KEY_FILE")


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in SECURITY_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def read_env(name: str) -> str | None:
    return os.environ.get(name)


def test_a_cluster_of_its_own_gets_a_fresh_secret_unless_told(
        clean_environment: pytest.MonkeyPatch) -> None:
    first, second = own_cluster_security(None), own_cluster_security(None)
    assert first.token and second.token and first.token != second.token
    assert first.token not in repr(first)
    given = Security(token="given")
    assert own_cluster_security(given) is given
    assert own_cluster_security(Security()) == Security()  # off, on purpose
    clean_environment.setenv("TASKMILL_TOKEN", "from-the-environment")
    assert own_cluster_security(None).token == "from-the-environment"


def test_a_child_gets_these_settings_in_place_of_its_parents() -> None:
    parent = {"PATH": "/bin", "TASKMILL_TOKEN": "parent", "TASKMILL_TOKEN_FILE": "/parent",
              "TASKMILL_TLS_CA_FILE": "/ca.pem", "TASKMILL_TLS_CERT_FILE": "/cert.pem"}
    assert Security(token="mine").child_environment(parent) == {"PATH": "/bin",
                                                                "TASKMILL_TOKEN": "mine"}
    assert Security().child_environment(parent) == {"PATH": "/bin"}


def test_worker_processes_run_with_the_clusters_secret_not_the_parents(
        clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("TASKMILL_TOKEN", "the-parents")
    with Executor(n_workers=1, threads_per_worker=1, dashboard_port=None, set_as_default=False,
                  security=Security(token="the-clusters")) as e:
        assert e.submit(read_env, "TASKMILL_TOKEN", pure=False).result() == "the-clusters"
    with Executor(n_workers=1, threads_per_worker=1, dashboard_port=None,
                  set_as_default=False) as e:  # the environment configures a token: that one
        assert e.cluster.security.token == "the-parents"
        assert e.submit(read_env, "TASKMILL_TOKEN", pure=False).result() == "the-parents"


def test_clients_of_this_process_need_no_set_up_others_need_the_token(
        clean_environment: pytest.MonkeyPatch) -> None:
    with Executor(n_workers=1, threads_per_worker=1, processes=False, dashboard_port=None) as e:
        assert e.cluster.security.token  # a fresh secret
        with Executor(e.scheduler_address, set_as_default=False) as same_process:
            assert same_process.submit(sum, [1, 2]).result() == 3
        with pytest.raises(AuthenticationError, match="refused our token"):
            Executor(e.scheduler_address, security=Security(token="a guess"), timeout=5,
                     set_as_default=False)
        assert e.submit(sum, [3, 4]).result() == 7


def test_executor_of_a_cluster_object_uses_its_security(
        clean_environment: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with LocalCluster(n_workers=1, processes=False, dashboard_address=None,
                                security=Security(token="the-clusters"),
                                asynchronous=True) as cluster:
            async with Executor(cluster, asynchronous=True, set_as_default=False) as e:
                assert e._security is cluster.security
                assert await e.submit(sum, [1, 2]) == 3
            with pytest.raises(AuthenticationError):
                await Executor(cluster, asynchronous=True, set_as_default=False,
                               security=Security(token="another"), timeout=5)

    asyncio.run(main())


def test_an_address_of_the_wrong_kind_is_named() -> None:
    with pytest.raises(TypeError, match="give 'host:port', a Cluster, or nothing"):
        Executor(8786)
