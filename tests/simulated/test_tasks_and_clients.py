"""The protocol on the simulated cluster: tasks, errors, clients.

Every test runs the real machines through the simulated shells and ends with
``run_until_idle()``, which also checks the cluster-wide invariants (what each
client was told, where the data is, that nothing is stuck).
"""

from __future__ import annotations

import pytest

from taskmill.protocol.vocabulary import ComputeTask, FreeKeys, KeyErred, TaskFinished, UpdateGraph
from taskmill.testing import SimCluster, SimTask, SimulatedFailure


def test_a_graph_computes_the_values_its_inputs_give() -> None:
    cluster = SimCluster(3, seed=1)
    client = cluster.client()
    client.submit(SimTask("a-1"), SimTask("b-1", ("a-1",)), SimTask("c-1", ("a-1", "b-1")),
                  wanted=["c-1"])
    cluster.run_until_idle()
    assert client.outcome("c-1") == "memory"
    assert client.result("c-1") == cluster.expected("c-1")
    # the inputs' data is freed; they stay as lineage (released) to recompute c-1
    assert cluster.task_state("a-1") == cluster.task_state("b-1") == "released"
    assert cluster.who_has("a-1") == [] and all("a-1" not in w.store for w in cluster.workers.values())


def test_a_task_that_fails_fewer_times_than_its_retries_succeeds() -> None:
    cluster = SimCluster(2, seed=2)
    client = cluster.client()
    client.submit(SimTask("flaky-1", fail=2, retries=2))
    cluster.run_until_idle()
    assert client.outcome("flaky-1") == "memory"
    assert cluster.book.runs["flaky-1"] == 3
    assert [type(m).__name__ for m in client.reports_for("flaky-1")] == ["KeyInMemory"]


def test_a_task_that_fails_more_than_its_retries_errs_with_its_exception() -> None:
    cluster = SimCluster(2, seed=3)
    client = cluster.client()
    client.submit(SimTask("flaky-1", fail=2, retries=1))
    cluster.run_until_idle()
    (report,) = client.reports_for("flaky-1")
    assert isinstance(report, KeyErred) and report.exception is not None
    exc = report.exception.deserialize()
    assert isinstance(exc, SimulatedFailure) and (exc.key, exc.attempt) == ("flaky-1", 2)
    assert report.worker in cluster.addresses and "SimulatedFailure" in report.exception_text
    assert cluster.book.runs["flaky-1"] == 2


def test_an_error_reaches_every_dependent_which_never_runs() -> None:
    cluster = SimCluster(2, seed=4)
    client = cluster.client()
    client.submit(SimTask("bad-1", fail=1), SimTask("mid-1", ("bad-1",)), SimTask("top-1", ("mid-1",)))
    cluster.run_until_idle()
    for key in ("bad-1", "mid-1", "top-1"):
        (report,) = client.reports_for(key)
        assert isinstance(report, KeyErred)
        assert report.exception is not None and report.exception.deserialize().key == "bad-1"
    assert "mid-1" not in cluster.book.runs and "top-1" not in cluster.book.runs


def test_resubmitting_an_erred_key_runs_it_again() -> None:
    cluster = SimCluster(2, seed=5)
    client = cluster.client()
    task = SimTask("flaky-1", fail=1)
    client.submit(task)
    cluster.run_until_idle()
    assert client.outcome("flaky-1") == "erred"
    client.submit(task)
    cluster.run_until_idle()
    assert client.outcome("flaky-1") == "memory"
    assert client.result("flaky-1") == cluster.expected("flaky-1")


def test_cancel_of_a_waiting_task_cancels_its_dependents_before_they_run() -> None:
    cluster = SimCluster(1, seed=6)
    client = cluster.client()
    client.submit(SimTask("slow-1", duration=5.0), SimTask("a-1", ("slow-1",)), SimTask("b-1", ("a-1",)),
                  wanted=["a-1", "b-1"])
    cluster.run_until(lambda: "slow-1" in cluster.worker("sim://w0").running)
    client.cancel("a-1")
    cluster.deliver(client.id)  # while slow-1 still runs
    cluster.run_until_idle()
    assert client.outcome("a-1") == client.outcome("b-1") == "cancelled"
    assert "a-1" not in cluster.book.runs and "b-1" not in cluster.book.runs
    assert cluster.state.tasks == {}


