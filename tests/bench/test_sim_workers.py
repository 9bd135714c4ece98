"""The simulated-workers benchmark (bench/sim_workers.py) at its smallest:
a real scheduler process, a fleet of TCP workers, both workloads."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from bench import sim_workers


@pytest.mark.parametrize("workload", sim_workers.WORKLOADS)
def test_the_smallest_configuration_measures_the_scheduler(workload: str, tmp_path: Path) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    run = sim_workers.measure(10, 2_000, workload, batch=500, per_process=4, timeout=60,
                              gc_report=str(tmp_path / "gc.json"))
    assert run["workers"] == 10 and run["workload"] == workload
    assert run["gc_us_per_task"] >= 0 and len(run["gc_collections"]) == 3  # the probe answered
    assert run["tasks"] >= 2_000 * 7 // 8
    assert run["cpu_us_per_task"] > 0  # the scheduler did the work, measured from outside
    assert run["wall_s"] > 0 and run["tasks_per_s"] > 0
    assert run["peak_bytes_per_task"] >= run["held_bytes_per_task"]
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not left, f"processes left running: {left}"


def test_bad_configurations_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="unknown workload 'reduce'"):
        sim_workers.measure(10, 100, "reduce")
    with pytest.raises(ValueError, match="at least 1"):
        sim_workers.measure(0, 100, "map")
    with pytest.raises(ValueError, match="cannot be asked for in the same run"):
        sim_workers.measure(10, 100, "map", memory_profile="m.txt", gc_report="gc.json")
