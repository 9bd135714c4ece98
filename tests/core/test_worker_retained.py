"""A worker that registers again after losing its scheduler starts a fresh
machine with the data it kept (``DataRetained``): in memory, used as an
input without a fetch, dropped when the scheduler frees it."""

from __future__ import annotations

from taskmill.core.worker.events import DataRetained, DeleteData, Fetch
from taskmill.protocol.vocabulary import FreeKeys
from tests.core.test_worker_state import ME, B, compute, executed, of, ws


def test_retained_data_is_in_memory_and_tells_nobody() -> None:
    w = ws()
    assert w.handle(DataRetained("kept", {"x": 10, "y": 20})) == []
    assert w.task_state("x") == "memory" and w.nbytes_in_memory == 30


def test_a_task_on_retained_data_runs_without_fetching() -> None:
    w = ws()
    w.handle(DataRetained("kept", {"x": 10}))
    cmds = w.handle(compute("z", {"x": (ME, B)}))
    assert executed(cmds) == ["z"] and not of(cmds, Fetch)


def test_the_scheduler_frees_retained_data() -> None:
    w = ws()
    w.handle(DataRetained("kept", {"x": 10}))
    cmds = w.handle(FreeKeys("free", ME, ("x",), epoch=1))
    assert [c.keys for c in of(cmds, DeleteData)] == [("x",)]
    assert w.task_state("x") is None