def test_cancel_of_a_running_task_drops_its_result() -> None:
    cluster = SimCluster(1, seed=7)
    worker = cluster.worker("sim://w0")
    client = cluster.client()
    client.submit(SimTask("slow-1", duration=3.0))
    cluster.run_until(lambda: "slow-1" in worker.running)
    client.cancel("slow-1")
    cluster.run_until(lambda: worker.running.get("slow-1") is None or worker.running["slow-1"].cancelled)
    cluster.run_until_idle()
    assert client.outcome("slow-1") == "cancelled"
    assert "slow-1" not in worker.store and worker.state.tasks == {}
    assert cluster.state.tasks == {}


def test_fire_and_forget_runs_after_every_client_released_it_then_is_forgotten() -> None:
    cluster = SimCluster(2, seed=8)
    client = cluster.client()
    client.submit(SimTask("in-1"), SimTask("side-1", ("in-1",), duration=1.0), wanted=["side-1"])
    client.fire_and_forget("side-1")
    client.release("side-1")
    cluster.run_until_idle()
    assert cluster.book.runs["side-1"] == 1
    assert cluster.state.tasks == {}
    assert all(not w.store for w in cluster.workers.values())


def test_releasing_a_key_frees_its_data_on_every_worker() -> None:
    cluster = SimCluster(2, seed=9)
    client = cluster.client()
    client.submit(SimTask("a-1"))
    cluster.run_until_idle()
    assert cluster.who_has("a-1")
    client.release("a-1")
    cluster.run_until_idle()
    assert cluster.task_state("a-1") is None
    assert all("a-1" not in w.store for w in cluster.workers.values())


def test_a_second_client_keeps_the_data_the_first_released() -> None:
    cluster = SimCluster(2, seed=10)
    first, second = cluster.client(), cluster.client()
    first.submit(SimTask("shared-1"))
    second.submit(SimTask("shared-1"))
    cluster.run_until_idle()
    assert cluster.book.runs["shared-1"] == 1  # one key, one task
    first.release("shared-1")
    cluster.run_until_idle()
    assert second.result("shared-1") == cluster.expected("shared-1")
    second.close()
    cluster.run_until_idle()
    assert cluster.state.tasks == {}


def test_a_client_that_vanishes_releases_everything_it_wanted() -> None:
    cluster = SimCluster(2, seed=11)
    client = cluster.client()
    client.submit(SimTask("a-1"), SimTask("b-1", ("a-1",)))
    cluster.run_until_idle()
    client.disconnect()
    cluster.run_until_idle()
    assert cluster.state.tasks == {} and cluster.state.clients.get(client.id) is None
    assert all(not w.store for w in cluster.workers.values())


def test_wanting_an_unknown_key_is_answered_lost() -> None:
    cluster = SimCluster(1, seed=12)
    client = cluster.client()
    client.want("nobody-1")
    cluster.run_until_idle()
    assert client.outcome("nobody-1") == "lost"
    assert "not known" in client.last_report("nobody-1").reason  # type: ignore[union-attr]


def test_restart_cancels_every_wanted_key_and_the_workers_start_afresh() -> None:
    cluster = SimCluster(2, seed=13)
    client = cluster.client()
    client.submit(SimTask("a-1"), SimTask("slow-1", duration=9.0))
    cluster.run_until(lambda: cluster.who_has("a-1") != [])
    before = {w.name for w in cluster.workers.values()}
    cluster.restart()
    cluster.run_until_idle()
    assert client.outcome("a-1") == client.outcome("slow-1") == "cancelled"
    assert cluster.state.tasks == {} and len(cluster.state.workers) == 2
    assert not before & {w.name for w in cluster.workers.values()}
    client.submit(SimTask("b-1"))
    cluster.run_until_idle()
    assert client.result("b-1") == cluster.expected("b-1")


def test_only_wanted_keys_carry_their_small_result() -> None:
    cluster = SimCluster(2, seed=14, trace=True)
    client = cluster.client()
    client.submit(SimTask("middle-1"), SimTask("last-1", ("middle-1",)), wanted=["last-1"])
    cluster.run_until_idle()
    finished = {m.key: m for m in cluster.messages(TaskFinished)}
    assert finished["middle-1"].value is None
    assert finished["last-1"].value is not None
    assert finished["last-1"].value.deserialize() == cluster.expected("last-1")
    report = client.last_report("last-1")
    assert report is not None and report.value is not None  # type: ignore[attr-defined]


