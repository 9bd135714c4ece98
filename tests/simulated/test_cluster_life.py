"""The cluster over time, end to end on the simulated cluster: restart in the
middle of a computation, heartbeats, who_has after recomputation, and the
stories that explain what happened to a key."""

from __future__ import annotations

from taskmill.protocol.vocabulary import Heartbeat
from taskmill.testing import SimCluster, SimTask


def states(cluster: SimCluster, key: str) -> list[tuple[str, str]]:
    return [(e[1], e[2]) for e in cluster.state.story(key) if e[1] != e[2]]


def chain() -> list[SimTask]:
    return [SimTask("a-1"), SimTask("b-1", ("a-1",), duration=1.0), SimTask("c-1", ("b-1",))]


def test_restart_mid_computation_cancels_every_clients_keys_and_the_same_keys_run_again() -> None:
    cluster = SimCluster(2, seed=1)
    first, second = cluster.client(), cluster.client()
    first.submit(*chain(), wanted=["c-1"])
    second.submit(*chain(), wanted=["b-1", "c-1"])
    cluster.deliver(first.id)  # both submissions in first
    cluster.deliver(second.id)
    cluster.run_until(lambda: cluster.task_state("b-1") == "processing")
    cluster.restart()
    cluster.run_until_idle()
    assert first.outcome("c-1") == second.outcome("b-1") == second.outcome("c-1") == "cancelled"
    assert cluster.state.tasks == {} and all(not w.store for w in cluster.workers.values())
    first.submit(*chain(), wanted=["c-1"])
    cluster.run_until_idle()
    assert [type(m).__name__ for m in first.reports_for("c-1")] == ["KeyCancelled", "KeyInMemory"]
    assert first.result("c-1") == cluster.expected("c-1")


def test_a_heartbeat_brings_the_workers_figures_and_time_to_the_scheduler() -> None:
    cluster = SimCluster(2, seed=2, trace=True)
    client = cluster.client()
    client.submit(SimTask("done-1"))
    cluster.run_until_idle()
    client.submit(SimTask("long-1", duration=5.0, workers=("sim://w1",)))
    cluster.run_until(lambda: "long-1" in cluster.worker("sim://w1").running)
    cluster.clock.advance(30.0)
    cluster.pause("sim://w1")
    cluster.heartbeat("sim://w1")
    while not cluster.messages(Heartbeat):  # the pause, then the heartbeat (one stream: in order)
        cluster.deliver("sim://w1#0")
    (beat,) = cluster.messages(Heartbeat)
    held = len(cluster.worker("sim://w1").store)
    assert (beat.worker, beat.executing, beat.in_memory, beat.paused) == ("sim://w1", 1, held, True)
    info = cluster.state.workers_info()
    assert info["sim://w1"]["last_seen"] == cluster.clock.now >= 30.0
    assert info["sim://w0"]["last_seen"] < 30.0  # it sent none
    cluster.pause("sim://w1", False)
    cluster.run_until_idle()


def test_who_has_after_a_recomputation_names_only_workers_that_hold_the_value() -> None:
    cluster = SimCluster(3, seed=3)
    client = cluster.client()
    client.submit(SimTask("a-1", nbytes=10**6), SimTask("b-1", ("a-1",), nbytes=10**6), wanted=["b-1"])
    cluster.run_until_idle()
    (holder,) = cluster.who_has("b-1")
    cluster.kill(holder)
    cluster.run_until_idle()
    holders = cluster.who_has("b-1")
    assert holders and holder not in holders
    assert all(cluster.worker(a).store["b-1"] == cluster.expected("b-1") for a in holders)
    assert cluster.state.has_what() == {a: ["b-1"] if a in holders else [] for a in cluster.addresses}


def test_the_story_of_a_key_shows_its_worker_dying_and_the_rerun() -> None:
    cluster = SimCluster(2, seed=4)
    client = cluster.client()
    client.submit(SimTask("t-1", duration=2.0, nbytes=10**6))
    cluster.run_until(lambda: cluster.task_state("t-1") == "processing")
    runner = cluster.state.tasks["t-1"].processing_on
    assert runner is not None
    cluster.kill(runner.address)
    cluster.run_until_idle()
    story = cluster.state.story("t-1")
    assert states(cluster, "t-1") == [("forgotten", "released"), ("released", "waiting"),
                                     ("waiting", "processing"),
                                     ("processing", "released"), ("released", "waiting"), ("waiting", "processing"),
                                     ("processing", "memory")]
    assert all(e[3].startswith("worker-left") for e in story[3:6])  # one event: the death


def test_the_story_of_a_cancelled_key_ends_forgotten_by_the_cancel() -> None:
    cluster = SimCluster(1, seed=5)
    client = cluster.client()
    client.submit(SimTask("t-1", duration=2.0))
    cluster.run_until(lambda: cluster.task_state("t-1") == "processing")
    client.cancel("t-1")
    cluster.run_until_idle()
    story = cluster.state.story("t-1")
    assert story[-1][2] == "forgotten" and story[-1][3].startswith("cancel-keys")


def test_the_story_of_a_retried_task_notes_each_retry() -> None:
    cluster = SimCluster(2, seed=6)
    client = cluster.client()
    client.submit(SimTask("flaky-1", fail=2, retries=2))
    cluster.run_until_idle()
    notes = [e[4] for e in cluster.state.story("flaky-1") if e[4].startswith("retry")]
    assert notes == ["retry (1 left)", "retry (0 left)"]
    assert client.outcome("flaky-1") == "memory"


def test_a_rejoined_worker_starts_empty_and_its_old_keys_are_recomputed_on_it() -> None:
    cluster = SimCluster(1, seed=7)
    client = cluster.client()
    client.submit(*[SimTask(f"r-{i}") for i in range(3)])
    cluster.run_until_idle()
    new = cluster.kill("sim://w0", rejoin=True)
    assert new is not None and new.store == {}
    cluster.run_until_idle()
    assert all(cluster.who_has(f"r-{i}") == ["sim://w0"] for i in range(3))
    assert sorted(new.store) == ["r-0", "r-1", "r-2"] and cluster.book.runs == {"r-0": 2, "r-1": 2, "r-2": 2}
