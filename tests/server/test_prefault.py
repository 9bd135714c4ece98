"""Worker processes fault in memory for their first large incoming frame ahead of need."""

from __future__ import annotations

import time
from typing import Any

import pytest

from taskmill import Executor
from taskmill.comm.core import receive_pool
from taskmill.protocol.framing import PREFAULT_FRAME
from tests.server.worker_options import worker_process_with_env

pytestmark = pytest.mark.timeout(120)

MIB = 2**20


def pool_bytes() -> tuple[int, int]:
    pool = receive_pool()
    return pool.idle_bytes(), pool.tracked_bytes()


def make(n: int) -> Any:
    import numpy as np

    return np.arange(n, dtype="u8")


def total(x: Any) -> int:
    return int(x.sum())


def test_fresh_workers_hold_a_spare_and_the_first_transfer_lands_in_it(set_options: Any) -> None:
    pytest.importorskip("numpy")
    set_options({"comm.receive-pool.prefault": "32MiB"})  # the worker processes inherit it
    with Executor(n_workers=2, threads_per_worker=1) as e:
        a, b = sorted(e.scheduler_info()["workers"])
        deadline = time.monotonic() + 60
        while set(e.run(pool_bytes).values()) != {(32 * MIB, 32 * MIB)}:
            assert time.monotonic() < deadline, f"no spare in the workers: {e.run(pool_bytes)}"
            time.sleep(0.05)
        n = 5 * 2**19  # 20 MiB of u8: smaller than the spare by more than a quarter
        x = e.submit(make, n, workers=[a], pure=False)
        assert e.submit(total, x, workers=[b], pure=False).result() == n * (n - 1) // 2
        assert e.run(pool_bytes, workers=[b])[b][1] == 8 * n  # the spare, shrunk to the frame


def test_a_bad_prefault_option_stops_the_worker_process_before_it_registers() -> None:
    proc = worker_process_with_env(TASKMILL_COMM__RECEIVE_POOL__PREFAULT="1TiB")
    assert proc.returncode == 1
    assert "option comm.receive-pool.prefault" in proc.stderr
    assert "larger than option comm.receive-pool.max-bytes" in proc.stderr


def test_a_bad_prefault_option_stops_an_executor_before_it_starts_anything(
        set_options: Any) -> None:
    set_options({"comm.receive-pool.prefault": "lots"})
    with pytest.raises(ValueError, match="option comm.receive-pool.prefault = 'lots'"):
        Executor(n_workers=1)


def test_closing_an_executor_gives_back_the_idle_receive_buffers() -> None:
    pool = receive_pool()
    frame = pool.allocate(PREFAULT_FRAME)  # a frame received, then released
    del frame
    assert pool.idle_bytes() >= PREFAULT_FRAME
    with Executor(n_workers=1, threads_per_worker=1) as e:
        assert e.submit(int, 1).result() == 1
    assert pool.idle_bytes() == 0  # its loop, which ran the idle timer, is gone
