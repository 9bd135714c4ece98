"""Scatter on the simulated cluster: the client's ``scatter-done`` and each
worker's ``keys-scattered`` reach the scheduler in either order; only the
process that took the data is credited, and data of a client gone before its
``scatter-done`` is freed."""

from __future__ import annotations

import pytest

from taskmill.protocol.vocabulary import KeyInMemory, KeyLost, KeysScattered
from taskmill.testing import SimCluster

W0 = "sim://w0"


@pytest.mark.parametrize("first", ["worker", "client"])
def test_either_word_first_gives_the_same_holders(first: str) -> None:
    cluster = SimCluster(2, seed=1, trace=True)
    client = cluster.client()
    client.scatter({"data-1": 7}, broadcast=True)
    senders = [w.name for w in cluster.workers.values()]
    order = senders + [client.id] if first == "worker" else [client.id] + senders
    for sender in order:
        cluster.deliver(sender)
    assert sorted(cluster.who_has("data-1")) == cluster.addresses
    cluster.run_until_idle()
    assert [type(m) for m in client.reports_for("data-1")] == [KeyInMemory]
    (report,) = [m for m in cluster.messages(KeysScattered) if m.worker == W0]
    assert report.client == client.id and report.nbytes == {"data-1": 8}
    assert client.result("data-1") == 7


def test_a_worker_restarted_between_put_data_and_scatter_done_is_not_credited() -> None:
    cluster = SimCluster(2, seed=1)
    client = cluster.client()
    client.scatter({"data-1": 7}, workers=[W0])
    old = cluster.worker(W0).name
    new = cluster.kill(W0, rejoin=True)  # its report dies with it
    assert new is not None
    cluster.deliver(old)  # the scheduler sees the old process go...
    cluster.deliver(new.name)  # ...and the new one register at the same address
    cluster.deliver(client.id)  # then the client's scatter-done, naming the old process
    assert cluster.who_has("data-1") == []
    cluster.run_until_idle()  # the invariants hold: nobody is credited with data it lacks
    report = client.last_report("data-1")
    assert isinstance(report, KeyLost) and W0 in report.reason
    assert "data-1" not in new.store


@pytest.mark.parametrize("report_first", [True, False])
def test_data_of_a_client_that_vanishes_before_scatter_done_is_freed(report_first: bool) -> None:
    cluster = SimCluster(2, seed=1)
    client = cluster.client()
    client.scatter({"data-1": 7}, workers=[W0])
    worker = cluster.worker(W0)
    if report_first:
        cluster.deliver(worker.name)  # kept for the scatter-done...
    client.disconnect()  # ...which never leaves
    cluster.run_until_idle()  # the invariants hold: no data is left that nobody knows of
    assert "data-1" not in worker.store and worker.state.task_state("data-1") is None
    assert "data-1" not in cluster.state.tasks
