"""``SchedulerState.validate`` catches a corrupted record: each test breaks
one invariant on purpose and checks the error names the key (or worker) and
what is wrong."""

from __future__ import annotations

import pytest
from scheduler_helpers import Sched, finished, submit, task

from taskmill.core.scheduler.records import Frozen
from taskmill.core.scheduler.step import CHECK, Step
from taskmill.core.scheduler.validate import validate_step


def broken(s: Sched, match: str) -> None:
    with pytest.raises(AssertionError, match=match):
        s.state.validate()


def chain_waiting() -> Sched:
    """x-1 processing on tcp://a, y-1 waiting for it."""
    s = Sched("tcp://a")
    s(submit([task("x-1"), task("y-1", "x-1")], wanted=["y-1"]))
    return s


def test_a_dependent_missing_from_its_inputs_waiters_is_caught() -> None:
    s = Sched("tcp://a")
    s(submit([task("x-1"), task("y-1", "x-1")], wanted=["x-1", "y-1"]))  # x-1 needed either way
    s.state.tasks["x-1"].waiters.clear()
    broken(s, r"task 'y-1' \(waiting\): waiters of 'x-1' disagree with state")


def test_a_processing_task_its_worker_does_not_list_is_caught() -> None:
    s = chain_waiting()
    del s.state.workers["tcp://a"].processing[s.state.tasks["x-1"]]
    broken(s, r"task 'x-1' \(processing\): processing on no live worker")


def test_worker_bytes_that_disagree_with_what_it_holds_are_caught() -> None:
    s = chain_waiting()
    s(finished("tcp://a", "x-1", nbytes=100))
    s.state.workers["tcp://a"].nbytes = 7
    broken(s, "worker tcp://a: nbytes=7 but holds 100")


def test_a_one_sided_client_want_is_caught() -> None:
    s = chain_waiting()
    s.state.clients["c1"].wants.clear()
    broken(s, r"task 'y-1' \(waiting\): wanted by c1 which does not want it")


def test_a_queued_task_in_no_queue_is_caught() -> None:
    s = Sched("tcp://a")
    s(submit([task(f"t-{i}") for i in range(3)], wanted=[f"t-{i}" for i in range(3)]))
    assert s.state.task_state("t-2") == "queued"
    s.state.placement.queue.clear()
    broken(s, r"task 't-2' \(queued\): queued but in no queue")


def test_released_lineage_without_dependents_is_caught() -> None:
    s = chain_waiting()
    s(finished("tcp://a", "x-1"), finished("tcp://a", "y-1"))
    assert s.state.task_state("x-1") == "released"
    s.state.tasks["x-1"].dependents = {}
    s.state.tasks["y-1"].dependencies.clear()
    broken(s, r"task 'x-1' \(released\): released without dependents \(should be forgotten\)")


def test_an_event_that_leaves_recommendations_undone_is_caught() -> None:
    s = chain_waiting()
    step = Step("stim-undone", s.state.transition_log, [])
    step.recs.append((s.state.tasks["x-1"], CHECK, None))
    with pytest.raises(AssertionError, match="event 'stim-undone' left work undone: recs=1"):
        validate_step(step)


def test_a_shared_dependents_map_holding_another_task_is_caught() -> None:
    s = chain_waiting()
    y1 = s.state.tasks["y-1"]
    assert y1.alone is not None  # x-1 shares it
    y1.alone = Frozen({s.state.tasks["x-1"]: None})
    broken(s, r"task 'y-1' \(waiting\): its shared one-entry dependents map \(alone\) holds something else")
