"""Running calls on the simulated cluster: a client learns that a call runs
(and that it no longer does), and a forced cancel frees the worker's thread.

The simulated network makes pending work happen in a seeded random order,
not in time order, so a run may end before the tick that would report it:
the tests fire the tick themselves where they need the report."""

from __future__ import annotations

from taskmill.protocol.vocabulary import TaskFinished
from taskmill.testing import SimCluster, SimTask


def fire_start_report(cluster: SimCluster, address: str) -> None:
    """Two start-report ticks of the worker at ``address`` go off now: the
    calls running since before the first are reported at the second."""
    worker = cluster.workers[address]
    for _ in range(2):
        (tick,) = [w for w in cluster.net.work
                   if w.owner is worker and w.label.startswith("start report")]
        cluster.net.fire(tick)


def told_running(client: object, key: str) -> list[bool]:
    return [m.running for m in client.running_reports if key in m.keys]  # type: ignore[attr-defined]


def test_a_long_call_is_reported_running_once_then_finished() -> None:
    for seed in range(10):
        cluster = SimCluster(1, seed=seed)
        client = cluster.client()
        client.submit(SimTask("long-1", duration=1.0), SimTask("short-1", duration=0.0001))
        cluster.run_until(lambda: "long-1" in cluster.worker("sim://w0").running)
        fire_start_report(cluster, "sim://w0")
        cluster.run_until_idle()  # also checks that clients believe exactly what runs
        assert told_running(client, "long-1") == [True]
        assert client.outcome("long-1") == "memory" and "long-1" not in client.running
        assert told_running(client, "short-1") in ([], [True])  # only if it ran at the tick


def test_a_call_whose_worker_dies_is_reported_waiting_again_then_runs_elsewhere() -> None:
    exercised = 0
    for seed in range(10):
        cluster = SimCluster(2, seed=seed)
        client = cluster.client()
        client.submit(SimTask("long-1", duration=1.0))
        cluster.run_until(lambda: any("long-1" in w.running for w in cluster.workers.values()))
        (where,) = [a for a, w in cluster.workers.items() if "long-1" in w.running]
        fire_start_report(cluster, where)
        cluster.run_until(lambda: client.running.get("long-1", False) or client.outcome("long-1") is not None)
        if client.running.get("long-1"):  # told before the run ended
            cluster.kill(where)
        cluster.run_until_idle()
        told = told_running(client, "long-1")
        if told[:2] == [True, False]:  # it died before the scheduler heard of the result
            exercised += 1
            assert told in ([True, False], [True, False, True])  # maybe told it runs again
        assert client.result("long-1") == cluster.expected("long-1")
    assert exercised >= 3


def test_a_forced_cancel_frees_the_thread_for_the_next_task() -> None:
    for seed in range(10):
        cluster = SimCluster([(1, None)], seed=seed, trace=True)
        client = cluster.client()
        worker = cluster.worker("sim://w0")
        client.submit(SimTask("stuck-1", duration=1000.0))
        cluster.run_until(lambda: "stuck-1" in worker.running)
        client.submit(SimTask("next-1", duration=0.01))
        client.cancel("stuck-1", force=True)
        # the cancel reaches the worker before the stuck call ends (its end is pending work)
        cluster.deliver(client.id)
        if any(ch.name == f"{client.id}->scheduler" and ch.queue for ch in cluster.net.channels):
            cluster.deliver(client.id)  # unless both batches went together
        while any(ch.name == f"scheduler->{worker.name}" and ch.queue for ch in cluster.net.channels):
            cluster.deliver("scheduler", worker.name)
        assert "stuck-1" not in worker.running  # abandoned: its thread is free
        cluster.run_until(lambda: client.outcome("next-1") == "memory")
        (done,) = [m for m in cluster.messages(TaskFinished) if m.key == "next-1"]
        assert done.start < 1000.0  # it ran while the abandoned call went on
        assert client.outcome("stuck-1") == "cancelled"
        cluster.run_until_idle()
