"""``Executor.dump_cluster_state``, ``taskmill.cluster_state.load_cluster_state`` and ``Executor.rebalance``."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from taskmill import Executor
from taskmill.cluster_state import load_cluster_state, snapshot_record
from taskmill.core.scheduler.records import TaskRecord
from taskmill.protocol import serialize

pytestmark = pytest.mark.timeout(60)

GATE = threading.Event()


def inc(x: int) -> int:
    return x + 1


def fail(x: int) -> int:
    raise ValueError(f"no {x}")


def blocked() -> str:
    GATE.wait(30)
    return "done"


@pytest.mark.parametrize("name", ["state.json", "state.json.gz"])
def test_the_dump_holds_the_scheduler_and_every_worker(tmp_path: Path, name: str) -> None:
    GATE.clear()
    with Executor(n_workers=2, threads_per_worker=1, processes=False, set_as_default=False) as e:
        done = e.submit(inc, 1)
        erred = e.submit(fail, 2)
        running = e.submit(blocked)
        assert done.result() == 2
        with pytest.raises(ValueError):
            erred.result()
        path = str(tmp_path / name)
        try:
            e.dump_cluster_state(path)
        finally:
            GATE.set()
        assert running.result() == "done"
        state = load_cluster_state(path)
        workers = sorted(e.nthreads())
    scheduler = state["scheduler"]
    tasks = scheduler["tasks"]
    assert tasks[done.key]["state"] == "memory" and tasks[erred.key]["state"] == "erred"
    assert tasks[running.key]["state"] == "processing"
    assert tasks[running.key]["processing_on"] in workers  # a record inside another: by name
    assert tasks[done.key]["who_has"] and set(tasks[done.key]["who_has"]) <= set(workers)
    assert sorted(scheduler["workers"]) == workers and sorted(state["workers"]) == workers
    where = tasks[running.key]["processing_on"]
    assert state["workers"][where]["executing"] == [running.key]
    assert state["workers"][where]["tasks"][running.key]["state"] == "executing"
    assert all("logs" in w for w in state["workers"].values())
    assert scheduler["info"]["address"] == scheduler["address"]


def test_a_record_snapshot_is_plain_data_and_payloads_are_only_sized() -> None:
    parent, child = TaskRecord("parent", None, (0,), 0), TaskRecord("child", None, (0,), 1)
    child.dependencies = {parent: None}
    child.error = (serialize(ValueError("x" * 1000)), "ValueError: xxx")  # type: ignore[assignment]
    snap = snapshot_record(child)
    assert snap["key"] == "child" and snap["state"] == "released"
    assert snap["dependencies"] == {"parent": None}  # a record inside another: by name
    payload, text = snap["error"]
    assert set(payload) == {"serialized bytes"} and payload["serialized bytes"] > 1000
    assert json.loads(json.dumps(snap)) == snap


def test_loading_a_file_of_another_kind_names_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a taskmill cluster state.*dump_cluster_state"):
        load_cluster_state(str(path))


def test_rebalance_evens_out_scattered_data_and_every_key_stays_readable() -> None:
    with Executor(n_workers=2, threads_per_worker=1, processes=False, set_as_default=False) as e:
        first, second = sorted(e.nthreads())
        items = [bytes([i]) * 10_000 for i in range(100)]
        futures = e.scatter(items, workers=[first])
        assert {w: len(keys) for w, keys in e.has_what().items()} == {first: 100, second: 0}
        e.rebalance()
        counts = {w: len(keys) for w, keys in e.has_what().items()}
        assert abs(counts[first] - counts[second]) <= 10, counts  # within 10% of each other
        assert sum(counts.values()) == 100  # moved, not copied: each key once
        assert e.gather(futures) == items
        e.rebalance(futures[:10], workers=[first, second])  # even already: nothing to do
        assert {w: len(keys) for w, keys in e.has_what().items()} == counts
