"""Clients end to end on the simulated cluster: shared keys, one report per
client and outcome, releases and cancels that cross other clients' wants,
fire-and-forget, scatter."""

from __future__ import annotations

from taskmill.protocol.vocabulary import AddKeys, FreeKeys, KeyCancelled, KeyInMemory
from taskmill.testing import SimClient, SimCluster, SimTask


def kinds(client: SimClient, key: str) -> list[str]:
    return [type(m).__name__ for m in client.reports_for(key)]


def nobody_holds(cluster: SimCluster, key: str) -> bool:
    return cluster.who_has(key) == [] and all(key not in w.store for w in cluster.workers.values())


def deliver_everything_from(cluster: SimCluster, client: SimClient) -> None:
    """Deliver now every batch ``client`` has sent that is still on its way."""
    while any(ch.queue for ch in cluster.net.channels if ch.name == f"{client.id}->scheduler"):
        cluster.deliver(client.id)


def running_somewhere(cluster: SimCluster, key: str) -> bool:
    return any(key in w.running for w in cluster.workers.values())


def test_every_client_wanting_a_key_gets_exactly_one_report_of_one_run() -> None:
    cluster = SimCluster(2, seed=1)
    clients = [cluster.client() for _ in range(3)]
    for c in clients:
        c.submit(SimTask("shared-1", duration=0.5))
    cluster.run_until_idle()
    assert [kinds(c, "shared-1") for c in clients] == [["KeyInMemory"]] * 3
    assert cluster.book.runs["shared-1"] == 1


def test_every_client_wanting_a_failing_key_gets_one_error() -> None:
    cluster = SimCluster(2, seed=2)
    clients = [cluster.client() for _ in range(3)]
    for c in clients:
        c.submit(SimTask("bad-1", fail=1))
    cluster.run_until_idle()
    assert [kinds(c, "bad-1") for c in clients] == [["KeyErred"]] * 3


def test_a_client_that_starts_wanting_a_key_in_memory_is_told_at_once_where_it_is() -> None:
    cluster = SimCluster(2, seed=3)
    first, second = cluster.client(), cluster.client()
    first.submit(SimTask("a-1"))
    cluster.run_until_idle()
    second.want("a-1")
    cluster.run_until_idle()
    report = second.last_report("a-1")
    assert isinstance(report, KeyInMemory) and list(report.who_has) == cluster.who_has("a-1")
    assert report.type_name == "int" and cluster.book.runs["a-1"] == 1


def test_a_client_that_starts_wanting_an_erred_key_is_told_the_error_at_once() -> None:
    cluster = SimCluster(1, seed=4)
    first, second = cluster.client(), cluster.client()
    first.submit(SimTask("bad-1", fail=1))
    cluster.run_until_idle()
    second.want("bad-1")
    cluster.run_until_idle()
    assert kinds(second, "bad-1") == ["KeyErred"] and cluster.book.runs["bad-1"] == 1


def test_a_key_released_while_processing_is_dropped_by_its_worker_and_never_reported() -> None:
    cluster = SimCluster(1, seed=5, trace=True)
    client = cluster.client()
    client.submit(SimTask("slow-1", duration=2.0))
    cluster.run_until(lambda: running_somewhere(cluster, "slow-1"))
    client.release("slow-1")
    cluster.deliver(client.id)  # while it runs
    cluster.run_until_idle()
    assert client.reports_for("slow-1") == []
    assert cluster.task_state("slow-1") is None and nobody_holds(cluster, "slow-1")
    assert ("slow-1",) in [m.keys for m in cluster.messages(FreeKeys)]


def test_a_key_released_while_processing_and_submitted_again_is_reported_once() -> None:
    cluster = SimCluster(1, seed=6)
    client = cluster.client()
    task = SimTask("slow-1", duration=2.0)
    client.submit(task)
    cluster.run_until(lambda: running_somewhere(cluster, "slow-1"))
    client.release("slow-1")
    client.submit(task)
    deliver_everything_from(cluster, client)  # both while it runs
    cluster.run_until_idle()
    assert kinds(client, "slow-1") == ["KeyInMemory"]
    assert client.result("slow-1") == cluster.expected("slow-1")


def test_cancelling_a_key_another_client_wants_tells_both_who_cancelled_it() -> None:
    cluster = SimCluster(1, seed=7)
    first, second = cluster.client(), cluster.client()
    first.submit(SimTask("slow-1", duration=2.0))
    second.submit(SimTask("slow-1", duration=2.0), SimTask("own-1"))
    cluster.run_until(lambda: running_somewhere(cluster, "slow-1"))
    first.cancel("slow-1")
    cluster.deliver(first.id)  # while it runs
    cluster.run_until_idle()
    for c in (first, second):
        report = c.last_report("slow-1")
        assert isinstance(report, KeyCancelled) and first.id in report.reason
    assert second.outcome("own-1") == "memory"  # its other key is left alone
    assert cluster.task_state("slow-1") is None and nobody_holds(cluster, "slow-1")


def test_cancelling_an_input_cancels_another_clients_dependent() -> None:
    cluster = SimCluster(1, seed=8)
    first, second = cluster.client(), cluster.client()
    first.submit(SimTask("in-1", duration=2.0))
    second.submit(SimTask("in-1", duration=2.0), SimTask("out-1", ("in-1",)), wanted=["out-1"])
    cluster.run_until(lambda: running_somewhere(cluster, "in-1"))
    first.cancel("in-1")
    cluster.deliver(first.id)  # while it runs
    cluster.run_until_idle()
    # out-1 went ahead to in-1's worker (look-ahead), so it may start there when
    # in-1 finishes before the FreeKeys arrives; its result is dropped all the same
    assert kinds(second, "out-1") == ["KeyCancelled"] and nobody_holds(cluster, "out-1")
    assert cluster.task_state("out-1") is None


