"""secede()/rejoin() on the simulated cluster: the worker and scheduler machines keep one count."""

from __future__ import annotations

import pytest

from taskmill.protocol.vocabulary import ComputeTask, Seceded
from taskmill.testing import SimCluster, SimTask
from taskmill.testing.cluster import SimulationFailed
from taskmill.testing.random_scenarios import run_scenario


def test_while_a_task_is_seceded_its_thread_runs_the_other_tasks() -> None:
    cluster = SimCluster(1, seed=1, trace=True)
    client = cluster.client()
    others = [SimTask(f"other-{i}", duration=0.1) for i in range(4)]
    client.submit(SimTask("parent-1", secede_after=0.001, seceded_for=None), *others)
    (worker,) = cluster.workers.values()
    cluster.run_until(lambda: all(client.outcome(t.key) == "memory" for t in others))
    assert client.outcome("parent-1") is None and list(worker.state.seceded) == ["parent-1"]
    worker.let_rejoin("parent-1")
    cluster.run_until_idle()
    assert client.result("parent-1") == cluster.expected("parent-1")
    told = [(m.key, m.seceded) for m in cluster.messages(Seceded)]
    assert told == [("parent-1", True), ("parent-1", False)]


def test_the_scheduler_sends_more_work_to_a_worker_whose_tasks_seceded() -> None:
    cluster = SimCluster(1, seed=2)
    client = cluster.client()
    waiting = [SimTask(f"wait-{i}", secede_after=0.0, seceded_for=None) for i in range(6)]
    client.submit(*waiting)
    (worker,) = cluster.workers.values()
    # one thread holds two normal tasks in the scheduler's slots; secession makes room for all
    record = cluster.state.workers[worker.address]
    cluster.run_until(lambda: len(worker.state.seceded) == 6 and record.used == 0)
    assert len(record.processing) == 6
    for t in waiting:
        worker.let_rejoin(t.key)
    cluster.run_until_idle()
    assert all(client.result(t.key) == cluster.expected(t.key) for t in waiting)


def test_rejoiners_go_before_tasks_not_started() -> None:
    """On the first schedule (by seed) where tasks wait on the worker behind
    the one that took the seceded task's thread: the next free thread goes to
    the rejoiner.  (Whether tasks queue there depends on the schedule: the
    scheduler sends tiny tasks ahead by their measured durations.)"""
    for seed in range(20):
        cluster = SimCluster(1, seed=seed)
        client = cluster.client()
        client.submit(SimTask("parent-1", secede_after=0.0, seceded_for=None, duration=0.01),
                      *[SimTask(f"next-{i}", duration=0.1) for i in range(8)])
        (worker,) = cluster.workers.values()
        state = worker.state
        try:
            cluster.run_until(lambda: bool(state.seceded) and state.busy_threads == 1
                              and state.ready_count > 0)
            worker.let_rejoin("parent-1")
            cluster.run_until(lambda: "parent-1" in state.rejoining)
        except SimulationFailed:
            continue  # nothing queued behind it on this schedule
        if not state.ready_count:
            continue  # the queue drained before the rejoin was asked for
        cluster.run_until(lambda: not state.rejoining)
        # the thread that freed went to the rejoiner, not to a ready next-i
        assert set(state.executing) == {"parent-1"} and state.ready_count > 0
        cluster.run_until_idle()
        return
    pytest.fail("no schedule of 20 queued tasks behind the seceded one")


def test_a_seceded_task_whose_worker_dies_runs_again_elsewhere() -> None:
    cluster = SimCluster(2, seed=4, trace=True)
    client = cluster.client()
    client.submit(SimTask("parent-1", secede_after=0.0, seceded_for=1.0))
    cluster.run_until(lambda: any(w.state.seceded for w in cluster.workers.values()))
    (where,) = [a for a, w in cluster.workers.items() if w.state.seceded]
    cluster.kill(where)
    cluster.run_until_idle()
    assert client.result("parent-1") == cluster.expected("parent-1")
    assert len([m for m in cluster.messages(ComputeTask) if m.key == "parent-1"]) == 2


def test_a_task_may_end_seceded() -> None:
    cluster = SimCluster(1, seed=5)
    client = cluster.client()
    client.submit(SimTask("parent-1", secede_after=0.0, seceded_for=0.1, rejoins=False),
                  SimTask("other-1"))
    cluster.run_until_idle()
    (worker,) = cluster.workers.values()
    assert client.result("parent-1") == cluster.expected("parent-1")
    assert not worker.state.seceded and worker.state.busy_threads == 0
    assert cluster.state.workers[worker.address].used == 0


@pytest.mark.parametrize("block", range(4))
def test_random_schedules_with_seceding_tasks(block: int) -> None:
    for seed in range(7_000_000 + 250 * block, 7_000_000 + 250 * (block + 1)):
        run_scenario(seed, "seceding")
