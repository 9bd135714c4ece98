"""A worker the scheduler removed for silence (past ``scheduler.worker-ttl``)
comes back to the *same* scheduler announcing what it still holds: one record
for it, and no key listed in memory where it is not (the pure machine's side
of docs/failures.md, "A worker goes silent")."""

from __future__ import annotations

from taskmill.core.scheduler.events import ClientConnected
from taskmill.protocol.vocabulary import RegisterWorker
from tests.core.scheduler_helpers import Sched, finished, leave, sid, submit, task

A = "tcp://a"
B = "tcp://b"
SILENT = "it was silent for 15.3s (option scheduler.worker-ttl: 15s)"


def back(addr: str, held: dict[str, int]) -> RegisterWorker:
    return RegisterWorker(stimulus_id=sid(), worker=addr, nthreads=1, memory_limit=2**30,
                          held=held)


def test_a_worker_back_after_its_removal_has_one_record_and_only_real_keys() -> None:
    s = Sched(A, B)
    s(ClientConnected(sid(), "c1"))
    s(submit([task("x"), task("y", "x")], wanted=["x", "y"]))
    a = s.processing()["x"]  # it computes x, then goes silent
    b = B if a == A else A
    s(finished(a, "x"))
    s(leave(a, SILENT))
    assert list(s.state.workers) == [b]
    s.run_all()  # x computed again on b, then y
    assert s.state.who_has(["x", "y"]) == {"x": [b], "y": [b]}
    # a comes back, holding x and a key this scheduler never knew
    s(back(a, {"x": 8, "stray": 8}))
    assert sorted(s.state.workers) == [A, B]  # one record each
    assert sorted(s.state.who_has(["x"])["x"]) == [A, B]  # x: one more holder
    assert s.state.has_what()[a] == ["x"]  # never a key it does not hold
    assert "stray" not in s.state.tasks  # kept aside until a client claims it, else freed