def test_a_client_vanishing_mid_run_leaves_what_another_client_shares() -> None:
    cluster = SimCluster(2, seed=9)
    leaver, stayer = cluster.client(), cluster.client()
    leaver.submit(SimTask("shared-1", duration=1.0), SimTask("mine-1", duration=1.0))
    stayer.submit(SimTask("shared-1", duration=1.0))
    cluster.run_until(lambda: running_somewhere(cluster, "shared-1"))
    leaver.disconnect()
    cluster.run_until_idle()
    assert stayer.result("shared-1") == cluster.expected("shared-1")
    assert cluster.task_state("mine-1") is None and nobody_holds(cluster, "mine-1")


def test_a_client_closing_gracefully_releases_all_it_wanted() -> None:
    cluster = SimCluster(2, seed=10)
    client = cluster.client()
    client.submit(SimTask("a-1"), SimTask("b-1", ("a-1",)))
    client.scatter({"s-1": 5})
    cluster.run_until_idle()
    client.close()
    cluster.run_until_idle()
    assert cluster.state.tasks == {} and client.id not in cluster.state.clients
    assert all(not w.store for w in cluster.workers.values())


def test_a_fire_and_forget_chain_runs_to_its_end_then_everything_is_forgotten() -> None:
    cluster = SimCluster(2, seed=11)
    client = cluster.client()
    client.submit(SimTask("a-1"), SimTask("b-1", ("a-1",)), SimTask("c-1", ("b-1",), duration=1.0),
                  wanted=["c-1"])
    client.fire_and_forget("c-1")
    client.release("c-1")
    cluster.run_until_idle()
    assert [cluster.book.runs.get(k) for k in ("a-1", "b-1", "c-1")] == [1, 1, 1]
    assert cluster.state.tasks == {} and all(not w.store for w in cluster.workers.values())
    assert client.reports_for("c-1") == []


def test_fire_and_forget_of_a_key_a_client_still_wants_keeps_it_for_that_client() -> None:
    cluster = SimCluster(1, seed=12)
    client = cluster.client()
    client.submit(SimTask("a-1"))
    client.fire_and_forget("a-1")
    cluster.run_until_idle()
    assert client.result("a-1") == cluster.expected("a-1")
    client.release("a-1")
    cluster.run_until_idle()
    assert cluster.task_state("a-1") is None and nobody_holds(cluster, "a-1")


def test_wanting_released_lineage_recomputes_it_and_tells_only_the_new_client() -> None:
    cluster = SimCluster(1, seed=13)
    first, second = cluster.client(), cluster.client()
    first.submit(SimTask("in-1"), SimTask("out-1", ("in-1",)), wanted=["out-1"])
    cluster.run_until_idle()
    assert cluster.task_state("in-1") == "released"
    second.want("in-1")
    cluster.run_until_idle()
    assert second.result("in-1") == cluster.expected("in-1") and cluster.book.runs["in-1"] == 2
    assert first.reports_for("in-1") == []


def test_wanting_a_released_and_forgotten_key_is_answered_lost() -> None:
    cluster = SimCluster(1, seed=14)
    client = cluster.client()
    client.submit(SimTask("a-1"))
    cluster.run_until_idle()
    client.release("a-1")
    client.want("a-1")
    cluster.run_until_idle()
    assert kinds(client, "a-1") == ["KeyInMemory", "KeyLost"]


def test_releasing_a_key_the_client_never_wanted_changes_nothing() -> None:
    cluster = SimCluster(1, seed=15)
    owner, stranger = cluster.client(), cluster.client()
    owner.submit(SimTask("a-1"))
    cluster.run_until_idle()
    stranger.release("a-1")
    cluster.run_until_idle()
    assert cluster.task_state("a-1") == "memory" and owner.result("a-1") == cluster.expected("a-1")
    assert any(f"client {stranger.id} released a key it did not want" in e[4]
               for e in cluster.state.story("a-1"))


def test_a_task_on_scattered_data_runs_where_the_data_was_put() -> None:
    cluster = SimCluster(3, seed=16, trace=True)
    client = cluster.client()
    client.scatter({"data-1": 41}, workers=["sim://w2"], nbytes=10**6)
    client.submit(SimTask("use-1", ("data-1",)))
    cluster.run_until_idle()
    assert cluster.who_has("use-1") == ["sim://w2"] and cluster.messages(AddKeys) == []
    assert client.result("data-1") == 41


def test_broadcast_data_is_on_every_worker_and_never_moves() -> None:
    cluster = SimCluster(3, seed=17, trace=True)
    client = cluster.client()
    client.scatter({"conf-1": {"k": 1}}, broadcast=True)
    client.submit(*[SimTask(f"use-{i}", ("conf-1",), workers=(a,)) for i, a in enumerate(cluster.addresses)])
    cluster.run_until_idle()
    assert sorted(cluster.who_has("conf-1")) == cluster.addresses
    assert cluster.messages(AddKeys) == []
    assert all(client.result(f"use-{i}") == cluster.expected(f"use-{i}") for i in range(3))


def test_an_input_released_while_its_dependent_waits_is_freed_once_the_dependent_is_done() -> None:
    """(was tests/cluster/test_executor_inprocess.py::test_intermediate_results_are_freed)"""
    cluster = SimCluster(2, seed=18)
    client = cluster.client()
    client.submit(SimTask("x-1"))
    client.submit(SimTask("y-1", ("x-1",)))
    client.release("x-1")
    cluster.run_until_idle()
    assert client.result("y-1") == cluster.expected("y-1")
    assert nobody_holds(cluster, "x-1")
