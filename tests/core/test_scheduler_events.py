"""The pure scheduler machine, one event at a time: corner cases of the
events it takes, as events in and commands out."""

from __future__ import annotations

from scheduler_helpers import Sched, erred, finished, join, of, sid, submit, task

from taskmill.core.scheduler.events import ReplicateRequested, RetireRequested
from taskmill.protocol.vocabulary import (
    AddKeys,
    CancelKeys,
    ComputeTask,
    FireAndForget,
    FreeKeys,
    KeyErred,
    KeyInMemory,
    KeyLost,
    MissingData,
    Paused,
    ReleaseKeys,
    ScatterDone,
    UpdateGraph,
)


def notes(s: Sched, key: str) -> list[str]:
    return [e[4] for e in s.state.story(key)]


def kinds(cmds: list, worker: str) -> list[str]:
    """The kinds of command sent to ``worker``, in order."""
    return [type(c).__name__ for c in cmds if getattr(c, "worker", None) == worker]


def test_a_retry_frees_the_failed_run_before_sending_the_task_again() -> None:
    s = Sched("tcp://a")
    s(submit([task("x-1", retries=1)], wanted=["x-1"]))
    cmds = s(erred("tcp://a", "x-1"))
    assert kinds(cmds, "tcp://a") == ["FreeKeys", "ComputeTask"]
    assert "retry (0 left)" in notes(s, "x-1")
    assert of(cmds, ComputeTask)[0].func is None  # the worker has the function already


def test_a_task_depending_on_itself_errs_as_a_missing_dependency() -> None:
    s = Sched("tcp://a")
    cmds = s(submit([task("x-1", "x-1")], wanted=["x-1"]))
    (report,) = of(cmds, KeyErred)
    assert report.error_type == "MissingDependencyError" and "'x-1'" in report.exception_text
    assert not of(cmds, ComputeTask)


def test_a_key_listed_twice_in_one_submission_is_one_task() -> None:
    s = Sched("tcp://a")
    cmds = s(submit([task("x-1"), task("x-1")], wanted=["x-1", "x-1"]))
    assert s.computes(cmds) == {"x-1": "tcp://a"}
    assert [r.key for r in of(s(finished("tcp://a", "x-1")), KeyInMemory)] == ["x-1"]


def test_a_submission_without_functions_still_runs_known_ones() -> None:
    s = Sched("tcp://a")
    s(submit([task("inc-1")], wanted=["inc-1"]))
    cmds = s(UpdateGraph(sid(), "c1", (task("inc-2"),), ("inc-2",), None))
    (ct,) = of(cmds, ComputeTask)
    assert ct.key == "inc-2" and ct.func is None  # sent with inc-1 already


def test_fire_and_forget_of_an_unknown_key_tells_nobody() -> None:
    s = Sched("tcp://a")
    assert s(FireAndForget(sid(), "c1", ("nope-1",))) == []
    assert notes(s, "nope-1") == ["ignored: client fire-and-forget wants an unknown key"]


def test_fire_and_forget_of_a_finished_key_is_done_at_once_and_the_client_keeps_it() -> None:
    s = Sched("tcp://a")
    s(submit([task("y-1")], wanted=["y-1"]))
    s(finished("tcp://a", "y-1"))
    assert s(FireAndForget(sid(), "c1", ("y-1",))) == []  # nobody is told
    assert list(s.state.tasks["y-1"].who_wants) == ["c1"]  # the fire-and-forget want is over
    cmds = s(ReleaseKeys(sid(), "c1", ("y-1",)))
    assert s.freed(cmds) == {"tcp://a": {"y-1"}} and s.state.tasks == {}


def test_cancelling_an_unknown_key_is_noted_and_changes_nothing() -> None:
    s = Sched("tcp://a")
    s(submit([task("x-1")], wanted=["x-1"]))
    assert s(CancelKeys(sid(), "c1", ("ghost-1",))) == []
    assert notes(s, "ghost-1") == ["ignored: client c1 cancelled an unknown key"]
    assert s.state.task_state("x-1") == "processing"


