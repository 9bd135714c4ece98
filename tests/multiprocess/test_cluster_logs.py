"""Cluster logs and ``run_on_scheduler`` with real worker processes: each
worker process answers from its own ring, the scheduler (embedded in this
process) from this process's."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from taskmill import Executor

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def info_logs() -> Iterator[None]:
    """The embedded scheduler keeps what this process's ``taskmill`` loggers
    let through: INFO for the test (worker processes log at INFO by default)."""
    logger = logging.getLogger("taskmill")
    before = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(before)


def test_process_workers_logs_and_the_schedulers(info_logs: None) -> None:
    with Executor(n_workers=2, threads_per_worker=1, set_as_default=False) as e:
        workers = sorted(e.nthreads())
        pids = {w: info["pid"] for w, info in e.scheduler_info()["workers"].items()}
        assert os.getpid() not in pids.values()

        logs = e.get_worker_logs()
        assert sorted(logs) == workers
        for address, records in logs.items():
            lines = [line for _, line in records]
            # each worker process keeps its own lines only: its pid, its address
            assert any("registered with scheduler" in line for line in lines), lines
            assert any(f"worker listening at {address}" in line for line in lines), lines
            assert all(f"(pid {pids[address]})" in line for line in lines), lines
            assert {level for level, _ in records} <= {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}

        scheduler_lines = [line for level, line in e.get_scheduler_logs() if level == "INFO"]
        for address in workers:
            assert any(f"worker {address} joined" in line for line in scheduler_lines), scheduler_lines
        assert e.run_on_scheduler(os.getpid) == os.getpid()  # the embedded scheduler
        assert all(len(r) == 1 for r in e.get_worker_logs(n=1).values())
