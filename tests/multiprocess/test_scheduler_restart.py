"""The scheduler can die: SIGKILLed mid-run and started again on the same
port (as a supervisor would), its workers and clients reconnect, workers
re-register the data they hold, clients submit their tasks again, and the
waiting ``result()`` returns the exact value without recomputing what live
workers still held (``taskmill.core.scheduler.held_keys``,
``taskmill.client.submissions``).  Real processes; each call of a task is
counted in a log file."""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

import taskmill
from taskmill import Executor, FutureLostError, SchedulerGoneError
from tests.multiprocess.helpers import Proc, running

LEAVES = 1024  # a map of 1,024 calls and a binary tree reduction of 1,023: 2,047 tasks


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def task_functions(log: str) -> tuple[Callable[[int], int], Callable[[int, int, str], int]]:
    """The map and reduce steps (closures: pickled by value), each call
    appending ``key time`` to ``log``."""

    def leaf(i: int) -> int:
        time.sleep(0.004)
        with open(log, "a") as f:
            f.write(f"leaf-{i} {time.time()}\n")
        return i

    def add(a: int, b: int, name: str) -> int:
        with open(log, "a") as f:
            f.write(f"{name} {time.time()}\n")
        return a + b

    return leaf, add


def calls(log: Path) -> list[tuple[str, float]]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        key, _, when = line.partition(" ")
        if when:
            out.append((key, float(when)))
    return out


class Cluster:
    """A scheduler on a fixed port and two workers (under nannies)."""

    def __init__(self, stack: ExitStack, workers: int = 2) -> None:
        self.stack = stack
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.scheduler = self.start_scheduler()
        self.workers = [stack.enter_context(running("taskmill-worker", self.address, "--nthreads", "2"))
                        for _ in range(workers)]
        for w in self.workers:
            w.wait_for_line("registered with scheduler", timeout=30)

    def start_scheduler(self) -> Proc:
        proc = self.stack.enter_context(running("taskmill-scheduler", "--port", str(self.port)))
        proc.wait_for_line(r"Executor\('tcp://", timeout=30)
        return proc

    def kill_scheduler(self) -> None:
        os.kill(self.scheduler.popen.pid, signal.SIGKILL)
        self.scheduler.popen.wait(10)


@contextmanager
def cluster(workers: int = 2) -> Iterator[Cluster]:
    """The cluster; at the end its workers are stopped with SIGTERM (their
    nannies remove their local directories), then everything left is killed."""
    with ExitStack() as stack:
        c = Cluster(stack, workers)
        try:
            yield c
        finally:
            for w in c.workers:
                if w.popen.poll() is None:
                    w.popen.send_signal(signal.SIGTERM)
            for w in c.workers:
                try:
                    w.popen.wait(20)
                except subprocess.TimeoutExpired:
                    pass  # killed with its process group by ``running``


def submit_tree(e: Executor, log: str) -> Any:
    """The 2,047-task graph; returns only the Future of its total (the others are dropped)."""
    leaf, add = task_functions(log)
    level = [e.submit(leaf, i, key=f"leaf-{i}") for i in range(LEAVES)]
    depth = 0
    while len(level) > 1:
        depth += 1
        level = [e.submit(add, a, b, f"add-{depth}-{i}", key=f"add-{depth}-{i}")
                 for i, (a, b) in enumerate(zip(level[::2], level[1::2]))]
    return level[0]


