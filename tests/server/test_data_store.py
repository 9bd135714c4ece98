"""The worker's data store (LRU spill to disk) and memory monitor, without processes."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from taskmill.protocol import Serialized
from taskmill.server.data_store import DataStore
from taskmill.server.memory import MemoryThresholds, WorkerMemoryMonitor, memory_exceeded_reason

pytestmark = pytest.mark.timeout(30)


def store(tmp_path: Path, target: int) -> DataStore:
    return DataStore(str(tmp_path / "spill"), target)


def test_target_zero_is_a_plain_dict_that_never_touches_disk(tmp_path: Path) -> None:
    s = store(tmp_path, 0)
    for i in range(10):
        assert s.put(f"k{i}", b"x" * 1000) == 1033
    assert len(s) == 10 and s["k3"] == b"x" * 1000
    assert s.memory_bytes == 10 * 1033 and s.spilled_bytes == 0 and s.evict() == -1
    s.discard("k3")
    s.discard("absent")
    assert "k3" not in s and s.memory_bytes == 9 * 1033
    assert not (tmp_path / "spill").exists()


def test_least_recently_used_values_spill_first_and_load_back(tmp_path: Path) -> None:
    s = store(tmp_path, 250)
    s.put("a", [1, "a"], nbytes=100)
    s.put("b", [2, "b"], nbytes=100)
    assert not s.is_spilled("a") and s.memory_bytes == 200
    s.put("c", [3, "c"], nbytes=100)  # 300 > 250: the oldest goes
    assert s.is_spilled("a") and not s.is_spilled("b") and not s.is_spilled("c")
    assert s.memory_bytes == 200 and s.spilled_bytes == 100 and s.spill_count == 1
    assert s.disk_bytes > 0 and len(os.listdir(tmp_path / "spill")) == 1
    assert s["a"] == [1, "a"]  # loads back, becomes most recent: b is now the oldest
    assert not s.is_spilled("a") and s.is_spilled("b")
    assert s.memory_bytes == 200 and s.spilled_bytes == 100
    s["c"]  # touch c: b stays the one on disk
    assert s.is_spilled("b") and len(s) == 3 and set(s) == {"a", "b", "c"}


def test_value_heavier_than_the_target_goes_straight_to_disk(tmp_path: Path) -> None:
    s = store(tmp_path, 100)
    s.put("small", 1, nbytes=10)
    s.put("big", b"y" * 500)
    assert s.is_spilled("big") and not s.is_spilled("small")
    assert s.spilled_bytes == 533 and s.memory_bytes == 10
    assert s["big"] == b"y" * 500


def test_spilled_value_is_served_serialized_without_loading_it(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    s = store(tmp_path, 1000)
    a = np.arange(1000, dtype="int64")  # 8100 bytes by sizeof: heavy, spilled at once
    s.put("arr", a)
    assert s.is_spilled("arr")
    ser = s.get_serialized("arr")
    assert isinstance(ser, Serialized) and len(ser.frames) == 2  # pickle-5 out-of-band buffer
    assert s.is_spilled("arr") and s.memory_bytes == 0  # still only on disk
    back = ser.deserialize()
    assert (back == a).all() and back.flags.writeable
    loaded = s["arr"]
    assert (loaded == a).all() and loaded.dtype == a.dtype


def test_delete_overwrite_and_close_remove_files(tmp_path: Path) -> None:
    s = store(tmp_path, 150)
    for k in "abc":
        s.put(k, k * 10, nbytes=100)
    assert s.is_spilled("a") and s.is_spilled("b")
    del s["a"]
    assert "a" not in s and s.spilled_bytes == 100
    assert len(os.listdir(tmp_path / "spill")) == 1
    s.put("b", "new", nbytes=10)  # overwrite a spilled key: the old file goes
    assert s["b"] == "new" and s.spilled_bytes == 0
    assert os.listdir(tmp_path / "spill") == []
    s.put("d", "d", nbytes=200)
    s.close()
    assert len(s) == 0 and not (tmp_path / "spill").exists()


def test_unpicklable_value_stays_in_memory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = store(tmp_path, 100)
    lock = threading.Lock()
    s.put("lock", lock, nbytes=500)
    assert s["lock"] is lock and not s.is_spilled("lock")
    assert "could not spill" in caplog.text
    assert s.evict() == -1  # nothing spillable: the monitor stops trying


def test_offset_counts_unmanaged_memory_against_the_target(tmp_path: Path) -> None:
    s = store(tmp_path, 300)
    s.put("a", "a", nbytes=100)
    s.offset = 250
    s.put("b", "b", nbytes=10)  # 110 + 250 > 300: the oldest spills
    assert s.is_spilled("a") and not s.is_spilled("b")


class FakeProcess:
    """RSS = baseline + the bytes the store holds in memory."""

    def __init__(self, s: DataStore, baseline: int) -> None:
        self.s, self.baseline = s, baseline

    def rss(self) -> int:
        return self.baseline + self.s.memory_bytes


def monitor(s: DataStore, proc: FakeProcess, pauses: list[bool]) -> WorkerMemoryMonitor:
    return WorkerMemoryMonitor(s, 1000, MemoryThresholds(), proc.rss, pauses.append)


def test_monitor_spills_to_the_target_when_rss_passes_spill(tmp_path: Path) -> None:
    s = DataStore(str(tmp_path / "spill"), 10**9)  # no spilling by weight alone
    proc = FakeProcess(s, 100)
    pauses: list[bool] = []
    m = monitor(s, proc, pauses)
    for i in range(6):
        s.put(f"k{i}", i, nbytes=100)
    assert m.check() == 700 and s.spill_count == 0  # at 70%: not past it
    s.put("k6", 6, nbytes=100)
    assert m.check() == 600  # 800 > 700: spill until <= 600
    assert [k for k in s if s.is_spilled(k)] == ["k0", "k1"]
    assert s.offset == 100 and pauses == []


def test_monitor_pauses_past_80_percent_and_resumes_below(tmp_path: Path) -> None:
    s = DataStore(str(tmp_path / "spill"), 10**9)
    proc = FakeProcess(s, 850)  # unmanaged memory alone is over the pause line
    pauses: list[bool] = []
    m = monitor(s, proc, pauses)
    s.put("k", 1, nbytes=50)
    m.check()
    assert pauses == [True] and s.is_spilled("k")  # spilled what it could, still paused
    m.check()
    assert pauses == [True]  # reported once
    proc.baseline = 500
    m.check()
    assert pauses == [True, False] and not m.paused


def test_idle_receive_buffers_are_not_unmanaged_memory_and_go_before_a_pause(
        tmp_path: Path) -> None:
    from taskmill.protocol.framing import PREFAULT_FRAME
    from taskmill.protocol.receive_pool import ReceivePool

    pool = ReceivePool(2**30, 4, 60)
    s = DataStore(str(tmp_path / "spill"), 10**12)
    baseline = [1000]

    def rss() -> int:  # the pool's mappings are process memory like any other
        return baseline[0] + s.memory_bytes + pool.tracked_bytes()

    pauses: list[bool] = []
    limit = 5 * PREFAULT_FRAME  # the buffer is 20 % of it
    m = WorkerMemoryMonitor(s, limit, MemoryThresholds(), rss, pauses.append, pool=pool)
    s.put("k", 1, nbytes=100)
    lent = pool.allocate(PREFAULT_FRAME)
    m.check()
    assert s.offset == 1000 + PREFAULT_FRAME  # a lent frame is memory in use
    del lent
    m.check()
    assert s.offset == 1000 and pool.idle_bytes() == PREFAULT_FRAME  # idle: no leak, kept
    baseline[0] = int(0.65 * limit)  # past the pause line with the idle buffer, under spill without
    m.check()
    assert pauses == [] and not s.is_spilled("k") and pool.tracked_bytes() == 0


def test_thresholds_from_the_configuration(set_environment: Any, set_options: Any) -> None:
    set_environment({"TASKMILL_MEMORY_PAUSE": "off", "TASKMILL_MEMORY_TERMINATE": "0.9"})  # the old names
    t = MemoryThresholds.from_config()
    assert (t.target, t.spill, t.pause, t.terminate) == (0.6, 0.7, 0.0, 0.9)
    set_options({"worker.memory.target": False, "worker.memory.monitor-interval": 0.5})
    t = MemoryThresholds.from_config()
    assert (t.target, t.interval) == (0.0, 0.5)
    set_environment({"TASKMILL_MEMORY_SPILL": "lots"})
    with pytest.raises(ValueError, match="worker.memory.spill = 'lots' from the environment variable "
                                         "TASKMILL_MEMORY_SPILL .*: expected a fraction"):
        MemoryThresholds.from_config()


def test_memory_reason_names_both_figures() -> None:
    assert memory_exceeded_reason(190_500_000, 200_000_000) == (
        "worker exceeded its memory limit (190.50 MB of 200.00 MB)")


def test_worker_without_a_limit_has_no_monitor_and_never_spills(tmp_path: Path) -> None:
    from taskmill.server.worker import Worker

    w: Any = Worker("tcp://127.0.0.1:1", memory_limit=0, local_directory=str(tmp_path))
    try:
        assert w.memory_monitor is None and w.data.target == 0
        limited: Any = Worker("tcp://127.0.0.1:1", memory_limit=1000, local_directory=str(tmp_path))
        try:
            assert limited.memory_monitor is not None and limited.data.target == 600
        finally:
            limited.runner.shutdown()
    finally:
        w.runner.shutdown()
