"""Tasks waiting while no worker is connected, on the simulated cluster: the
no-workers timeout errs them (and their dependents) with NoWorkersError;
a worker that joined first makes it a no-op."""

from __future__ import annotations

from taskmill.core.scheduler.events import NoWorkersTimedOut
from taskmill.core.scheduler.no_workers import NO_WORKERS
from taskmill.protocol.vocabulary import KeyErred
from taskmill.testing import SimCluster, SimTask


def test_the_timeout_errs_stranded_tasks_and_their_dependents() -> None:
    cluster = SimCluster(1, seed=1)
    client = cluster.client()
    cluster.kill(cluster.addresses[0])
    cluster.run_until_idle()
    client.submit(SimTask("a-1"), SimTask("b-1", ("a-1",)), SimTask("c-1"), wanted=["b-1", "c-1"])
    cluster.run_until_idle()
    assert cluster.state.no_workers.waiting() == 3
    cluster.scheduler.handle(NoWorkersTimedOut("no-workers-timeout-1", 31.0, 30.0))
    cluster.run_until_idle()
    for key in ("b-1", "c-1"):
        (report,) = client.reports_for(key)
        assert isinstance(report, KeyErred) and report.error_type == NO_WORKERS
        assert "no worker was connected to the scheduler for 31s" in report.exception_text
        assert "scheduler.no-workers-timeout: 30s" in report.exception_text
    assert cluster.state.no_workers.waiting() == 0
    # the cluster works again once a worker joins
    cluster.add_worker()
    client.submit(SimTask("d-1"))
    cluster.run_until_idle()
    assert client.result("d-1") == cluster.expected("d-1")


def test_a_worker_that_joined_before_the_timeout_runs_the_tasks() -> None:
    cluster = SimCluster(1, seed=2)
    client = cluster.client()
    cluster.kill(cluster.addresses[0])
    cluster.run_until_idle()
    client.submit(SimTask("a-1"), SimTask("b-1", ("a-1",)), wanted=["b-1"])
    cluster.run_until_idle()
    cluster.add_worker()
    cluster.run_until_idle()
    assert cluster.state.no_workers.waiting() == 0
    cluster.scheduler.handle(NoWorkersTimedOut("no-workers-timeout-1", 31.0, 30.0))
    cluster.run_until_idle()
    assert client.result("b-1") == cluster.expected("b-1")
