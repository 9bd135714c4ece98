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
    ReleaseKeys,
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
