"""The scheduler's queues end to end: priorities order them, submission order
breaks ties, dependents and restricted tasks take their places, and queued
work survives releases, cancels and deaths."""

from __future__ import annotations

from taskmill.protocol.vocabulary import ComputeTask
from taskmill.testing import SimCluster, SimTask


def start_order(cluster: SimCluster) -> list[str]:
    """Keys in the order their first run started anywhere (the book records runs)."""
    return list(cluster.book.runs)


def one_thread() -> SimCluster:
    return SimCluster(1, seed=1, trace=True)


def test_queued_tasks_start_in_priority_order() -> None:
    cluster = one_thread()
    client = cluster.client()
    prios = {"t-a": 5, "t-b": 1, "t-c": 9, "t-d": 3, "t-e": 0, "t-f": 7}
    client.submit(*[SimTask(k, priority=(p,)) for k, p in prios.items()])
    cluster.run_until_idle()
    assert start_order(cluster) == sorted(prios, key=prios.__getitem__)


def test_equal_priorities_start_in_submission_order_across_submissions() -> None:
    cluster = one_thread()
    client = cluster.client()
    client.submit(*[SimTask(f"first-{i}") for i in range(3)])
    client.submit(*[SimTask(f"second-{i}") for i in range(3)])
    cluster.run_until_idle()
    assert start_order(cluster) == [f"first-{i}" for i in range(3)] + [f"second-{i}" for i in range(3)]


def test_a_later_submission_with_better_priority_overtakes_the_queue() -> None:
    cluster = one_thread()
    client = cluster.client()
    client.submit(*[SimTask(f"bulk-{i}", priority=(5,), duration=1.0) for i in range(6)])
    cluster.run_until(lambda: bool(cluster.worker("sim://w0").running))
    client.submit(SimTask("urgent-1", priority=(0,)))
    cluster.deliver(client.id)  # queued while the first two still run
    cluster.run_until_idle()
    order = start_order(cluster)
    # only the tasks already sent (two slots) start before it
    assert order.index("urgent-1") <= 2


def test_a_ready_dependent_with_better_priority_starts_before_queued_roots() -> None:
    cluster = one_thread()
    client = cluster.client()
    client.submit(*[SimTask(f"root-{i}", priority=(5,)) for i in range(6)],
                  SimTask("dep-1", ("root-0",), priority=(1,)))
    cluster.run_until_idle()
    order = start_order(cluster)
    assert order.index("dep-1") < order.index("root-3")


def test_a_ready_dependent_with_worse_priority_waits_behind_queued_roots() -> None:
    cluster = one_thread()
    client = cluster.client()
    client.submit(*[SimTask(f"root-{i}", priority=(5,)) for i in range(6)],
                  SimTask("dep-1", ("root-0",), priority=(9,)))
    cluster.run_until_idle()
    assert start_order(cluster)[-1] == "dep-1"


def test_strictly_restricted_tasks_queue_for_their_worker_without_blocking_others() -> None:
    cluster = SimCluster(2, seed=2)
    client = cluster.client()
    client.submit(*[SimTask(f"only-{i}", duration=1.0, workers=("sim://w1",)) for i in range(6)])
    cluster.run_until(lambda: cluster.task_state("only-5") == "queued")
    client.submit(SimTask("free-1"))
    cluster.deliver(client.id)
    assert cluster.state.tasks["free-1"].processing_on is cluster.state.workers["sim://w0"]
    assert cluster.task_state("only-5") == "queued"
    cluster.run_until_idle()
    assert all(cluster.who_has(f"only-{i}") == ["sim://w1"] for i in range(6))


def test_queued_tasks_wait_for_the_first_worker_then_run() -> None:
    cluster = SimCluster(0, seed=3)
    client = cluster.client()
    client.submit(*[SimTask(f"t-{i}") for i in range(4)])
    cluster.run_until_idle()
    assert {cluster.task_state(f"t-{i}") for i in range(4)} == {"queued"}
    cluster.add_worker()
    cluster.run_until_idle()
    assert all(client.result(f"t-{i}") == cluster.expected(f"t-{i}") for i in range(4))


def test_released_queued_tasks_leave_the_queue_and_never_run() -> None:
    cluster = one_thread()
    client = cluster.client()
    client.submit(*[SimTask(f"t-{i}", duration=1.0) for i in range(6)])
    cluster.run_until(lambda: cluster.task_state("t-5") == "queued" and bool(cluster.worker("sim://w0").running))
    client.release("t-4", "t-5")
    cluster.deliver(client.id)  # while they are still queued
    cluster.run_until_idle()
    assert "t-4" not in cluster.book.runs and "t-5" not in cluster.book.runs
    assert cluster.task_state("t-4") is None and client.outcome("t-3") == "memory"


def test_a_cancelled_queued_task_is_skipped_and_the_queue_goes_on() -> None:
    cluster = one_thread()
    client = cluster.client()
    client.submit(*[SimTask(f"t-{i}", duration=1.0) for i in range(5)])
    cluster.run_until(lambda: cluster.task_state("t-2") == "queued" and bool(cluster.worker("sim://w0").running))
    client.cancel("t-2")
    cluster.deliver(client.id)  # while it is still queued
    cluster.run_until_idle()
    assert client.outcome("t-2") == "cancelled" and "t-2" not in cluster.book.runs
    assert [client.outcome(f"t-{i}") for i in (0, 1, 3, 4)] == ["memory"] * 4


def test_queued_and_processing_tasks_survive_the_death_of_the_only_worker() -> None:
    cluster = one_thread()
    client = cluster.client()
    client.submit(*[SimTask(f"t-{i}", duration=1.0) for i in range(5)])
    cluster.run_until(lambda: bool(cluster.worker("sim://w0").running))
    cluster.kill("sim://w0")
    cluster.run_until_idle()
    assert {cluster.task_state(f"t-{i}") for i in range(5)} == {"queued"}
    cluster.add_worker()
    cluster.run_until_idle()
    assert all(client.result(f"t-{i}") == cluster.expected(f"t-{i}") for i in range(5))
    assert [m.key for m in cluster.messages(ComputeTask, receiver="sim://w1#0")][:2] == ["t-0", "t-1"]
