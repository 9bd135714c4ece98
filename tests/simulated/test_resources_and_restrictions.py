"""Resources and worker restrictions end to end on the simulated cluster.

The simulated worker shell fails a run that would use more of a resource
than its worker declared, so every test here also checks that the scheduler
never oversubscribes one."""

from __future__ import annotations

import pytest

from taskmill.testing import SimCluster, SimTask

GPU = {"GPU": 1.0}
#: big enough that no insurance copy follows a death (who_has stays the one runner)
BIG = 10**6


def gpu_pair(seed: int, **kw: object) -> SimCluster:
    """Two workers with two threads and GPU=1 each."""
    return SimCluster([(2, GPU), (2, GPU)], seed=seed, **kw)  # type: ignore[arg-type]


def running(cluster: SimCluster, address: str) -> int:
    """Runs going on at ``address`` whose result is still wanted."""
    return sum(not r.cancelled for r in cluster.worker(address).running.values())


def peak_per_worker(cluster: SimCluster) -> dict[str, int]:
    """Step until idle; the most runs at once on each worker.  Then check."""
    peaks = {a: 0 for a in cluster.addresses}

    def measure() -> None:
        for a in cluster.workers:
            peaks[a] = max(peaks.get(a, 0), running(cluster, a))

    measure()
    while cluster.step():
        measure()
    cluster.run_until_idle()
    return peaks


def used(cluster: SimCluster) -> list[dict[str, float]]:
    return [dict(ws.resources_used) for ws in cluster.state.workers.values()]


def test_each_worker_runs_one_gpu_task_at_a_time_and_plain_tasks_share_its_threads() -> None:
    """(was tests/cluster/test_resources.py::test_each_worker_runs_one_gpu_task_at_a_time)"""
    cluster = gpu_pair(seed=1)
    info = cluster.state.workers_info()
    assert [w["resources"] for w in info.values()] == [GPU, GPU]
    client = cluster.client()
    client.submit(*[SimTask(f"gpu-{i}", resources=GPU) for i in range(8)])
    assert set(peak_per_worker(cluster).values()) == {1}
    assert all(client.outcome(f"gpu-{i}") == "memory" for i in range(8))
    assert used(cluster) == [{}, {}]
    client.submit(*[SimTask(f"plain-{i}") for i in range(8)])
    assert max(peak_per_worker(cluster).values()) == 2


def test_a_half_gpu_task_runs_two_at_a_time() -> None:
    """(was tests/cluster/test_resources.py::test_a_half_gpu_task_runs_two_at_a_time)"""
    cluster = gpu_pair(seed=2)
    client = cluster.client()
    client.submit(*[SimTask(f"half-{i}", resources={"GPU": 0.5}) for i in range(4)])
    assert max(peak_per_worker(cluster).values()) == 2


def test_a_task_that_fails_gives_its_resource_to_the_next_one() -> None:
    cluster = SimCluster([(2, GPU)], seed=3)
    client = cluster.client()
    client.submit(SimTask("bad-1", resources=GPU, fail=1), SimTask("next-1", resources=GPU))
    cluster.run_until_idle()
    assert (client.outcome("bad-1"), client.outcome("next-1")) == ("erred", "memory")
    assert used(cluster) == [{}]


def test_a_retried_task_gives_its_resource_back_between_runs() -> None:
    cluster = SimCluster([(2, GPU)], seed=4)
    client = cluster.client()
    client.submit(SimTask("flaky-1", resources=GPU, fail=2, retries=2), SimTask("other-1", resources=GPU))
    assert peak_per_worker(cluster) == {"sim://w0": 1}
    assert client.outcome("flaky-1") == client.outcome("other-1") == "memory"
    assert cluster.book.runs["flaky-1"] == 3 and used(cluster) == [{}]


def test_cancelling_a_running_task_frees_its_resource_for_the_queued_one() -> None:
    cluster = SimCluster([(2, GPU)], seed=5)
    client = cluster.client()
    client.submit(SimTask("first-1", resources=GPU), SimTask("second-1", resources=GPU))
    cluster.run_until(lambda: running(cluster, "sim://w0") == 1 and cluster.task_state("second-1") == "queued")
    (first,) = cluster.worker("sim://w0").running
    second = "second-1" if first == "first-1" else "first-1"
    client.cancel(first)
    cluster.deliver(client.id)
    assert cluster.task_state(second) == "processing"  # at once: the resource is free
    cluster.run_until_idle()
    assert client.outcome(first) == "cancelled" and client.outcome(second) == "memory"


