"""Work stealing in the pure scheduler machine: the cost model, the
steal-request/steal-response handshake and its crossed messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scheduler_helpers import Sched, finished, join, leave, of, sid, submit, task
from taskmill.core.scheduler.events import StealTick
from taskmill.core.scheduler.stealing import MAX_MOVES
from taskmill.core.stimulus_log import replay
from taskmill.protocol.vocabulary import (
    ComputeTask,
    FreeKeys,
    Heartbeat,
    ReleaseKeys,
    StealRequest,
    StealResponse,
    TasksStarted,
)


def tick(horizon: float = 1.0) -> StealTick:
    return StealTick(sid(), horizon)


def answer(req: StealRequest, stolen: bool = True, seen: int | None = None) -> StealResponse:
    return StealResponse(sid(), req.worker, req.key, stolen, seen=req.epoch if seen is None else seen)


def imbalanced(n: int = 10, nbytes: int = 8, **kw: Any) -> Sched:
    """Workers a and b (one thread each); ``x`` (``nbytes``) lives on a only and
    ``n`` tasks ``y-i`` that take it were submitted: all but the two b took
    before it filled up went to a (the holder of their input).  b's two are done,
    so b is idle while a holds eight tasks of 1 s each (learnt from b's)."""
    s = Sched("a", "b")
    s(submit([task("x", workers=("a",))], wanted=["x"]))
    s(finished("a", "x", nbytes=nbytes))
    s(submit([task(f"y-{i}", "x", **kw) for i in range(n)], wanted=[f"y-{i}" for i in range(n)]))
    for key, worker in list(s.processing().items()):
        if worker == "b":
            s(finished("b", key, duration=1.0))
    return s


def on(s: Sched, worker: str) -> list[str]:
    return sorted(k for k, w in s.processing().items() if w == worker)


def test_an_idle_worker_steals_queued_tasks_and_gets_them_on_confirmation() -> None:
    s = imbalanced()
    assert len(on(s, "a")) == 8 and on(s, "b") == []
    reqs = of(s(tick(horizon=2.0)), StealRequest)
    # b wants two seconds of work; a gives from the end of its queue
    assert [(r.worker, r.key) for r in reqs] == [("a", "y-9"), ("a", "y-8")]
    assert len(on(s, "a")) == 8  # nothing moves before the victim confirms
    cmds = s(answer(reqs[0]))
    assert s.computes(cmds) == {"y-9": "b"}
    assert of(cmds, FreeKeys)[0].worker == "a" and of(cmds, FreeKeys)[0].keys == ("y-9",)
    assert s.processing()["y-9"] == "b"
    assert any("stolen from a for b" in e[4] for e in s.state.story("y-9"))
    s.run_all()
    assert all(r.key.startswith(("x", "y")) for r in s.reports())


def test_a_thief_with_idle_threads_takes_long_tasks_past_its_horizon() -> None:
    s = Sched("a", ("b", 3))
    s(submit([task("x", workers=("a",))], wanted=["x"]))
    s(finished("a", "x"))
    keys = [f"y-{i}" for i in range(12)]
    s(submit([task(k, "x") for k in keys], wanted=keys))
    for key, worker in list(s.processing().items()):
        if worker == "b":
            s(finished("b", key, duration=10.0))  # y takes 10 s
    assert on(s, "b") == []
    reqs = of(s(tick(horizon=0.2)), StealRequest)
    assert len(reqs) == 3  # one per idle thread, though one alone is past the horizon
    assert {r.worker for r in reqs} == {"a"}


def _queued_behind_a_running_call(kind_seconds: float | None) -> Sched:
    """b is full when g-0 and g-1 come, so both go to a (one thread): g-0
    runs, g-1 waits behind it within a's slots; then b's calls end and b
    idles.  ``kind_seconds``: how long a ``g`` took before (None: never seen)."""
    s = Sched("a", "b")
    if kind_seconds is not None:
        s(submit([task("g-old")], wanted=["g-old"]))
        s(finished(s.processing()["g-old"], "g-old", duration=kind_seconds))
    s(submit([task(f"busy-{i}", workers=("b",)) for i in range(2)], wanted=["busy-0", "busy-1"]))
    s(submit([task("g-0"), task("g-1")], wanted=["g-0", "g-1"]))
    assert on(s, "a") == ["g-0", "g-1"]
    s(TasksStarted(sid(), "a", ("g-0",)))
    for key in ("busy-0", "busy-1"):
        s(finished("b", key))
    return s


def test_a_call_queued_behind_a_running_one_goes_to_an_idle_thread() -> None:
    # g's duration is unknown: g-0 may run for minutes while b idles
    s = _queued_behind_a_running_call(None)
    reqs = of(s(tick(horizon=1.0)), StealRequest)
    assert [(r.worker, r.key) for r in reqs] == [("a", "g-1")]
    assert s.computes(s(answer(reqs[0]))) == {"g-1": "b"}


def test_a_tiny_call_queued_behind_a_running_one_stays() -> None:
    # moving a 1 ms call costs more than the wait it saves
    s = _queued_behind_a_running_call(0.001)
    assert of(s(tick(horizon=1.0)), StealRequest) == []


def test_a_refused_steal_keeps_the_task_where_it_runs_and_is_not_asked_again() -> None:
    s = imbalanced()
    req = of(s(tick(horizon=1.0)), StealRequest)[0]
    assert s(answer(req, stolen=False)) == []
    assert s.processing()[req.key] == "a"
    again = of(s(tick(horizon=1.0)), StealRequest)
    assert again and req.key not in [r.key for r in again]


def test_tasks_reported_running_are_never_asked_for() -> None:
    s = imbalanced()
    queued = on(s, "a")
    s(TasksStarted(sid(), "a", tuple(queued)))
    assert of(s(tick(horizon=10.0)), StealRequest) == []


def test_a_task_that_finished_on_the_victim_meanwhile_ignores_the_answer() -> None:
    s = imbalanced()
    req = of(s(tick(horizon=1.0)), StealRequest)[0]
    s(finished("a", req.key))  # before its answer on the same stream
    assert s(answer(req, stolen=False)) == []
    assert s.state.task_state(req.key) == "memory"
    assert any("where it no longer processes" in e[4] for e in s.state.story(req.key))


def test_an_answer_that_crossed_a_free_of_the_task_is_ignored() -> None:
    s = imbalanced()
    req = of(s(tick(horizon=1.0)), StealRequest)[0]
    s(ReleaseKeys(sid(), "c1", (req.key,)))  # cancelled: FreeKeys to a after the request
    assert s.state.task_state(req.key) is None
    # a answers the request before it handles the free
    cmds = s.state.handle(answer(req, stolen=True))
    assert of(cmds, ComputeTask) == []


def test_a_second_answer_to_one_request_changes_nothing() -> None:
    s = imbalanced()
    req = of(s(tick(horizon=1.0)), StealRequest)[0]
    assert s.computes(s(answer(req))) == {req.key: "b"}
    assert s(answer(req)) == []
    assert s.processing()[req.key] == "b"


def test_a_victim_that_dies_takes_its_requests_with_it() -> None:
    s = imbalanced()
    reqs = of(s(tick(horizon=2.0)), StealRequest)
    assert reqs
    cmds = s(leave("a"))
    # its tasks were rescheduled (x is recomputed on b, its only worker)
    assert "x" in s.computes(cmds).keys() or s.state.task_state("x") != "memory"
    assert s(answer(reqs[0])) == []  # from a worker no longer known
    s(tick())
    assert s.state.stealing.in_flight == {}


def test_a_thief_that_died_leaves_the_task_to_placement() -> None:
    s = imbalanced()
    req = of(s(tick(horizon=1.0)), StealRequest)[0]
    s(leave("b"))
    cmds = s(answer(req))
    assert s.state.task_state(req.key) == "processing"
    assert s.processing()[req.key] == "a"  # the one worker left, anew
    assert s.computes(cmds) == {req.key: "a"}


def test_an_answer_to_an_older_request_is_ignored() -> None:
    s = imbalanced()
    req = of(s(tick(horizon=1.0)), StealRequest)[0]
    assert s(answer(req, seen=req.epoch - 1)) == []
    assert s.processing()[req.key] == "a"


def test_inputs_that_cost_more_to_move_than_the_wait_saved_stay() -> None:
    # 8 tasks of 1 s behind one thread: the last waits 7 s on a; its 2 GB input
    # takes 20 s to move at 100 MB/s
    s = imbalanced(nbytes=2_000_000_000)
    assert of(s(tick(horizon=10.0)), StealRequest) == []
    # the same input is worth moving on a faster network, learnt from transfers
    s(Heartbeat(sid(), "b", 0.0, transfers=tuple(("a", 0.0, 0.1, 1_000_000_000, 1)
                                                 for _ in range(60))))
    assert s.state.stealing.bandwidth > 5e9
    assert of(s(tick(horizon=10.0)), StealRequest) != []


def test_tasks_strictly_restricted_to_their_worker_stay() -> None:
    s = Sched("a", "b")
    s(submit([task(f"z-{i}", workers=("a",)) for i in range(4)], wanted=[f"z-{i}" for i in range(4)]))
    assert len(on(s, "a")) == 2 and on(s, "b") == []  # one queued behind a's thread
    assert of(s(tick(horizon=10.0)), StealRequest) == []


def test_tasks_needing_resources_the_thief_lacks_stay() -> None:
    s = Sched()
    s(join("a", 1, resources={"GPU": 4}), join("b", 1))
    s(submit([task(f"g-{i}", resources={"GPU": 1}) for i in range(6)],
             wanted=[f"g-{i}" for i in range(6)]))
    assert of(s(tick(horizon=10.0)), StealRequest) == []


def test_balanced_workers_steal_nothing() -> None:
    s = Sched("a", "b")
    s(submit([task(f"z-{i}") for i in range(4)], wanted=[f"z-{i}" for i in range(4)]))
    assert of(s(tick(horizon=10.0)), StealRequest) == []


def test_a_task_moves_a_bounded_number_of_times() -> None:
    s = imbalanced()
    for ts in s.state.tasks.values():
        if ts.state == "processing":
            s.state.stealing.moves[ts] = MAX_MOVES
    assert of(s(tick(horizon=10.0)), StealRequest) == []


def test_moving_back_is_never_worth_it_on_the_same_figures() -> None:
    s = imbalanced()
    for req in of(s(tick(horizon=100.0)), StealRequest):
        s(answer(req))
    assert (len(on(s, "a")), len(on(s, "b"))) == (4, 4)
    assert of(s(tick(horizon=100.0)), StealRequest) == []


@pytest.fixture
def stimulus_dir(tmp_path: Path, set_options: Any) -> Path:
    set_options({"debug.stimulus-dir": str(tmp_path)})
    return tmp_path


def test_the_stimulus_log_of_a_steal_replays(stimulus_dir: Path) -> None:
    s = imbalanced()
    reqs = of(s(tick(horizon=2.0)), StealRequest)
    s(answer(reqs[0]), answer(reqs[1], stolen=False))
    seen: list[object] = []
    fresh = replay(s.state.stimulus_log.dump(), on_event=lambda i, events, cmds: seen.append(cmds))
    assert seen[-1] == s.log[-len(seen[-1]):]
    assert {k: (t.state, t.processing_on and t.processing_on.address)
            for k, t in fresh.tasks.items()} == {
        k: (t.state, t.processing_on and t.processing_on.address) for k, t in s.state.tasks.items()}
