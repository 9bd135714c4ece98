"""``WorkerState.validate`` catches a corrupted record: each test breaks one
invariant on purpose and checks the error names the key, its state and what
is wrong."""

from __future__ import annotations

import pytest

from taskmill.core.worker.state import InvalidWorkerState, WorkerState
from taskmill.protocol.vocabulary import FreeKeys
from tests.core.test_worker_state import ME, A, compute, ok, ws


def broken(w: WorkerState, match: str) -> None:
    with pytest.raises(InvalidWorkerState, match=match):
        w.validate()


def test_a_sound_machine_validates() -> None:
    w = ws(nthreads=2)
    w.handle(compute("x"), compute("y", {"d": (A,)}), compute("z"))
    w.validate()


def test_a_ready_task_the_scheduler_never_assigned_is_caught() -> None:
    w = ws()
    w.handle(compute("busy"), compute("x"))
    w.tasks["x"].assigned = False
    w.tasks["x"].held = True  # still needed: only the assignment is wrong
    broken(w, r"'x' \(ready\): queued but not assigned")


def test_a_cancelled_fetch_that_is_still_needed_is_caught() -> None:
    w = ws()
    w.handle(compute("t", {"d": (A,)}))
    w.handle(FreeKeys("free", ME, ("t",)))
    w.tasks["d"].held = True
    broken(w, r"'d' \(cancelled\): cancelled but still needed")


def test_a_task_waiting_on_an_input_that_does_not_list_it_is_caught() -> None:
    w = ws()
    w.handle(compute("t", {"d": (A,)}))
    w.tasks["d"].held = True  # keep the record itself legal
    w.tasks["d"].dependents = set()
    broken(w, r"'t' \(waiting\): input 'd' does not list it as dependent")


def test_a_key_in_flight_outside_its_request_is_caught() -> None:
    w = ws()
    w.handle(compute("t", {"d": (A,)}))
    w._fq.in_flight[A].pop("d")
    broken(w, rf"'d' \(flight\): in flight from {A} but not in that request")


def test_a_ready_task_missing_from_the_ready_heap_is_caught() -> None:
    w = ws()
    w.handle(compute("x"), compute("y"))
    w._ready.clear()
    broken(w, r"'y' \(ready\): ready but not in the ready heap")


def test_an_idle_thread_beside_a_ready_task_is_caught() -> None:
    w = ws()
    w.handle(compute("x"), compute("y"))
    w.nthreads = 2  # a thread the machine never used
    broken(w, "a thread is idle while tasks are ready")


def test_memory_bytes_that_disagree_with_the_records_are_caught() -> None:
    w = ws()
    w.handle(compute("x"))
    w.handle(ok("x", 100))
    w.nbytes_in_memory = 99
    broken(w, "nbytes_in_memory 99 != 100")


def test_a_key_in_memory_with_holders_still_tracked_is_caught() -> None:
    w = ws()
    w.handle(compute("x"))
    w.handle(ok("x"))
    w.tasks["x"].who_has = {A}
    broken(w, r"'x' \(memory\): in memory with holders tracked")