@pytest.mark.timeout(120)
def test_a_2000_task_graph_survives_a_killed_and_restarted_scheduler(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    with cluster() as c, Executor(c.address, set_as_default=False) as e:
        total = submit_tree(e, str(log))
        wait_until(lambda: len(calls(log)) >= 700, 60, "the graph to be a third done")
        c.kill_scheduler()
        killed = time.time()
        before = calls(log)
        c.scheduler = c.start_scheduler()
        listening = time.time()
        assert total.result(timeout=60) == sum(range(LEAVES))
        done = time.time()
        for w in c.workers:
            w.wait_for_line(r"registered with scheduler .*\(holding \d+ keys from before\)")
    every = calls(log)
    counts = collections.Counter(key for key, _ in every)
    assert set(counts) == {f"leaf-{i}" for i in range(LEAVES)} | {
        k for k in counts if k.startswith("add-")} and len(counts) == 2 * LEAVES - 1
    # results finished well before the kill were held by live workers (or no
    # longer needed): none is computed again
    settled = {key for key, when in before if when < killed - 0.3}
    assert not [k for k in settled if counts[k] > 1]
    recomputed = sum(counts.values()) - len(counts)
    assert recomputed <= 4  # at most the calls running at the kill (2 workers x 2 threads)
    resumed = min(when for _, when in every if when > listening)
    assert resumed - listening < 10  # workers back within ~0.5 s, the client's settle 1.5 s
    print(f"\nscheduler restart -> first task run: {resumed - listening:.2f}s "
          f"(kill -> listening {listening - killed:.2f}s); restart -> result {done - listening:.2f}s; "
          f"{len(before)} calls before the kill, {recomputed} recomputed")


@pytest.mark.timeout(120)
def test_a_scheduler_killed_again_while_clients_reconnect(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    with cluster() as c, Executor(c.address, set_as_default=False) as e:
        total = submit_tree(e, str(log))
        wait_until(lambda: len(calls(log)) >= 300, 60, "the graph to be under way")
        c.kill_scheduler()
        c.scheduler = c.start_scheduler()
        for w in c.workers:  # killed again, most likely before the client submitted again
            w.wait_for_line(r"registered with scheduler .*\(holding", timeout=20)
        c.kill_scheduler()
        c.scheduler = c.start_scheduler()
        assert total.result(timeout=60) == sum(range(LEAVES))
    counts = collections.Counter(key for key, _ in calls(log))
    assert len(counts) == 2 * LEAVES - 1 and sum(counts.values()) - len(counts) <= 8


@pytest.mark.timeout(120)
def test_an_async_executor_survives_and_released_futures_are_not_resubmitted(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    leaf, add = task_functions(str(log))

    async def main(c: Cluster) -> None:
        async with Executor(c.address, asynchronous=True, set_as_default=False) as e:
            kept = e.submit(add, 1, 2, "kept", key="kept")
            assert await kept == 3
            slow = e.map(leaf, range(200, 260), key=[f"slow-{i}" for i in range(60)])
            # it cannot run before the kill: its input is the last of 60 calls of 4 ms
            dropped = e.submit(add, slow[-1], 5, "dropped", key="dropped")
            c.kill_scheduler()
            del dropped  # released while the scheduler is away: never sent again
            c.scheduler = c.start_scheduler()
            assert await e.gather(slow) == list(range(200, 260))
            assert await kept == 3 and await e.submit(add, 3, 4, "after", key="after") == 7

    with cluster(workers=1) as c:
        asyncio.run(main(c))
    counts = collections.Counter(key for key, _ in calls(log))
    assert counts["kept"] == 1 and counts["after"] == 1 and counts["dropped"] == 0


@pytest.mark.timeout(60)
def test_scattered_data_survives_with_its_worker(tmp_path: Path) -> None:
    with cluster(workers=1) as c, Executor(c.address, set_as_default=False) as e:
        [data] = e.scatter([list(range(10))])
        wait_until(lambda: bool(e.who_has([data])[data.key]), 10, "the scatter to be known")
        c.kill_scheduler()
        c.scheduler = c.start_scheduler()
        assert e.submit(sum, data).result(timeout=30) == 45
        assert data.result(timeout=30) == list(range(10))


@pytest.mark.timeout(60)
def test_scattered_data_lost_with_its_worker_fails_clearly(tmp_path: Path) -> None:
    with cluster(workers=2) as c, Executor(c.address, set_as_default=False) as e:
        [data] = e.scatter([list(range(10))])
        wait_until(lambda: bool(e.who_has([data])[data.key]), 10, "the scatter to be known")
        [holder] = e.who_has([data])[data.key]
        pid = e.scheduler_info()["workers"][holder]["pid"]
        [victim] = [w for w in c.workers
                    if pid in {p.pid for p in psutil.Process(w.popen.pid).children(recursive=True)}]
        cmdline = psutil.Process(pid).cmdline()
        local_directory = cmdline[cmdline.index("--local-directory") + 1]
        c.kill_scheduler()
        os.killpg(victim.popen.pid, signal.SIGKILL)  # the nanny and its worker: nobody cleans up
        victim.popen.wait(10)
        shutil.rmtree(local_directory, ignore_errors=True)
        c.scheduler = c.start_scheduler()
        with pytest.raises(FutureLostError, match="no worker brought back"):
            data.result(timeout=30)


@pytest.mark.timeout(60)
def test_a_scheduler_that_never_returns_fails_the_futures_after_the_window(tmp_path: Path) -> None:
    with taskmill.config.set({"comm.timeouts.client-reconnect": 2}), cluster(workers=1) as c, \
            Executor(c.address, set_as_default=False) as e:
        never = e.submit(time.sleep, 30, key="never")
        c.kill_scheduler()
        start = time.monotonic()
        with pytest.raises(SchedulerGoneError, match="could not reach it again within 2s"):
            never.result(timeout=30)
        assert 1.5 < time.monotonic() - start < 15
