"""Throughput of the pure scheduler: a 20,000-task map, submitted in one graph
and finished one ``TaskFinished`` event at a time, through ``handle()``.

Run directly for the figures: ``python tests/core/test_scheduler_perf.py``.
The test asserts a deliberately loose bound (shared CI machines are noisy);
on an idle 2-core machine the map runs at well over 20,000 tasks/s.
"""

from __future__ import annotations

import time

from taskmill.protocol.vocabulary import (
    ComputeTask,
    RegisterWorker,
    ReleaseKeys,
    TaskFinished,
    TaskSpec,
    UpdateGraph,
)
from taskmill.core.scheduler.state import SchedulerState


def run_map(n: int = 20_000, nworkers: int = 4, nthreads: int = 2) -> dict[str, float]:
    s = SchedulerState()
    for i in range(nworkers):
        s.handle(
            RegisterWorker(stimulus_id=f"j{i}", worker=f"tcp://w{i}", nthreads=nthreads, memory_limit=2**30, now=0.0)
        )
    tasks = tuple(TaskSpec(f"inc-{i}", "inc", (i,)) for i in range(n))
    keys = tuple(t.key for t in tasks)
    t0 = time.perf_counter()
    cmds = s.handle(UpdateGraph("submit", client="c", tasks=tasks, wanted=keys))
    t1 = time.perf_counter()
    pending = [c for c in cmds if type(c) is ComputeTask]
    done = 0
    while pending:
        c = pending.pop()
        out = s.handle(
            TaskFinished("fin", worker=c.worker, key=c.key, nbytes=28, type_name="int",
                         start=0.0, stop=0.0001)
        )
        done += 1
        pending.extend(o for o in out if type(o) is ComputeTask)
    t2 = time.perf_counter()
    s.handle(ReleaseKeys("release", client="c", keys=keys))
    t3 = time.perf_counter()
    assert done == n and not s.tasks
    return {
        "submit_s": t1 - t0,
        "finish_s": t2 - t1,
        "release_s": t3 - t2,
        "tasks_per_s": n / (t2 - t0),
    }


def run_tree(width: int = 8192) -> float:
    """A binary tree reduction (2*width - 1 tasks): dependencies, locality, frees."""
    s = SchedulerState()
    for i in range(4):
        s.handle(RegisterWorker(stimulus_id=f"j{i}", worker=f"tcp://w{i}", nthreads=2, memory_limit=2**30, now=0.0))
    tasks = [TaskSpec(f"leaf-{i}", "leaf", (i,)) for i in range(width)]
    level = [t.key for t in tasks]
    n = 0
    while len(level) > 1:
        nxt = []
        for j in range(0, len(level), 2):
            n += 1
            key = f"add-{n}"
            tasks.append(TaskSpec(key, "add", (), dependencies=(level[j], level[j + 1])))
            nxt.append(key)
        level = nxt
    t0 = time.perf_counter()
    cmds = s.handle(UpdateGraph("submit", client="c", tasks=tuple(tasks), wanted=(level[0],)))
    pending = [c for c in cmds if type(c) is ComputeTask]
    while pending:
        c = pending.pop()
        out = s.handle(TaskFinished("fin", worker=c.worker, key=c.key, nbytes=28, type_name="int",
                                    start=0.0, stop=0.0001))
        pending.extend(o for o in out if type(o) is ComputeTask)
    assert s.task_state(level[0]) == "memory"
    return len(tasks) / (time.perf_counter() - t0)


def test_map_throughput():
    best = max(run_map()["tasks_per_s"] for _ in range(2))
    print(f"\n20,000-task map: {best:,.0f} tasks/s (submit + finish)")
    assert best > 5_000  # loose: guards against per-event scans, not CI noise


def test_tree_throughput():
    rate = run_tree(4096)
    print(f"\ntree reduction: {rate:,.0f} tasks/s")
    assert rate > 3_000


if __name__ == "__main__":
    for _ in range(3):
        r = run_map()
        print(
            f"map 20,000: submit {r['submit_s']:.3f}s finish {r['finish_s']:.3f}s "
            f"release {r['release_s']:.3f}s -> {r['tasks_per_s']:,.0f} tasks/s"
        )
    print(f"tree reduction: {run_tree():,.0f} tasks/s")
