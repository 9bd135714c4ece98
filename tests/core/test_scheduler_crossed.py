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

from scheduler_helpers import Sched, erred, finished, of, sid, submit, task

from taskmill.protocol.vocabulary import (
    AcquireReplicas,
    ComputeTask,
    FreeKeys,
    ReleaseKeys,
)

A, B = "tcp://a", "tcp://b"


def compute_of(cmds: list, key: str) -> ComputeTask:
    (ct,) = [c for c in of(cmds, ComputeTask) if c.key == key]
    return ct


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
