"""Where the scheduler sends work, end to end on the simulated cluster:
root tasks held back on the scheduler, locality, busy holders, loose
restrictions, occupancy."""

from __future__ import annotations

from collections.abc import Callable

from taskmill.core.scheduler.policy import SATURATION
from taskmill.protocol.vocabulary import AddKeys, ComputeTask
from taskmill.testing import SimCluster, SimTask


def peak_while_running(cluster: SimCluster, measure: Callable[[], int]) -> int:
    """Step until idle, returning the largest value ``measure()`` took; then check."""
    peak = measure()
    while cluster.step():
        peak = max(peak, measure())
    cluster.run_until_idle()
    return peak


def copied_keys(cluster: SimCluster) -> set[str]:
    """Keys some worker announced a fetched copy of (``add-keys``)."""
    return {k for m in cluster.messages(AddKeys) for k in m.nbytes}


def put(cluster: SimCluster, key: str, where: str, nbytes: int = 8) -> SimTask:
    """Compute ``key`` on ``where`` (strictly) and wait for it; returns its definition."""
    task = SimTask(key, nbytes=nbytes, workers=(where,))
    owner = cluster.clients.get("owner") or cluster.client("owner")
    owner.submit(task)
    cluster.run_until_idle()
    return task


def test_root_tasks_are_held_on_the_scheduler_not_flooded_onto_the_worker() -> None:
    cluster = SimCluster(1, seed=1)
    worker = cluster.worker("sim://w0")
    client = cluster.client()
    client.submit(*[SimTask(f"root-{i}") for i in range(10)])
    cluster.run_until(lambda: bool(worker.running))
    assert sum(ts.state == "queued" for ts in cluster.state.tasks.values()) == 10 - SATURATION
    peak = peak_while_running(cluster, lambda: worker.state.executing_count + worker.state.ready_count)
    assert peak == SATURATION
    assert all(client.outcome(f"root-{i}") == "memory" for i in range(10))


def test_queued_roots_go_out_one_by_one_as_slots_free() -> None:
    cluster = SimCluster(2, seed=2, trace=True)
    client = cluster.client()
    client.submit(*[SimTask(f"root-{i}", duration=0.5) for i in range(12)])
    peak = peak_while_running(cluster, lambda: max(len(ws.processing) for ws in cluster.state.workers.values()))
    assert peak == SATURATION
    assert len(cluster.messages(ComputeTask)) == 12  # each sent exactly once


def test_a_task_runs_where_most_of_its_input_bytes_live() -> None:
    cluster = SimCluster(2, seed=3, trace=True)
    put(cluster, "big-1", "sim://w0", nbytes=10_000)
    put(cluster, "small-1", "sim://w1", nbytes=10)
    client = cluster.client()
    client.submit(SimTask("both-1", ("big-1", "small-1")))
    cluster.run_until_idle()
    assert cluster.who_has("both-1") == ["sim://w0"]
    assert copied_keys(cluster) == {"small-1"}  # only the small input moved


def test_a_single_input_chain_never_moves_data() -> None:
    cluster = SimCluster(3, seed=4, trace=True)
    client = cluster.client()
    client.submit(SimTask("a-1"), SimTask("b-1", ("a-1",)), SimTask("c-1", ("b-1",)), wanted=["c-1"])
    cluster.run_until_idle()
    assert copied_keys(cluster) == set()
    assert len({m.worker for m in cluster.messages(ComputeTask)}) == 1


def test_a_dependent_of_a_big_input_waits_for_its_busy_holder() -> None:
    """Moving 100 MB costs more than waiting for two queued tasks to finish."""
    cluster = SimCluster(2, seed=5, trace=True)
    put(cluster, "big-1", "sim://w0", nbytes=100_000_000)
    client = cluster.client()
    client.submit(*[SimTask(f"busy-{i}", duration=2.0, workers=("sim://w0",)) for i in range(SATURATION)])
    cluster.run_until(lambda: len(cluster.state.workers["sim://w0"].processing) == SATURATION)
    client.submit(SimTask("use-1", ("big-1",)))
    cluster.deliver(client.id)  # placed while w0 is still full
    cluster.run_until_idle()
    assert cluster.who_has("use-1") == ["sim://w0"]
    assert "big-1" not in copied_keys(cluster)