def test_a_duplicate_task_finished_from_a_replica_holder_is_not_freed() -> None:
    s = Sched("tcp://a", "tcp://b")
    s(submit([task("x-1", workers=("tcp://a",))], wanted=["x-1"]))
    s(finished("tcp://a", "x-1"))
    s(AddKeys(sid(), "tcp://b", {"x-1": 8}))
    assert s(finished("tcp://b", "x-1")) == []  # b holds it: no free, nothing changes
    assert sorted(s.state.who_has(["x-1"])["x-1"]) == ["tcp://a", "tcp://b"]
    assert "ignored: duplicate TaskFinished from tcp://b" in notes(s, "x-1")


def test_a_stale_error_from_a_holder_of_the_key_is_ignored_without_a_free() -> None:
    s = Sched("tcp://a")
    s(submit([task("x-1")], wanted=["x-1"]))
    s(finished("tcp://a", "x-1"))
    assert s(erred("tcp://a", "x-1")) == []
    assert s.state.task_state("x-1") == "memory"


def test_missing_data_naming_a_worker_that_never_held_the_key_is_ignored() -> None:
    s = Sched("tcp://a", "tcp://b", "tcp://c")
    s(submit([task("x-1", workers=("tcp://a",))], wanted=["x-1"]))
    s(finished("tcp://a", "x-1"))
    assert s(MissingData(sid(), "tcp://c", "tcp://b", ("x-1",))) == []
    assert s.state.who_has(["x-1"]) == {"x-1": ["tcp://a"]}
    assert "ignored: tcp://c misses it on non-holder tcp://b" in notes(s, "x-1")


def test_a_copy_reported_of_scattered_data_of_unknown_size_sets_its_size() -> None:
    s = Sched("tcp://a", "tcp://b")
    s(ScatterDone(sid(), "c1", {"d-1": ("tcp://a",)}, {}))
    assert s.state.tasks["d-1"].nbytes == -1
    s(AddKeys(sid(), "tcp://b", {"d-1": 500}))
    assert s.state.tasks["d-1"].nbytes == 500
    assert s.state.workers_info()["tcp://b"]["nbytes"] == 500


def test_scattering_a_key_that_erred_replaces_the_error_with_the_data() -> None:
    s = Sched("tcp://a")
    s(submit([task("x-1")], wanted=["x-1"]))
    s(erred("tcp://a", "x-1"))
    cmds = s(ScatterDone(sid(), "c1", {"x-1": ("tcp://a",)}, {"x-1": 8}))
    assert [(r.key, r.who_has) for r in of(cmds, KeyInMemory)] == [("x-1", ("tcp://a",))]
    assert s.state.task_state("x-1") == "memory" and s.state.tasks["x-1"].func_token is None


def test_a_worker_registering_again_at_its_address_loses_its_tasks_data_and_functions() -> None:
    s = Sched("tcp://a")
    s(submit([task("inc-1"), task("inc-2")], wanted=["inc-1", "inc-2"]))
    s(finished("tcp://a", "inc-1"))
    cmds = s(join("tcp://a"))
    sent = {c.key: c.func for c in of(cmds, ComputeTask)}
    assert sorted(sent) == ["inc-1", "inc-2"]  # inc-1's data went with the old process
    assert list(sent.values()).count("<func inc>") == 1  # the new process gets the function once
    assert s.state.tasks["inc-2"].suspicious == 1 and s.state.task_state("inc-1") == "processing"
    assert not of(cmds, FreeKeys)  # nothing goes to the old process


def test_retiring_or_replicating_with_no_worker_to_use_is_noted_and_does_nothing() -> None:
    s = Sched("tcp://a")
    s(ScatterDone(sid(), "c1", {"d-1": ("tcp://a",)}, {"d-1": 8}))
    s(Paused(sid(), "tcp://a", True))
    assert s(RetireRequested(sid(), ("tcp://nobody",))) == []
    assert s(ReplicateRequested(sid(), ("d-1",), None, None)) == []
    log = [e[4] for e in s.state.transition_log]
    assert "ignored: retire unknown worker tcp://nobody" in log
    assert "ignored: replicate with no open worker to copy to" in log


def test_a_wanted_key_absent_from_a_submission_and_unknown_is_lost_while_the_rest_runs() -> None:
    s = Sched("tcp://a")
    cmds = s(submit([task("x-1")], wanted=["x-1", "ghost-1"]))
    assert [r.key for r in of(cmds, KeyLost)] == ["ghost-1"]
    assert s.computes(cmds) == {"x-1": "tcp://a"}