def test_a_resource_task_of_a_dead_worker_moves_to_another_worker_with_the_resource() -> None:
    cluster = SimCluster([(1, GPU), (1, None), (1, GPU)], seed=6)
    client = cluster.client()
    client.submit(SimTask("gpu-1", resources=GPU, nbytes=BIG))
    cluster.run_until(lambda: any("gpu-1" in w.running for w in cluster.workers.values()))
    (dead,) = [a for a, w in cluster.workers.items() if "gpu-1" in w.running]
    cluster.kill(dead)
    cluster.run_until_idle()
    (survivor,) = {"sim://w0", "sim://w2"} - {dead}
    assert cluster.who_has("gpu-1") == [survivor] and used(cluster) == [{}, {}]


def test_the_last_worker_with_the_resource_dying_stalls_its_tasks_until_another_joins() -> None:
    cluster = SimCluster([(1, GPU), (1, None)], seed=7)
    client = cluster.client()
    client.submit(*[SimTask(f"gpu-{i}", resources=GPU, nbytes=BIG) for i in range(3)])
    cluster.run_until(lambda: running(cluster, "sim://w0") == 1)
    cluster.kill("sim://w0")
    cluster.run_until_idle()
    stalled = [k for k in ("gpu-0", "gpu-1", "gpu-2") if cluster.task_state(k) == "no-worker"]
    assert stalled and all(client.outcome(k) is None for k in stalled)
    assert any(s.key in stalled and "GPU" in s.reason for s in cluster.scheduler.stalled)
    new = cluster.add_worker(1, GPU)
    cluster.run_until_idle()
    assert all(cluster.who_has(k) == [new.address] for k in stalled)


def test_the_story_of_a_stalled_task_says_which_resource_no_worker_declares() -> None:
    cluster = SimCluster(2, seed=8)
    client = cluster.client()
    client.submit(SimTask("tpu-1", resources={"TPU": 2.0}))
    cluster.run_until_idle()
    notes = [e[4] for e in cluster.state.story("tpu-1") if e[2] == "no-worker"]
    assert notes and "none declares TPU" in notes[0] and "TPU=2" in notes[0]
    cluster.add_worker(1, {"TPU": 1.0})
    cluster.run_until_idle()  # it has registered
    client.submit(SimTask("tpu-2", resources={"TPU": 2.0}))
    cluster.run_until_idle()
    assert cluster.task_state("tpu-1") == cluster.task_state("tpu-2") == "no-worker"  # one is not enough
    assert any("at most TPU=1 on one worker" in e[4] for e in cluster.state.story("tpu-2"))
    big = cluster.add_worker(1, {"TPU": 2.0})
    cluster.run_until_idle()
    assert cluster.who_has("tpu-1") == cluster.who_has("tpu-2") == [big.address]


def test_a_task_needing_two_resources_runs_only_where_both_are_declared() -> None:
    cluster = SimCluster([(1, {"GPU": 1.0}), (1, {"MEM": 4.0}), (1, {"GPU": 1.0, "MEM": 4.0})], seed=9)
    client = cluster.client()
    client.submit(*[SimTask(f"both-{i}", resources={"GPU": 1.0, "MEM": 2.0}) for i in range(3)])
    cluster.run_until_idle()
    assert all(cluster.who_has(f"both-{i}") == ["sim://w2"] for i in range(3))


def test_a_resource_task_goes_to_the_resource_not_to_its_input() -> None:
    cluster = SimCluster([(1, None), (1, GPU)], seed=10)
    client = cluster.client()
    client.submit(SimTask("in-1", nbytes=10**7, workers=("sim://w0",)), SimTask("gpu-1", ("in-1",), resources=GPU))
    cluster.run_until_idle()
    assert cluster.who_has("gpu-1") == ["sim://w1"]
    assert client.result("gpu-1") == cluster.expected("gpu-1")


