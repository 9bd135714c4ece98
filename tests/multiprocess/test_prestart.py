"""``Executor()`` starts its worker processes before its cluster and hands them over."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import psutil
import pytest

from taskmill import Executor
from taskmill.security import Security
from taskmill.server.prestart import prestart

pytestmark = pytest.mark.timeout(120)


def inc(x: int) -> int:
    return x + 1


def test_the_embedded_cluster_adopts_the_prestarted_processes(no_leaks: None) -> None:
    with Executor(n_workers=2, threads_per_worker=1, set_as_default=False) as e:
        pids = [w["pid"] for w in e.scheduler_info()["workers"].values()]
        assert all("--args-on-stdin" in psutil.Process(pid).cmdline() for pid in pids)
        assert e.submit(inc, 1).result() == 2
        e.restart()  # a restarted worker is the nanny's own again
        pids = [w["pid"] for w in e.scheduler_info()["workers"].values()]
        assert len(pids) == 2
        assert not any("--args-on-stdin" in psutil.Process(pid).cmdline() for pid in pids)
        assert e.submit(inc, 2).result() == 3


def test_a_cluster_that_fails_to_start_leaves_no_prestarted_process(no_leaks: None) -> None:
    with pytest.raises(ValueError, match="lots"):
        Executor(n_workers=2, memory_limit="lots of memory")


def test_discarded_processes_exit_quietly(no_leaks: None) -> None:
    async def main() -> list[int | None]:
        started = await prestart(2, Security.temporary())
        for p in started:
            await p.discard()
        return [p.process.returncode for p in started]

    assert asyncio.run(main()) == [0, 0]


def test_the_worker_process_wants_a_scheduler_unless_its_arguments_come_later() -> None:
    done = subprocess.run([sys.executable, "-m", "taskmill.server.worker_process"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--scheduler" in done.stderr
