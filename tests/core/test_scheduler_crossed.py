"""Scheduler state machine: worker messages that crossed the scheduler's own.

A worker's stream is FIFO each way, but the directions cross: a worker may
report a copy or a result while a ``FreeKeys`` of that key is on its way to
it.  Every message to a worker carries an ``epoch`` and every message from one
carries ``seen`` (the last ``epoch`` it handled); see "Crossed messages" in
``taskmill.core.scheduler.state``.  The tests of races deliver a message as it
was sent earlier (``seen`` given explicitly) and check what the scheduler
makes of it.
"""

from __future__ import annotations

from scheduler_helpers import Sched, erred, finished, leave, of, sid, submit, task

from taskmill.core.scheduler.events import ReplicateRequested
from taskmill.protocol.vocabulary import (
    AcquireReplicas,
    AddKeys,
    ComputeTask,
    FreeKeys,
    Heartbeat,
    KeyErred,
    KeyInMemory,
    MissingData,
    ReleaseKeys,
    ReleasedKeys,
)

A, B = "tcp://a", "tcp://b"


def compute_of(cmds: list, key: str) -> ComputeTask:
    (ct,) = [c for c in of(cmds, ComputeTask) if c.key == key]
    return ct


def copy_requested(s: Sched, key: str, target: str) -> int:
    """Request a copy of ``key`` on ``target``; the ``epoch`` of the request."""
    cmds = s(ReplicateRequested(sid(), (key,), None, (target,)))
    (acq,) = of(cmds, AcquireReplicas)
    assert acq.worker == target and key in acq.who_has
    return acq.epoch


# --------------------------------------------------------------------------- #
# the wire: epochs
# --------------------------------------------------------------------------- #
def test_every_message_to_a_worker_takes_the_next_epoch() -> None:
    s = Sched(A, B)
    cmds = s(submit([task("x-1"), task("y-1"), task("z-1", "x-1", "y-1")], wanted=["z-1"]))
    cmds += s(finished(A, "x-1"), finished(B, "y-1"))
    cmds += s(ReleaseKeys(sid(), "c1", ("z-1",)))
    epochs = [c.epoch for c in cmds if isinstance(c, (ComputeTask, FreeKeys, AcquireReplicas))]
    assert len(epochs) >= 5
    assert epochs == list(range(epochs[0], epochs[0] + len(epochs)))
    assert epochs[-1] == s.epoch


def test_a_free_and_a_compute_of_the_same_key_in_one_event_come_in_epoch_order() -> None:
    s = Sched(A)
    s(submit([task("x-1", retries=1)], wanted=["x-1"]))
    cmds = s(erred(A, "x-1"))  # retried: freed there, then sent again
    (free,) = of(cmds, FreeKeys)
    ct = compute_of(cmds, "x-1")
    assert free.keys == ("x-1",) and free.epoch < ct.epoch
    assert cmds.index(free) < cmds.index(ct)


def test_the_free_ledger_is_settled_by_any_message_and_by_heartbeats() -> None:
    s = Sched(A)
    s(submit([task("x-1")], wanted=["x-1"]))
    s(finished(A, "x-1"))
    (free,) = of(s(ReleaseKeys(sid(), "c1", ("x-1",))), FreeKeys)
    ws = s.state.workers[A]
    assert ws.unacked_frees == {"x-1": free.epoch}
    s(Heartbeat(sid(), A, 1.0, seen=free.epoch - 1))
    assert ws.unacked_frees == {"x-1": free.epoch}  # not handled yet
    s(Heartbeat(sid(), A, 2.0, seen=free.epoch))
    assert ws.unacked_frees == {} and not ws.free_log


