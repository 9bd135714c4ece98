"""Failures end to end on the simulated cluster: workers dying in the middle
of chains and diamonds, KilledWorker, missing dependencies, errors and
where they stop, data lost while it moves."""

from __future__ import annotations

from taskmill.protocol.vocabulary import ComputeTask, KeyErred, MissingData
from taskmill.testing import SimCluster, SimTask


def runner_of(cluster: SimCluster, key: str) -> str:
    """The address of the live worker running ``key`` now."""
    (address,) = [a for a, w in cluster.workers.items() if key in w.running]
    return address


def run_until_running(cluster: SimCluster, key: str) -> str:
    cluster.run_until(lambda: any(key in w.running for w in cluster.workers.values()))
    return runner_of(cluster, key)


def kinds(client: object, key: str) -> list[str]:
    return [type(m).__name__ for m in client.reports_for(key)]  # type: ignore[attr-defined]


def erred_report(client: object, key: str) -> KeyErred:
    (report,) = client.reports_for(key)  # type: ignore[attr-defined]
    assert isinstance(report, KeyErred)
    return report


def test_a_chain_whose_worker_dies_mid_way_is_finished_elsewhere() -> None:
    cluster = SimCluster(2, seed=1)
    client = cluster.client()
    client.submit(SimTask("a-1"), SimTask("b-1", ("a-1",), duration=2.0), SimTask("c-1", ("b-1",)),
                  wanted=["c-1"])
    dead = run_until_running(cluster, "b-1")
    cluster.kill(dead)
    cluster.run_until_idle()
    assert client.result("c-1") == cluster.expected("c-1")
    assert cluster.who_has("c-1") != [dead] and kinds(client, "c-1") == ["KeyInMemory"]
    assert cluster.book.runs["b-1"] == 2


def test_a_diamond_loses_a_finished_branch_and_recomputes_only_what_it_needs() -> None:
    cluster = SimCluster(2, seed=2)
    client = cluster.client()
    client.submit(SimTask("a-1"), SimTask("b-1", ("a-1",)), SimTask("c-1", ("a-1",), duration=3.0),
                  SimTask("d-1", ("b-1", "c-1")), wanted=["d-1"])
    cluster.run_until(lambda: cluster.who_has("b-1") != [] and cluster.task_state("c-1") == "processing")
    (b_holder,) = cluster.who_has("b-1")
    cluster.kill(b_holder)
    cluster.run_until_idle()
    assert client.result("d-1") == cluster.expected("d-1")
    assert cluster.book.runs["b-1"] == 2 and cluster.book.runs["d-1"] == 1
    assert kinds(client, "d-1") == ["KeyInMemory"]


def test_killed_worker_names_every_death_and_reaches_the_dependents() -> None:
    cluster = SimCluster(2, seed=3, allowed_failures=2)
    client = cluster.client()
    client.submit(SimTask("poison-1", duration=5.0), SimTask("after-1", ("poison-1",)))
    victims = []
    for _ in range(2):
        victims.append(run_until_running(cluster, "poison-1"))
        cluster.kill(victims[-1], rejoin=True)
    cluster.run_until_idle()
    report = erred_report(client, "poison-1")
    assert report.error_type == "KilledWorker" and report.exception is None and report.worker == ""
    assert "2 workers" in report.exception_text
    assert all(f"{v} (its connection closed)" in report.exception_text for v in victims)
    after = erred_report(client, "after-1")
    assert (after.error_type, after.exception_text) == ("KilledWorker", report.exception_text)
    assert "after-1" not in cluster.book.runs


def test_a_retired_worker_does_not_count_against_its_running_task() -> None:
    cluster = SimCluster(2, seed=4, allowed_failures=1)
    client = cluster.client()
    client.submit(SimTask("long-1", duration=3.0))
    where = run_until_running(cluster, "long-1")
    cluster.retire(where)
    cluster.run_until_idle()
    assert client.result("long-1") == cluster.expected("long-1")
    assert cluster.state.tasks["long-1"].suspicious == 0
    assert cluster.book.runs["long-1"] == 2


def test_a_worker_death_does_not_use_up_the_retries_of_its_task() -> None:
    cluster = SimCluster(2, seed=5)
    client = cluster.client()
    client.submit(SimTask("solid-1", duration=2.0, retries=0))
    cluster.kill(run_until_running(cluster, "solid-1"))
    cluster.run_until_idle()
    assert client.outcome("solid-1") == "memory"
    assert cluster.state.tasks["solid-1"].suspicious == 1


def test_an_unknown_dependency_errs_the_task_and_its_dependents_before_any_worker_hears() -> None:
    cluster = SimCluster(2, seed=6, trace=True)
    client = cluster.client()
    client.submit(SimTask("use-1", ("nowhere-1",)), SimTask("top-1", ("use-1",)))
    cluster.run_until_idle()
    report = erred_report(client, "use-1")
    assert report.error_type == "MissingDependencyError" and "'nowhere-1'" in report.exception_text
    assert erred_report(client, "top-1").error_type == "MissingDependencyError"
    assert cluster.messages(ComputeTask) == [] and cluster.book.runs == {}


def test_a_dependent_submitted_on_an_erred_key_errs_at_once_with_its_exception() -> None:
    cluster = SimCluster(1, seed=7, trace=True)
    client = cluster.client()
    client.submit(SimTask("bad-1", fail=1))
    cluster.run_until_idle()
    client.submit(SimTask("late-1", ("bad-1",)))
    cluster.run_until_idle()
    late = erred_report(client, "late-1")
    assert late.exception is not None and late.exception.deserialize().key == "bad-1"
    assert "late-1" not in {m.key for m in cluster.messages(ComputeTask)}


