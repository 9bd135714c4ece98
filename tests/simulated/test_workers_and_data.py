"""The protocol on the simulated cluster: workers coming and going, data
moving, lost and copied, resources and pause.

These replace in-process cluster tests that only checked protocol logic
(``tests/cluster/test_replicate_retire.py``, ``test_small_results.py``,
``test_executor_inprocess.py``): same assertions, no sockets or threads.
"""

from __future__ import annotations

from taskmill.protocol.vocabulary import AcquireReplicas, KeyErred, KeyLost, MissingData
from taskmill.testing import SimCluster, SimTask


def test_a_lost_result_is_recomputed_from_its_lineage_without_telling_the_client_again() -> None:
    cluster = SimCluster(2, seed=1)
    client = cluster.client()
    client.submit(SimTask("a-1"), SimTask("b-1", ("a-1",)), wanted=["b-1"])
    cluster.run_until_idle()
    (holder,) = cluster.who_has("b-1")
    cluster.kill(holder)
    cluster.run_until_idle()
    assert cluster.who_has("b-1") not in ([], [holder])
    assert client.result("b-1") == cluster.expected("b-1")
    assert cluster.book.runs["a-1"] == cluster.book.runs["b-1"] == 2  # its lineage ran again
    assert [type(m).__name__ for m in client.reports_for("b-1")] == ["KeyInMemory"]


def test_scattered_data_on_a_dead_worker_is_lost_and_its_dependents_err() -> None:
    cluster = SimCluster(2, seed=2)
    client = cluster.client()
    client.scatter({"data-1": 123}, workers=["sim://w0"])
    cluster.run_until_idle()
    cluster.kill("sim://w0")
    cluster.run_until_idle()
    report = client.last_report("data-1")
    assert isinstance(report, KeyLost) and "sim://w0" in report.reason
    client.submit(SimTask("use-1", ("data-1",)))
    cluster.run_until_idle()
    report = client.last_report("use-1")
    assert isinstance(report, KeyErred) and report.error_type == "MissingDependencyError"


def test_a_peer_that_cannot_serve_an_input_is_reported_and_the_input_recomputed() -> None:
    cluster = SimCluster(2, seed=1, trace=True)
    client = cluster.client()
    client.submit(SimTask("in-1", workers=("sim://w0",)))
    cluster.run_until_idle()
    cluster.drop_data("sim://w0", "in-1")
    client.submit(SimTask("out-1", ("in-1",), workers=("sim://w1",)))
    cluster.run_until_idle()
    (missing,) = cluster.messages(MissingData)
    assert (missing.worker, missing.errant_worker, missing.keys) == ("sim://w1", "sim://w0", ("in-1",))
    # recomputed where it must run: w0, which still holds it, reports it again without running
    assert cluster.book.runs["in-1"] == 1 and "sim://w0" in cluster.who_has("in-1")
    assert client.result("out-1") == cluster.expected("out-1")


def test_tasks_of_a_dead_worker_are_rescheduled() -> None:
    cluster = SimCluster(2, seed=4)
    client = cluster.client()
    client.submit(SimTask("slow-1", duration=2.0))
    cluster.run_until(lambda: any("slow-1" in w.running for w in cluster.workers.values()))
    (runner,) = [a for a, w in cluster.workers.items() if "slow-1" in w.running]
    cluster.kill(runner)
    cluster.run_until_idle()
    assert client.result("slow-1") == cluster.expected("slow-1")
    assert cluster.who_has("slow-1") != [runner] and cluster.book.runs["slow-1"] == 2


def test_a_task_that_dies_with_allowed_failures_workers_errs_killed_worker() -> None:
    cluster = SimCluster(1, seed=5, allowed_failures=2)
    client = cluster.client()
    client.submit(SimTask("poison-1", duration=1.0))
    for _ in range(2):
        cluster.run_until(lambda: "poison-1" in cluster.worker("sim://w0").running)
        cluster.kill("sim://w0", rejoin=True)
    cluster.run_until_idle()
    report = client.last_report("poison-1")
    assert isinstance(report, KeyErred) and report.error_type == "KilledWorker"
    assert report.exception is None and "sim://w0" in report.exception_text
    assert cluster.book.runs["poison-1"] == 2


