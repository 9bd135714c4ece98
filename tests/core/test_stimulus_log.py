"""Each machine's stimulus log: written out on a failure, replayed into a fresh machine."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from taskmill.core.scheduler import SchedulerState
from taskmill.core.stimulus_log import replay
from taskmill.core.worker import WorkerState
from taskmill.core.worker.events import ExecuteSucceeded
from taskmill.protocol.vocabulary import ComputeTask, RegisterWorker, TaskFinished, TaskSpec, UpdateGraph


def graph(*keys: str) -> UpdateGraph:
    return UpdateGraph("submit", "c1", tuple(TaskSpec(k, "inc", ()) for k in keys), keys,  # type: ignore[arg-type]
                       {"inc": "<func>"})  # type: ignore[dict-item]


def join(address: str) -> RegisterWorker:
    return RegisterWorker(address, 1, 2**30, stimulus_id=f"join-{address}")


def finished(worker: str, key: str) -> TaskFinished:
    return TaskFinished(f"done-{key}", worker, key, 8, "int", 0.0, 1.0)


@pytest.fixture
def stimulus_dir(tmp_path: Path, set_options: Any) -> Path:
    set_options({"debug.stimulus-dir": str(tmp_path)})
    return tmp_path


def test_a_replayed_log_rebuilds_the_same_state(stimulus_dir: Path) -> None:
    s = SchedulerState(validate=True)
    commands = []
    for batch in [(join("w1"), join("w2")), (graph("a", "b", "c"),), (finished("w1", "a"),),
                  (finished("w2", "b"),)]:
        commands.append(s.handle(*batch))
    path = s.stimulus_log.dump()
    seen: list[list[object]] = []
    fresh = replay(path, on_event=lambda i, events, cmds: seen.append(cmds))
    assert seen == commands  # the same commands, call by call
    assert {k: t.state for k, t in fresh.tasks.items()} == {k: t.state for k, t in s.tasks.items()}
    assert fresh.who_has() == s.who_has()


def test_a_broken_invariant_writes_the_log_and_replay_fails_at_the_same_event(
        stimulus_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = SchedulerState._on_task_finished

    def buggy(self: SchedulerState, step: object, ev: TaskFinished) -> None:
        original(self, step, ev)
        if ev.key == "b":  # a bug: forgets that the data is held
            self.tasks["b"].who_has = {}

    monkeypatch.setattr(SchedulerState, "_on_task_finished", buggy)
    s = SchedulerState(validate=True)
    s.handle(join("w1"), join("w2"))
    s.handle(graph("a", "b"))
    s.handle(finished("w1", "a"))
    with pytest.raises(AssertionError) as failure:
        s.handle(finished("w2", "b"))
    notes = "\n".join(getattr(failure.value, "__notes__", []))
    match = re.search(r"written to (\S+);", notes)
    assert match, notes
    path = match.group(1)
    assert os.path.dirname(path) == str(stimulus_dir)
    with pytest.raises(AssertionError) as again:
        replay(path)
    assert type(again.value) is type(failure.value)
    assert "event 3 of 4" in "\n".join(again.value.__notes__)


def test_a_log_that_dropped_events_refuses_to_replay(stimulus_dir: Path) -> None:
    s = SchedulerState(stimulus_log_size=2)
    for i in range(3):
        s.handle(join(f"w{i}"))
    path = s.stimulus_log.dump()
    with pytest.raises(ValueError, match="dropped its oldest events .* raise its size"):
        replay(path)


def test_the_worker_machine_replays_too(stimulus_dir: Path) -> None:
    w = WorkerState("tcp://me:1", 2, validate=True)
    compute = ComputeTask("c-x", "tcp://me:1", "x", "inc", "<func>", (), {}, {}, (0,))  # type: ignore[arg-type]
    first = w.handle(compute)
    second = w.handle(ExecuteSucceeded("ok-x", "x", 8, "int", 0.0, 1.0))
    seen: list[object] = []
    fresh = replay(w.stimulus_log.dump(), on_event=lambda i, events, cmds: seen.append(cmds))
    assert seen == [first, second]
    assert fresh.task_state("x") == "memory"


def test_a_validating_machine_keeps_its_whole_history_a_production_one_its_last_calls() -> None:
    production, validating = SchedulerState(), SchedulerState(validate=True)
    for i in range(150):
        production.handle(join(f"w{i}"))
        validating.handle(join(f"w{i}"))
    assert len(production.stimulus_log.calls) == 100 and production.stimulus_log.wrapped
    assert len(validating.stimulus_log.calls) == 150 and not validating.stimulus_log.wrapped
