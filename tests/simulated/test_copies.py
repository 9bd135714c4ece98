"""Copies of data end to end on the simulated cluster: replicate, retirement
of a worker holding the only copy, insurance copies while workers die, and a
worker pausing while it fetches."""

from __future__ import annotations

from taskmill.core.scheduler.replicas import INSURANCE_WINDOW, INSURED_BYTES
from taskmill.protocol.vocabulary import AcquireReplicas, ComputeTask
from taskmill.testing import SimCluster, SimTask


def copy_requests(cluster: SimCluster) -> dict[str, set[str]]:
    """key -> the workers asked to fetch a copy of it (``acquire-replicas``)."""
    out: dict[str, set[str]] = {}
    for m in cluster.messages(AcquireReplicas):
        for key in m.who_has:
            out.setdefault(key, set()).add(m.worker)
    return out


def after_a_death(seed: int) -> SimCluster:
    """Three workers, the last of which has just died (the insurance window opens)."""
    cluster = SimCluster(3, seed=seed, trace=True)
    cluster.kill("sim://w2")
    cluster.run_until_idle()
    return cluster


def chain(cluster: SimCluster, nbytes: int = 8, wanted: tuple[str, ...] = ("out-1",)) -> None:
    """in-1 -> out-1, in-1 of ``nbytes``, submitted by the client "chain"."""
    client = cluster.clients.get("chain") or cluster.client("chain")
    client.submit(SimTask("in-1", nbytes=nbytes), SimTask("out-1", ("in-1",)), wanted=list(wanted))


def test_replicate_ignores_keys_that_are_not_in_memory() -> None:
    cluster = SimCluster(2, seed=1, trace=True)
    client = cluster.client()
    client.submit(SimTask("slow-1", duration=2.0))
    cluster.run_until(lambda: cluster.task_state("slow-1") == "processing")
    cluster.replicate(["slow-1", "unknown-1"])
    cluster.run_until_idle()
    assert copy_requests(cluster) == {}
    for key in ("slow-1", "unknown-1"):
        assert any("replicate of a key not in memory" in e[4] for e in cluster.state.story(key))
    assert len(cluster.who_has("slow-1")) == 1


def test_a_replicated_result_survives_its_first_holder_without_being_recomputed() -> None:
    cluster = SimCluster(2, seed=2)
    client = cluster.client()
    client.submit(SimTask("r-1"))
    cluster.run_until_idle()
    (first,) = cluster.who_has("r-1")
    cluster.replicate(["r-1"])
    cluster.run_until_idle()
    cluster.kill(first)
    cluster.run_until_idle()
    assert cluster.who_has("r-1") != [] and cluster.book.runs["r-1"] == 1
    assert client.result("r-1") == cluster.expected("r-1")


def test_replicate_asks_no_paused_worker_for_a_copy() -> None:
    cluster = SimCluster(3, seed=3, trace=True)
    client = cluster.client()
    client.scatter({"s-1": 1}, workers=["sim://w0"])
    cluster.pause("sim://w1")
    cluster.run_until_idle()
    cluster.replicate(["s-1"])
    cluster.run_until_idle()
    assert copy_requests(cluster) == {"s-1": {"sim://w2"}}
    assert sorted(cluster.who_has("s-1")) == ["sim://w0", "sim://w2"]


def test_replicate_to_more_workers_than_exist_copies_to_all_of_them() -> None:
    cluster = SimCluster(3, seed=4)
    client = cluster.client()
    client.scatter({"s-1": 1}, workers=["sim://w1"])
    cluster.run_until_idle()
    cluster.replicate(["s-1"], n=10)
    cluster.run_until_idle()
    assert sorted(cluster.who_has("s-1")) == cluster.addresses
    assert all(cluster.worker(a).store["s-1"] == 1 for a in cluster.addresses)


def test_a_copy_released_before_it_lands_is_freed_everywhere() -> None:
    cluster = SimCluster(3, seed=5)
    client = cluster.client()
    client.scatter({"s-1": 1}, workers=["sim://w0"])
    cluster.run_until_idle()
    cluster.replicate(["s-1"])
    client.release("s-1")
    cluster.run_until_idle()
    assert cluster.task_state("s-1") is None and cluster.copies_pending(["s-1"]) == []
    assert all("s-1" not in w.store for w in cluster.workers.values())