def test_a_dependent_of_a_small_input_moves_to_an_idle_worker_rather_than_wait() -> None:
    cluster = SimCluster(2, seed=5, trace=True)
    put(cluster, "little-1", "sim://w0", nbytes=8)
    client = cluster.client()
    client.submit(*[SimTask(f"busy-{i}", duration=2.0, workers=("sim://w0",)) for i in range(SATURATION)])
    cluster.run_until(lambda: len(cluster.state.workers["sim://w0"].processing) == SATURATION)
    client.submit(SimTask("use-1", ("little-1",)))
    cluster.deliver(client.id)  # placed while w0 is still full
    cluster.run_until_idle()
    assert cluster.who_has("use-1") == ["sim://w1"]
    assert "little-1" in copied_keys(cluster)


def test_root_tasks_fill_the_worker_with_more_threads_first() -> None:
    cluster = SimCluster([(1, None), (4, None)], seed=6, trace=True)
    client = cluster.client()
    client.submit(*[SimTask(f"root-{i}", duration=1.0) for i in range(5)])
    cluster.run_until_idle()
    placed = [m.worker for m in cluster.messages(ComputeTask)]
    assert placed.count("sim://w1") >= 4


def test_a_diamond_stays_on_the_worker_of_its_root() -> None:
    cluster = SimCluster(2, seed=7, trace=True)
    client = cluster.client()
    client.submit(SimTask("a-1"), SimTask("b-1", ("a-1",)), SimTask("c-1", ("a-1",)),
                  SimTask("d-1", ("b-1", "c-1")), wanted=["d-1"])
    cluster.run_until_idle()
    (root_worker,) = {m.worker for m in cluster.messages(ComputeTask) if m.key == "a-1"}
    assert {m.worker for m in cluster.messages(ComputeTask)} == {root_worker}
    assert client.result("d-1") == cluster.expected("d-1")


def test_tiny_tasks_are_sent_many_at_a_time_once_known_to_be_tiny() -> None:
    cluster = SimCluster(1, seed=8)
    client = cluster.client()
    client.submit(SimTask("tiny-0", duration=0.0001))
    cluster.run_until_idle()
    client.submit(*[SimTask(f"tiny-{i}", duration=0.0001) for i in range(1, 200)])
    peak = peak_while_running(cluster, lambda: len(cluster.state.workers["sim://w0"].processing))
    assert peak > 10 * SATURATION


def test_a_loose_restriction_prefers_its_named_worker_while_it_has_room() -> None:
    cluster = SimCluster(3, seed=9)
    client = cluster.client()
    client.submit(SimTask("pref-1", workers=("sim://w2",), allow_other_workers=True))
    cluster.run_until_idle()
    assert cluster.who_has("pref-1") == ["sim://w2"]


def test_a_loose_restriction_runs_elsewhere_when_its_worker_is_full() -> None:
    cluster = SimCluster(2, seed=10)
    client = cluster.client()
    client.submit(*[SimTask(f"busy-{i}", duration=2.0, workers=("sim://w1",)) for i in range(SATURATION)])
    cluster.run_until(lambda: len(cluster.state.workers["sim://w1"].processing) == SATURATION)
    client.submit(SimTask("pref-1", workers=("sim://w1",), allow_other_workers=True))
    cluster.deliver(client.id)  # placed while w1 is still full
    cluster.run_until_idle()
    assert cluster.who_has("pref-1") == ["sim://w0"]


def test_scattered_items_are_spread_over_the_least_loaded_workers() -> None:
    cluster = SimCluster(3, seed=11)
    put(cluster, "held-1", "sim://w0", nbytes=10**6)
    client = cluster.client()
    keys = client.scatter({f"s-{i}": i for i in range(2)})
    cluster.run_until_idle()
    holders = [cluster.who_has(k) for k in keys]
    assert sorted(h for (h,) in holders) == ["sim://w1", "sim://w2"]  # not the loaded w0