# --------------------------------------------------------------------------- #
# add-keys-while-processing
# --------------------------------------------------------------------------- #
def test_a_late_add_keys_does_not_cancel_the_recomputation_on_its_worker() -> None:
    s = Sched(A, B)
    s(submit([task("x-1", workers=(A,), allow_other_workers=True)], wanted=["x-1"]))
    s(finished(A, "x-1"))
    asked = copy_requested(s, "x-1", B)
    # B got the copy and says so (seen=asked) while A dies: x-1 is lost,
    # freed on B (it was fetching it) and recomputed there
    cmds = s(leave(A))
    assert s.freed(cmds) == {B: {"x-1"}}
    ct = compute_of(cmds, "x-1")
    assert ct.worker == B
    cmds = s(AddKeys(sid(), B, {"x-1": 8}, seen=asked))
    assert cmds == []  # neither recorded nor freed: the recomputation goes on
    assert s.state.tasks["x-1"].processing_on is s.state.workers[B]
    cmds = s(finished(B, "x-1"))
    assert s.state.who_has(["x-1"]) == {"x-1": [B]}
    assert not of(cmds, FreeKeys)


def test_an_add_keys_from_the_worker_now_computing_that_key_is_left_to_the_compute() -> None:
    # B fetched x-1 as an input (no free of it went there: the scheduler did
    # not know), and x-1 is recomputed on B before B's add-keys arrives
    s = Sched(A, B)
    s(submit([task("x-1", workers=(A,), allow_other_workers=True),
              task("y-1", "x-1", workers=(B,))], wanted=["y-1"]))
    y = compute_of(s(finished(A, "x-1")), "y-1")
    assert y.worker == B
    cmds = s(leave(A))
    assert s.freed(cmds) == {B: {"y-1"}} and compute_of(cmds, "x-1").worker == B
    assert s(AddKeys(sid(), B, {"x-1": 8}, seen=y.epoch)) == []  # B answers the compute with it
    assert s.state.task_state("x-1") == "processing"
    cmds = s(finished(B, "x-1"))
    assert compute_of(cmds, "y-1").worker == B


# --------------------------------------------------------------------------- #
# stale-task-finished
# --------------------------------------------------------------------------- #
def test_an_earlier_runs_result_is_not_taken_for_a_new_assignments() -> None:
    s = Sched(A)
    first = compute_of(s(submit([task("x-1")], wanted=["x-1"])), "x-1")
    (free,) = of(s(ReleaseKeys(sid(), "c1", ("x-1",))), FreeKeys)  # x-1 forgotten
    assert s.state.task_state("x-1") is None
    second = compute_of(s(submit([task("x-1")], wanted=["x-1"])), "x-1")
    assert first.epoch < free.epoch < second.epoch
    # the first run's result, sent before A handled the free (which drops it)
    cmds = s(_finished_seen(A, "x-1", first.epoch))
    assert cmds == []  # no report, no second free: the free on its way decides
    assert s.state.task_state("x-1") == "processing"
    cmds = s(_finished_seen(A, "x-1", second.epoch))
    assert [r.key for r in of(cmds, KeyInMemory)] == ["x-1"]
    assert s.state.who_has(["x-1"]) == {"x-1": [A]}


def test_an_earlier_runs_failure_is_not_taken_for_a_new_assignments() -> None:
    s = Sched(A)
    first = compute_of(s(submit([task("x-1")], wanted=["x-1"])), "x-1")
    s(ReleaseKeys(sid(), "c1", ("x-1",)))
    second = compute_of(s(submit([task("x-1")], wanted=["x-1"])), "x-1")
    ev = erred(A, "x-1")
    assert s(type(ev)(ev.stimulus_id, ev.worker, ev.key, ev.exception, ev.traceback,
                      ev.exception_text, seen=first.epoch)) == []
    assert s.state.task_state("x-1") == "processing"
    ev = erred(A, "x-1")
    cmds = s(type(ev)(ev.stimulus_id, ev.worker, ev.key, ev.exception, ev.traceback,
                      ev.exception_text, seen=second.epoch))
    assert [r.key for r in of(cmds, KeyErred)] == ["x-1"]


def _finished_seen(addr: str, key: str, seen: int):  # type: ignore[no-untyped-def]
    ev = finished(addr, key)
    return type(ev)(ev.stimulus_id, ev.worker, ev.key, ev.nbytes, ev.type_name, ev.start,
                    ev.stop, seen=seen)


