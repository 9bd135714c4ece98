"""The scheduler machine relays running calls to clients (``tasks-started`` ->
``keys-running``) and abandons running calls on a forced cancel."""

from __future__ import annotations

from taskmill.protocol.vocabulary import (
    AbandonTasks,
    CancelKeys,
    FreeKeys,
    KeyInMemory,
    KeysRunning,
    TasksStarted,
    WantKeys,
)
from tests.core.scheduler_helpers import Sched, erred, finished, leave, of, sid, submit, task

W1, W2 = "tcp://w1:1", "tcp://w2:1"


def started(worker: str, *keys: str) -> TasksStarted:
    return TasksStarted(sid(), worker, keys)


def test_started_calls_are_relayed_once_to_each_wanting_client_then_the_result() -> None:
    s = Sched(W1)
    s(submit([task("a-1"), task("b-1")], wanted=["a-1", "b-1"]))
    s(WantKeys(sid(), "c2", ("a-1",)))
    (where,) = set(s.processing().values())
    cmds = s(started(where, "a-1", "b-1"))
    assert of(cmds, KeysRunning) == [KeysRunning(cmds[0].stimulus_id, "c1", ("a-1", "b-1")),
                                     KeysRunning(cmds[0].stimulus_id, "c2", ("a-1",))]
    assert s.state.tasks["a-1"].running
    assert of(s(started(where, "a-1")), KeysRunning) == []  # told already
    cmds = s(finished(where, "a-1"))
    assert [type(c) for c in cmds if c.__class__.__name__.startswith("Key")] == [KeyInMemory, KeyInMemory]
    assert not s.state.tasks["a-1"].running


def test_a_report_from_another_worker_or_after_a_free_is_ignored() -> None:
    s = Sched(W1, W2)
    s(submit([task("a-1")], wanted=["a-1"]))
    where = s.processing()["a-1"]
    other = W2 if where == W1 else W1
    assert s(started(other, "a-1")) == []
    assert s(started(where, "gone-1")) == []
    assert not s.state.tasks["a-1"].running
    s(submit([task("x-1")], wanted=["x-1"]))
    s(CancelKeys(sid(), "c1", ("x-1",)))
    s(submit([task("x-1")], wanted=["x-1"]))  # again, after a free of it went to its worker
    stale = TasksStarted(sid(), s.processing()["x-1"], ("x-1",), seen=0)
    assert of(s.state.handle(stale), KeysRunning) == []  # sent before that worker saw the free


def test_a_running_call_sent_back_to_waiting_tells_the_clients_it_no_longer_runs() -> None:
    s = Sched(W1, W2)
    s(submit([task("a-1", retries=1)], wanted=["a-1"]))
    where = s.processing()["a-1"]
    s(started(where, "a-1"))
    cmds = s(erred(where, "a-1"))  # a retry: waiting, then sent again
    assert of(cmds, KeysRunning) == [KeysRunning(cmds[0].stimulus_id, "c1", ("a-1",), False)]
    again = s.processing()["a-1"]
    s(started(again, "a-1"))
    cmds = s(leave(again))  # its worker died: waiting for another one
    assert KeysRunning(cmds[0].stimulus_id, "c1", ("a-1",), False) in cmds


def test_a_client_that_starts_wanting_a_running_key_is_told_at_once() -> None:
    s = Sched(W1)
    s(submit([task("a-1")], wanted=["a-1"]))
    s(started(W1, "a-1"))
    cmds = s(WantKeys(sid(), "c2", ("a-1",)))
    assert of(cmds, KeysRunning) == [KeysRunning(cmds[0].stimulus_id, "c2", ("a-1",))]


def test_a_forced_cancel_abandons_the_running_calls_after_freeing_them() -> None:
    s = Sched((W1, 1))
    s(submit([task("a-1"), task("b-1", "a-1")], wanted=["b-1"]))
    assert s.processing() == {"a-1": W1}
    s(started(W1, "a-1"))
    cmds = s(CancelKeys(sid(), "c1", ("b-1", "a-1"), force=True))
    to_w1 = [c for c in cmds if isinstance(c, (FreeKeys, AbandonTasks))]
    assert [type(c) for c in to_w1] == [FreeKeys, AbandonTasks]
    assert "a-1" in to_w1[0].keys and to_w1[1] == AbandonTasks(cmds[0].stimulus_id, W1, ("a-1",))
    assert s.state.tasks == {}
    # without force the worker is only told to free it
    s(submit([task("c-1")], wanted=["c-1"]))
    assert of(s(CancelKeys(sid(), "c1", ("c-1",))), AbandonTasks) == []