def test_a_big_result_is_not_attached_and_is_read_from_its_worker() -> None:
    cluster = SimCluster(1, seed=15)
    client = cluster.client()
    client.submit(SimTask("big-1", nbytes=10**6))
    cluster.run_until_idle()
    report = client.last_report("big-1")
    assert report is not None and report.value is None  # type: ignore[attr-defined]
    assert client.result("big-1") == cluster.expected("big-1")


def test_each_worker_is_sent_each_function_once() -> None:
    cluster = SimCluster(2, seed=16, trace=True)
    client = cluster.client()
    client.submit(*[SimTask(f"inc-{i}") for i in range(6)], *[SimTask(f"add-{i}") for i in range(6)])
    client.submit(*[SimTask(f"inc-{i}") for i in range(6, 12)])
    cluster.run_until_idle()
    sent: dict[tuple[str, str], int] = {}
    for receiver, msg in cluster.trace or ():
        if isinstance(msg, ComputeTask) and msg.func is not None:
            sent[receiver, msg.func_token] = sent.get((receiver, msg.func_token), 0) + 1
    assert sent and set(sent.values()) == {1}
    assert {token for _, token in sent} == {"inc", "add"}
    updates = cluster.messages(UpdateGraph)
    assert updates[0].funcs is not None and set(updates[0].funcs) == {"inc", "add"}
    assert updates[1].funcs is None  # the client sent each function once too


def test_a_restarted_worker_is_sent_the_functions_again() -> None:
    cluster = SimCluster(1, seed=17, trace=True)
    client = cluster.client()
    client.submit(SimTask("inc-1"))
    cluster.run_until_idle()
    new = cluster.kill("sim://w0", rejoin=True)
    assert new is not None
    client.submit(SimTask("inc-2"))
    cluster.run_until_idle()
    sent = cluster.messages(ComputeTask, receiver=new.name)
    assert {m.key for m in sent} == {"inc-1", "inc-2"}  # the lost inc-1 is recomputed too
    assert [m.func is not None for m in sent].count(True) == 1


def test_a_duplicate_task_finished_is_ignored() -> None:
    cluster = SimCluster(1, seed=18, trace=True)
    worker = cluster.worker("sim://w0")
    client = cluster.client()
    client.submit(SimTask("a-1"))
    cluster.run_until_idle()
    (finished,) = cluster.messages(TaskFinished)
    assert worker.up is not None
    cluster.net.send(worker.up, [finished.to_wire()])  # the same message, delivered twice
    cluster.run_until_idle()
    assert [type(m).__name__ for m in client.reports_for("a-1")] == ["KeyInMemory"]
    assert any("duplicate TaskFinished" in note for *_, note in cluster.state.story("a-1"))


def test_a_task_finished_for_a_key_the_scheduler_forgot_is_freed_on_its_worker() -> None:
    cluster = SimCluster(1, seed=19, trace=True)
    worker = cluster.worker("sim://w0")
    assert worker.up is not None
    cluster.net.send(worker.up, [TaskFinished("", worker.address, "ghost-1", 8, "int", 0.0, 1.0).to_wire()])
    cluster.run_until_idle()
    assert any(isinstance(m, FreeKeys) and m.keys == ("ghost-1",) for m in cluster.messages(FreeKeys))


@pytest.mark.parametrize("seed", range(5))
def test_every_delivery_order_gives_the_same_values(seed: int) -> None:
    cluster = SimCluster([(2, None), (1, None), (1, None)], seed=seed, coalesce=0.5)
    client = cluster.client()
    tasks = [SimTask(f"x-{i}", duration=0.01 * (i % 3)) for i in range(5)]
    tasks += [SimTask(f"y-{i}", (f"x-{i}", f"x-{(i + 1) % 5}"), nbytes=10**5) for i in range(5)]
    tasks.append(SimTask("z-1", tuple(f"y-{i}" for i in range(5))))
    client.submit(*tasks, wanted=["z-1", "y-2"])
    cluster.run_until_idle()
    assert client.result("z-1") == cluster.expected("z-1")
    assert client.result("y-2") == cluster.expected("y-2")