def test_workers_info_shows_the_resources_held_while_a_task_runs() -> None:
    cluster = SimCluster([(2, {"GPU": 2.0})], seed=11)
    client = cluster.client()
    client.submit(SimTask("g-1", resources={"GPU": 1.5}))
    cluster.run_until(lambda: running(cluster, "sim://w0") == 1)
    info = cluster.state.workers_info()["sim://w0"]
    assert info["resources"] == {"GPU": 2.0} and info["resources_used"] == {"GPU": 1.5}
    cluster.run_until_idle()
    assert cluster.state.workers_info()["sim://w0"]["resources_used"] == {}


def test_retiring_the_only_worker_with_the_resource_stalls_its_tasks() -> None:
    cluster = SimCluster([(1, GPU), (1, None)], seed=12)
    client = cluster.client()
    client.submit(SimTask("gpu-1", resources=GPU))
    cluster.run_until(lambda: running(cluster, "sim://w0") == 1)
    cluster.retire("sim://w0")
    cluster.run_until_idle()
    assert cluster.scheduler.retired == {"sim://w0": True}
    assert cluster.task_state("gpu-1") == "no-worker"
    assert cluster.state.tasks["gpu-1"].suspicious == 0


def test_a_strictly_restricted_task_waits_for_its_worker_to_come_back() -> None:
    cluster = SimCluster(2, seed=13)
    client = cluster.client()
    client.submit(SimTask("pinned-1", workers=("sim://w0",), nbytes=BIG))
    cluster.run_until(lambda: "pinned-1" in cluster.worker("sim://w0").running)
    cluster.kill("sim://w0")
    cluster.run_until_idle()
    assert cluster.task_state("pinned-1") == "no-worker"
    cluster.add_worker(address="sim://w0")
    cluster.run_until_idle()
    assert cluster.who_has("pinned-1") == ["sim://w0"] and cluster.book.runs["pinned-1"] == 2


def test_a_task_restricted_to_two_workers_moves_to_the_other_when_one_dies() -> None:
    cluster = SimCluster(3, seed=14)
    client = cluster.client()
    client.submit(SimTask("pair-1", workers=("sim://w0", "sim://w1"), nbytes=BIG))
    cluster.run_until(lambda: cluster.task_state("pair-1") == "processing")
    first = cluster.state.tasks["pair-1"].processing_on
    assert first is not None
    cluster.kill(first.address)
    cluster.run_until_idle()
    (other,) = {"sim://w0", "sim://w1"} - {first.address}
    assert cluster.who_has("pair-1") == [other]


def test_a_loose_restriction_whose_worker_is_gone_runs_anywhere() -> None:
    cluster = SimCluster(2, seed=15)
    cluster.kill("sim://w1")
    cluster.run_until_idle()
    client = cluster.client()
    client.submit(SimTask("pref-1", workers=("sim://w1",), allow_other_workers=True))
    cluster.run_until_idle()
    assert cluster.who_has("pref-1") == ["sim://w0"]


def test_a_task_restricted_to_an_address_nobody_has_yet_runs_when_a_worker_starts_there() -> None:
    cluster = SimCluster(1, seed=16)
    client = cluster.client()
    client.submit(SimTask("later-1", workers=("sim://special",)), SimTask("then-1", ("later-1",)))
    cluster.run_until_idle()
    assert cluster.task_state("later-1") == "no-worker" and cluster.task_state("then-1") == "waiting"
    cluster.add_worker(address="sim://special")
    cluster.run_until_idle()
    assert cluster.who_has("later-1") == ["sim://special"]
    assert client.result("then-1") == cluster.expected("then-1")


def test_the_story_of_a_task_waiting_for_its_restricted_workers_names_them() -> None:
    cluster = SimCluster(1, seed=17)
    client = cluster.client()
    client.submit(SimTask("pinned-1", workers=("sim://gone-a", "sim://gone-b")))
    cluster.run_until_idle()
    assert cluster.task_state("pinned-1") == "no-worker"
    notes = [e[4] for e in cluster.state.story("pinned-1") if e[2] == "no-worker"]
    assert any("sim://gone-a" in n and "sim://gone-b" in n for n in notes)