def test_a_worker_that_comes_back_at_the_same_address_waits_for_its_old_connection_to_close() -> None:
    cluster = SimCluster(2, seed=6)
    client = cluster.client()
    client.submit(SimTask("a-1", workers=("sim://w0",)))
    cluster.run_until_idle()
    old = cluster.worker("sim://w0").name
    new = cluster.kill("sim://w0", rejoin=True, lose_in_flight=False)
    assert new is not None and new.name != old
    cluster.deliver(new.name)  # its registration arrives before the old connection's end
    assert cluster.scheduler._names["sim://w0"] == old and not new.registered
    cluster.run_until_idle()
    assert new.registered and cluster.scheduler._names["sim://w0"] == new.name
    assert client.result("a-1") == cluster.expected("a-1")  # recomputed on the new process
    assert "sim://w0" in cluster.who_has("a-1")


def test_replicated_data_survives_the_death_of_its_first_holder() -> None:
    cluster = SimCluster(3, seed=7)
    a, b, c = cluster.addresses
    client = cluster.client()
    client.scatter({"f-1": 1, "g-1": 2}, workers=[a])
    cluster.run_until_idle()
    cluster.replicate(["f-1", "g-1"])
    cluster.run_until_idle()
    assert cluster.copies_pending(["f-1", "g-1"]) == []
    assert sorted(cluster.who_has("f-1")) == sorted(cluster.who_has("g-1")) == [a, b, c]
    cluster.kill(a)
    cluster.run_until_idle()
    assert [client.result("f-1"), client.result("g-1")] == [1, 2]
    client.submit(SimTask("inc-1", ("f-1",), workers=(c,)))
    cluster.run_until_idle()
    assert client.result("inc-1") == cluster.expected("inc-1")


def test_replicate_n_keeps_n_copies_among_the_workers_asked() -> None:
    cluster = SimCluster(4, seed=8, trace=True)
    client = cluster.client()
    client.scatter({"x-1": "x"}, workers=["sim://w0"])
    cluster.run_until_idle()
    cluster.replicate(["x-1"], n=2, workers=["sim://w2", "sim://w3"])
    cluster.run_until_idle()
    assert sorted(cluster.who_has("x-1")) == ["sim://w0", "sim://w2", "sim://w3"]
    assert {m.worker for m in cluster.messages(AcquireReplicas)} == {"sim://w2", "sim://w3"}


def test_retiring_a_worker_moves_its_data_first_then_closes_it() -> None:
    cluster = SimCluster(3, seed=9)
    client = cluster.client()
    client.scatter({"s-1": list(range(10))}, workers=["sim://w0"])
    client.submit(SimTask("r-1", workers=("sim://w0",)))
    cluster.run_until_idle()
    w0 = cluster.worker("sim://w0")
    cluster.retire("sim://w0")
    cluster.run_until_idle()
    assert cluster.scheduler.retired == {"sim://w0": True}
    assert w0.retired is True and not w0.alive  # told to close, and closed
    assert "sim://w0" not in cluster.state.workers
    for key in ("s-1", "r-1"):
        assert cluster.who_has(key) and "sim://w0" not in cluster.who_has(key)
    assert client.result("s-1") == list(range(10)) and client.result("r-1") == cluster.expected("r-1")


def test_retiring_without_closing_leaves_the_worker_running_outside_the_cluster() -> None:
    cluster = SimCluster(2, seed=10)
    client = cluster.client()
    client.scatter({"s-1": 7}, workers=["sim://w0"])
    cluster.run_until_idle()
    cluster.retire("sim://w0", close=False)
    cluster.run_until_idle()
    w0 = cluster.worker("sim://w0")
    assert w0.alive and w0.retired is False
    assert "sim://w0" not in cluster.state.workers and cluster.who_has("s-1") == ["sim://w1"]
    assert client.result("s-1") == 7