# --------------------------------------------------------------------------- #
# stale-add-keys
# --------------------------------------------------------------------------- #
def test_an_add_keys_that_crossed_a_free_of_the_key_is_not_recorded() -> None:
    s = Sched(A, B)
    s(submit([task("x-1", workers=(A,))], wanted=["x-1"]))
    s(finished(A, "x-1"))
    asked = copy_requested(s, "x-1", B)
    # B got the copy (its add-keys on the way) when the client lets x-1 go:
    # freed on A and on B; then x-1 is wanted again and computed on A
    (to_b,) = [f for f in of(s(ReleaseKeys(sid(), "c1", ("x-1",))), FreeKeys) if f.worker == B]
    s(submit([task("x-1", workers=(A,))], wanted=["x-1"]))
    s(finished(A, "x-1"))
    cmds = s(AddKeys(sid(), B, {"x-1": 8}, seen=asked))
    assert cmds == []  # not recorded, and B is not told twice
    assert s.state.who_has(["x-1"]) == {"x-1": [A]}
    # once B handled the free, its word counts again (it fetched x-1 anew)
    s(AddKeys(sid(), B, {"x-1": 8}, seen=to_b.epoch))
    assert s.state.who_has(["x-1"]) == {"x-1": [A, B]}


def test_a_decline_that_crossed_a_free_does_not_end_a_newer_copy_request() -> None:
    s = Sched(A, B)
    s(submit([task("x-1", workers=(A,))], wanted=["x-1"]))
    s(finished(A, "x-1"))
    first = copy_requested(s, "x-1", B)
    s(ReleaseKeys(sid(), "c1", ("x-1",)))  # frees the copy under way on B
    s(submit([task("x-1", workers=(A,))], wanted=["x-1"]))
    s(finished(A, "x-1"))
    copy_requested(s, "x-1", B)
    assert s(ReleasedKeys(sid(), B, ("x-1",), seen=first)) == []
    assert s.state.workers[B] in s.state.tasks["x-1"].acquiring_on  # still asked for


# --------------------------------------------------------------------------- #
# stale-missing-data
# --------------------------------------------------------------------------- #
def test_a_missing_data_older_than_the_copy_does_not_strike_it_off() -> None:
    s = Sched(A, B)
    s(submit([task("x-1", workers=(A,)), task("y-1", "x-1", workers=(B,))], wanted=["y-1"]))
    cmds = s(finished(A, "x-1"))
    y = compute_of(cmds, "y-1")  # B asks A for x-1 after handling this
    # A drops x-1 (say it had to), so it is recomputed on A, and y-1 sent again
    s(ReleasedKeys(sid(), A, ("x-1",)))
    assert s.state.task_state("x-1") == "processing"
    s(finished(A, "x-1"))
    assert s.processing() == {"y-1": B}
    # B's request, sent before, found A without x-1: that copy is not this one
    cmds = s(MissingData(sid(), B, A, ("x-1",), seen=y.epoch))
    assert cmds == []
    assert s.state.who_has(["x-1"]) == {"x-1": [A]}


def test_a_missing_data_younger_than_the_copy_strikes_it_off() -> None:
    s = Sched(A, B)
    s(submit([task("x-1", workers=(A,)), task("y-1", "x-1", workers=(B,))], wanted=["y-1"]))
    cmds = s(finished(A, "x-1"))
    y = compute_of(cmds, "y-1")
    recorded = s.state.workers[A].has_what[s.state.tasks["x-1"]]
    assert recorded < y.epoch  # the copy was known when B was sent to fetch it
    cmds = s(MissingData(sid(), B, A, ("x-1",), seen=y.epoch))
    assert s.state.task_state("x-1") == "processing"  # lost: recomputed
    assert s.freed(cmds) == {B: {"y-1"}}


def test_a_missing_data_as_old_as_the_copy_is_ignored() -> None:
    s = Sched(A, B)
    s(submit([task("x-1")], wanted=["x-1"]))
    s(finished(next(iter(s.processing().values())), "x-1"))
    (holder,) = s.state.who_has(["x-1"])["x-1"]
    other = B if holder == A else A
    recorded = s.state.workers[holder].has_what[s.state.tasks["x-1"]]
    assert s(MissingData(sid(), other, holder, ("x-1",), seen=recorded)) == []
    assert s.state.who_has(["x-1"]) == {"x-1": [holder]}
    s(MissingData(sid(), other, holder, ("x-1",), seen=recorded + 1))
    assert s.state.task_state("x-1") == "processing"