def test_retiring_the_only_holder_of_a_big_result_moves_it_instead_of_recomputing() -> None:
    cluster = SimCluster(2, seed=6, trace=True)
    client = cluster.client()
    client.submit(SimTask("big-1", nbytes=50_000_000, workers=("sim://w0",), allow_other_workers=True))
    cluster.run_until_idle()
    cluster.retire("sim://w0")
    cluster.run_until_idle()
    assert cluster.scheduler.retired == {"sim://w0": True}
    assert copy_requests(cluster) == {"big-1": {"sim://w1"}}
    assert cluster.who_has("big-1") == ["sim://w1"] and cluster.book.runs["big-1"] == 1
    assert client.result("big-1") == cluster.expected("big-1")


def test_retiring_a_worker_whose_data_is_held_elsewhere_too_moves_nothing() -> None:
    cluster = SimCluster(2, seed=7, trace=True)
    client = cluster.client()
    client.scatter({"s-1": 1}, broadcast=True)
    cluster.run_until_idle()
    cluster.retire("sim://w1")
    cluster.run_until_idle()
    assert cluster.scheduler.retired == {"sim://w1": True} and copy_requests(cluster) == {}
    assert cluster.who_has("s-1") == ["sim://w0"]


def test_a_healthy_cluster_makes_no_insurance_copies() -> None:
    cluster = SimCluster(3, seed=8, trace=True)
    chain(cluster)
    cluster.run_until_idle()
    assert copy_requests(cluster) == {}


def test_after_a_death_small_needed_results_get_a_second_holder() -> None:
    cluster = after_a_death(seed=9)
    chain(cluster, wanted=("in-1", "out-1"))
    cluster.run_until_idle()
    assert set(copy_requests(cluster)) == {"in-1", "out-1"}
    for key in ("in-1", "out-1"):
        assert len(cluster.who_has(key)) == 2
        assert all(cluster.worker(a).store[key] == cluster.expected(key) for a in cluster.who_has(key))


def test_after_a_death_a_big_result_gets_no_insurance_copy() -> None:
    cluster = after_a_death(seed=10)
    chain(cluster, nbytes=INSURED_BYTES + 1)
    cluster.run_until_idle()
    assert "in-1" not in copy_requests(cluster)


def test_insured_results_survive_the_death_of_their_first_holder_without_recompute() -> None:
    cluster = after_a_death(seed=11)
    client = cluster.client("chain")
    chain(cluster, wanted=("in-1", "out-1"))
    cluster.run_until_idle()
    (first,) = {m.worker for m in cluster.messages(ComputeTask)}
    cluster.kill(first)
    cluster.run_until_idle()
    assert cluster.book.runs == {"in-1": 1, "out-1": 1}
    assert client.result("out-1") == cluster.expected("out-1") and first not in cluster.who_has("out-1")


def test_insurance_stops_once_the_window_after_the_death_has_passed() -> None:
    cluster = after_a_death(seed=12)
    cluster.clock.advance(INSURANCE_WINDOW + 1)
    cluster.heartbeat("sim://w0")  # brings the new time to the scheduler
    cluster.run_until_idle()
    chain(cluster)
    cluster.run_until_idle()
    assert copy_requests(cluster) == {}


def test_a_worker_paused_while_fetching_takes_the_data_but_starts_nothing_until_it_resumes() -> None:
    cluster = SimCluster(2, seed=13)
    client = cluster.client()
    client.submit(SimTask("in-1", nbytes=10**6, workers=("sim://w0",)))
    cluster.run_until_idle()
    fetcher = cluster.worker("sim://w1")
    client.submit(SimTask("out-1", ("in-1",), workers=("sim://w1",)))
    cluster.run_until(lambda: fetcher.state.task_state("in-1") == "flight")
    cluster.pause("sim://w1")
    cluster.run_until_idle()
    assert "in-1" in fetcher.store and fetcher.state.task_state("out-1") == "ready"
    assert "out-1" not in cluster.book.runs
    cluster.pause("sim://w1", False)
    cluster.run_until_idle()
    assert client.result("out-1") == cluster.expected("out-1")
