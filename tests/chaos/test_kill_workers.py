"""Chaos: worker processes are killed with SIGKILL about every second while a
graph with dependencies runs; the result must equal the local one."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

from taskmill import Executor, wait

pytestmark = [
    pytest.mark.timeout(240),
    # Known open problem (issue 4): with a kill every second the recomputation
    # of lost lineage does not keep up and the run does not converge within
    # minutes; kept out of the default run until fixed.  TASKMILL_CHAOS=1 runs it.
    pytest.mark.skipif(not os.environ.get("TASKMILL_CHAOS"),
                       reason="chaos test does not converge yet (issue 4); set TASKMILL_CHAOS=1"),
]


def combine(a: int, b: int, salt: int) -> int:
    time.sleep(0.005)  # 2,000 of these keep 3 workers busy for a few seconds
    return (a * 31 + b * 17 + salt) % 1_000_003


def local_result(width: int, depth: int, seed: int) -> int:
    layer = [start_value(i, seed) for i in range(width)]
    for d in range(depth):
        layer = [combine(layer[i], layer[(i + 1) % width], d) for i in range(width)]
    return sum(layer) % 1_000_003


def start_value(i: int, seed: int) -> int:
    return (i * 7 + seed) % 1000


def cluster_result(e: Executor, width: int, depth: int, seed: int) -> int:
    # inputs are tasks too: every lost result can be recomputed from lineage
    layer = [e.submit(start_value, i, seed) for i in range(width)]
    for d in range(depth):
        layer = [e.submit(combine, layer[i], layer[(i + 1) % width], d) for i in range(width)]
    total = e.submit(lambda xs: sum(xs) % 1_000_003, layer)
    return int(total.result(timeout=180))


@pytest.mark.parametrize("seed", [1, 2])
def test_results_stay_right_while_workers_are_killed(seed: int, no_leaks: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Outside kills are not the tasks' fault: allow more deaths than the default
    # three before blaming a task (it may be the one a killed worker was running).
    monkeypatch.setenv("TASKMILL_ALLOWED_FAILURES", "20")
    width, depth = 400, 5  # 2,000 tasks, each depending on two of the layer before
    rng = random.Random(seed)
    with Executor(n_workers=3, threads_per_worker=1, set_as_default=False) as e:
        stop = threading.Event()
        kills = []

        def killer() -> None:
            pause = rng.uniform(0.2, 0.4)  # the first kill comes early, the others about every second
            while not stop.wait(pause):
                pause = rng.uniform(0.7, 1.3)
                pids = [w["pid"] for w in e.scheduler_info()["workers"].values()]
                if len(pids) >= 2:
                    victim = rng.choice(pids)
                    try:
                        os.kill(victim, signal.SIGKILL)
                        kills.append(victim)
                    except ProcessLookupError:
                        pass

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        try:
            got = cluster_result(e, width, depth, seed)
        finally:
            stop.set()
            thread.join(10)
        assert got == local_result(width, depth, seed)
        assert kills, "the chaos thread killed nothing"
        # the cluster is whole again and still works
        deadline = time.monotonic() + 30
        while len(e.nthreads()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(e.nthreads()) == 3
        f = e.submit(combine, 1, 2, 3)
        wait([f], timeout=30)
        assert f.result() == combine(1, 2, 3)