def test_retiring_every_worker_keeps_the_one_whose_data_has_nowhere_to_go() -> None:
    cluster = SimCluster(3, seed=11)
    workers = cluster.addresses
    client = cluster.client()
    client.scatter({"f-1": 1}, workers=[workers[0]])
    cluster.run_until_idle()
    cluster.retire(*workers)
    cluster.run_until_idle()
    assert cluster.scheduler.retired[workers[0]] is False
    assert sorted(a for a, ok in cluster.scheduler.retired.items() if ok) == workers[1:]
    assert list(cluster.state.workers) == [workers[0]]
    assert client.result("f-1") == 1


def test_a_cancelled_retirement_puts_the_worker_back_to_work() -> None:
    cluster = SimCluster(2, seed=12)
    client = cluster.client()
    client.scatter({"s-1": 1}, workers=["sim://w0"])
    cluster.run_until_idle()
    cluster.retire("sim://w0")
    cluster.cancel_retirement("sim://w0")
    cluster.run_until_idle()
    assert cluster.scheduler.retired == {"sim://w0": False}
    assert cluster.worker("sim://w0").alive and not cluster.state.workers["sim://w0"].retiring
    client.submit(*[SimTask(f"t-{i}", duration=1.0) for i in range(4)])
    cluster.run_until_idle()
    assert any(cluster.who_has(f"t-{i}") == ["sim://w0"] for i in range(4))


def test_paused_workers_get_no_new_tasks_until_they_resume() -> None:
    cluster = SimCluster(3, seed=13)
    a, b, c = cluster.addresses
    cluster.pause(a)
    cluster.pause(b)
    cluster.run_until_idle()
    assert cluster.state.workers[a].paused and cluster.state.workers[b].paused
    client = cluster.client()
    client.submit(*[SimTask(f"p-{i}") for i in range(10)])
    cluster.run_until_idle()
    assert all(cluster.who_has(f"p-{i}") == [c] for i in range(10))
    cluster.pause(a, False)
    cluster.run_until_idle()
    client.submit(*[SimTask(f"q-{i}", duration=1.0) for i in range(30)])
    cluster.run_until_idle()
    assert any(a in cluster.who_has(f"q-{i}") for i in range(30))
    assert not any(b in cluster.who_has(f"q-{i}") for i in range(30))


def test_a_paused_worker_finishes_what_it_runs() -> None:
    cluster = SimCluster(1, seed=14)
    worker = cluster.worker("sim://w0")
    client = cluster.client()
    client.submit(SimTask("running-1", duration=1.0), SimTask("next-1"))
    cluster.run_until(lambda: "running-1" in worker.running)
    cluster.pause("sim://w0")
    cluster.run_until_idle()  # a paused worker is a genuine stall: the checks accept it
    assert client.outcome("running-1") == "memory"
    assert client.outcome("next-1") is None
    cluster.pause("sim://w0", False)
    cluster.run_until_idle()
    assert client.result("next-1") == cluster.expected("next-1")


def test_resource_tasks_run_only_where_declared_and_never_more_at_once() -> None:
    cluster = SimCluster([(2, {"GPU": 1.0}), (2, None)], seed=15)
    client = cluster.client()
    client.submit(*[SimTask(f"gpu-{i}", duration=0.5, resources={"GPU": 1.0}) for i in range(4)])
    cluster.run_until(lambda: cluster.task_state("gpu-3") == "queued")  # waits for the GPU
    cluster.run_until_idle()  # the worker shell fails the run if a GPU were oversubscribed
    assert all(cluster.who_has(f"gpu-{i}") == ["sim://w0"] for i in range(4))
    assert all(ws.resources_used == {} for ws in cluster.state.workers.values())


def test_a_task_needing_an_undeclared_resource_waits_until_a_worker_declares_it() -> None:
    cluster = SimCluster(2, seed=16)
    client = cluster.client()
    client.submit(SimTask("tpu-1", resources={"TPU": 1.0}), SimTask("then-1", ("tpu-1",)))
    cluster.run_until_idle()  # no-worker is a genuine stall here
    assert cluster.task_state("tpu-1") == "no-worker"
    (stalled,) = cluster.scheduler.stalled
    assert stalled.key == "tpu-1" and "TPU" in stalled.reason
    tpu = cluster.add_worker(1, {"TPU": 1.0})
    cluster.run_until_idle()
    assert cluster.who_has("tpu-1") == [tpu.address]
    assert client.result("then-1") == cluster.expected("then-1")