def test_an_erred_task_stays_erred_when_the_worker_that_ran_it_dies() -> None:
    cluster = SimCluster(2, seed=8)
    client = cluster.client()
    client.submit(SimTask("bad-1", fail=5))
    cluster.run_until_idle()
    cluster.kill(erred_report(client, "bad-1").worker)
    cluster.run_until_idle()
    assert cluster.task_state("bad-1") == "erred" and cluster.book.runs["bad-1"] == 1
    assert kinds(client, "bad-1") == ["KeyErred"]


def test_an_error_names_the_worker_that_ran_the_task_and_carries_its_traceback() -> None:
    cluster = SimCluster(3, seed=9, trace=True)
    client = cluster.client()
    client.submit(SimTask("bad-1", fail=1), SimTask("mid-1", ("bad-1",)))
    cluster.run_until_idle()
    (sent,) = [m for m in cluster.messages(ComputeTask) if m.key == "bad-1"]
    for key in ("bad-1", "mid-1"):  # a dependent reports the original failure and place
        report = erred_report(client, key)
        assert report.worker == sent.worker
        assert report.traceback is not None and "simulated failure of 'bad-1'" in report.traceback


def test_an_error_does_not_reach_an_independent_graph() -> None:
    cluster = SimCluster(2, seed=10)
    client = cluster.client()
    client.submit(SimTask("bad-1", fail=1), SimTask("x-1"), SimTask("y-1", ("x-1",)), SimTask("z-1", ("bad-1", "y-1")))
    cluster.run_until_idle()
    assert [client.outcome(k) for k in ("bad-1", "x-1", "y-1", "z-1")] == ["erred", "memory", "memory", "erred"]


def test_the_holder_dying_while_its_output_is_fetched_makes_it_recomputed_where_needed() -> None:
    cluster = SimCluster(2, seed=11)
    client = cluster.client()
    client.submit(SimTask("in-1", nbytes=10**6, workers=("sim://w0",), allow_other_workers=True))
    cluster.run_until_idle()
    fetcher = cluster.worker("sim://w1")
    client.submit(SimTask("out-1", ("in-1",), workers=("sim://w1",)))
    cluster.run_until(lambda: fetcher.state.task_state("in-1") == "flight")
    cluster.kill("sim://w0")
    cluster.run_until_idle()
    assert client.result("out-1") == cluster.expected("out-1")
    assert cluster.book.runs["in-1"] == 2 and cluster.who_has("in-1") == ["sim://w1"]


def test_losing_one_of_two_copies_of_an_input_recomputes_nothing() -> None:
    cluster = SimCluster(3, seed=12)
    client = cluster.client()
    client.submit(SimTask("in-1", workers=("sim://w0",)))
    cluster.run_until_idle()
    cluster.replicate(["in-1"], workers=["sim://w1"])
    cluster.run_until_idle()
    cluster.kill("sim://w0")
    client.submit(SimTask("out-1", ("in-1",), workers=("sim://w2",)))
    cluster.run_until_idle()
    assert client.result("out-1") == cluster.expected("out-1")
    assert cluster.book.runs["in-1"] == 1


def test_a_copy_a_peer_cannot_serve_is_fetched_from_the_other_holder() -> None:
    cluster = SimCluster(3, seed=13, trace=True)
    client = cluster.client()
    client.submit(SimTask("in-1", workers=("sim://w0",)))
    cluster.run_until_idle()
    cluster.replicate(["in-1"], workers=["sim://w1"])
    cluster.run_until_idle()
    cluster.drop_data("sim://w0", "in-1")  # w0 (asked first: ties go to the lower address) fails to serve
    client.submit(SimTask("out-1", ("in-1",), workers=("sim://w2",)))
    cluster.run_until_idle()
    assert client.result("out-1") == cluster.expected("out-1") and cluster.book.runs["in-1"] == 1
    assert [(m.errant_worker, m.keys) for m in cluster.messages(MissingData)] == [("sim://w0", ("in-1",))]
    assert "sim://w0" not in cluster.who_has("in-1")  # its copy was struck off


def test_every_worker_dying_recomputes_every_result_and_tells_each_client_once() -> None:
    cluster = SimCluster(2, seed=14)
    client = cluster.client()
    keys = client.submit(*[SimTask(f"r-{i}") for i in range(4)], SimTask("sum-1", tuple(f"r-{i}" for i in range(4))))
    cluster.run_until_idle()
    for address in cluster.addresses:
        cluster.kill(address)
    cluster.run_until_idle()
    cluster.add_worker()
    cluster.run_until_idle()
    assert all(client.result(k) == cluster.expected(k) for k in keys)
    assert all(kinds(client, k) == ["KeyInMemory"] for k in keys)
    assert all(cluster.book.runs[k] == 2 for k in keys)


def test_a_result_sent_just_before_its_worker_died_is_recorded_then_recomputed() -> None:
    cluster = SimCluster(2, seed=15)
    client = cluster.client()
    client.submit(SimTask("a-1", duration=1.0, workers=("sim://w0",), allow_other_workers=True))
    worker = cluster.worker("sim://w0")
    cluster.run_until(lambda: "a-1" in worker.store)  # task-finished is on its way
    cluster.kill("sim://w0", lose_in_flight=False)
    cluster.run_until_idle()
    assert cluster.who_has("a-1") == ["sim://w1"] and cluster.book.runs["a-1"] == 2
    assert kinds(client, "a-1") == ["KeyInMemory"]
