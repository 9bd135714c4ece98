"""The feed: messages built once per change and shared, the scan of all tasks
throttled, the cost accounted.  No network."""

from __future__ import annotations

import gc
import json
import time
from types import SimpleNamespace
from typing import Any

from taskmill.dashboard import feed as feed_module
from taskmill.dashboard.feed import DashboardFeed, Throttled
from tests.dashboard.scenario import decode_stream, done, scenario


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_throttled_reads_every_interval_and_within_a_share_of_the_cpu() -> None:
    wall, cpu = FakeClock(), FakeClock()
    reads: list[float] = []

    def read() -> int:
        reads.append(wall.now)
        cpu.now += cost  # the read itself takes this much CPU
        return len(reads)

    cost = 0.001
    t = Throttled(read, interval=2.0, share=0.01, wall=wall, cpu=cpu)
    assert t.get() == 1 and t.get() == 1
    wall.now, cpu.now = 1.9, 1.0
    assert t.get() == 1  # too soon
    wall.now = 2.0
    assert t.get() == 2  # 2 s passed, and the scheduler used far more than 100x the read's CPU
    wall.now = 4.0
    assert t.get() == 2  # 2 s passed, but the scheduler has not used 100x the read's CPU
    cpu.now += 0.1
    cost = 0.05  # a slow read: the next one waits until the scheduler used 5 s of CPU
    assert t.get() == 3
    cpu_after = cpu.now
    wall.now, cpu.now = 100.0, cpu_after + 4.9  # a busy machine: little CPU for the scheduler
    assert t.get() == 3
    cpu.now = cpu_after + 5.001
    assert t.get() == 4


def _scheduler() -> Any:
    s, mon = scenario()
    return SimpleNamespace(state=s.state, monitor=mon, worker_extra={}, address="tcp://sched:1"), s


def test_status_messages_are_shared_between_pages_in_step_and_rebuilt_on_change(monkeypatch: Any) -> None:
    scheduler, _ = _scheduler()
    builds: list[tuple[int, int]] = []
    real = DashboardFeed._build_status
    monkeypatch.setattr(DashboardFeed, "_build_status",
                        lambda self, a, b: builds.append((a, b)) or real(self, a, b))
    feed = DashboardFeed(scheduler)
    body, cursor = feed.status_message("")
    assert cursor == "5,0"
    again, _ = feed.status_message("")  # a second page at the same cursor, nothing changed
    assert again is body and builds == [(0, 0)]
    data = json.loads(body)
    assert decode_stream(data["stream"]) == list(scheduler.monitor.stream)
    assert {g["group"]: g["done"] for g in data["progress"]} == {"inc": 4, "bad": 0, "dec": 0}
    assert data["summary"]["finished_total"] == 4 and data["summary"]["erred_total"] == 1

    scheduler.monitor.task_done(done("w1", "inc-9", 30.0, 31.0))  # a change
    newer, cursor2 = feed.status_message(cursor)
    assert cursor2 == "6,0" and [k for k in json.loads(newer)["stream"]["keys"]] == ["inc-9"]
    assert builds == [(0, 0), (5, 0)]
    assert feed.status_message("garbage")[1] == "6,0"  # a bad cursor: from the start
    assert feed.cpu_seconds > 0


def test_the_scan_of_all_tasks_is_shared_and_throttled(monkeypatch: Any) -> None:
    scheduler, s = _scheduler()
    scans: list[int] = []
    real = feed_module.views.state_counts
    monkeypatch.setattr(feed_module.views, "state_counts", lambda state: scans.append(1) or real(state))
    feed = DashboardFeed(scheduler)
    feed.status_message("")
    feed.workers_message()
    for i in range(5):  # changes, each a new message, but within COUNTS_INTERVAL: one scan
        scheduler.monitor.task_done(done("w1", f"inc-{10 + i}", 30.0, 31.0, ok=True))
        feed.status_message("")
        feed.workers_message()
    assert len(scans) == 1
    rows = json.loads(feed.workers_message())["workers"]
    assert {r["address"] for r in rows} == set(s.state.workers)


def test_garbage_collections_are_not_charged_to_the_dashboard() -> None:
    feed = DashboardFeed(_scheduler()[0])
    heap = [[i] for i in range(300_000)]  # a full collection has something to walk
    start = time.thread_time()
    with feed.timed():
        gc.collect()
    collect = time.thread_time() - start
    assert len(heap) == 300_000 and feed.cpu_seconds < 0.5 * collect
    with feed.timed():
        sum(range(3_000_000))  # work of its own is charged
    assert feed.cpu_seconds > 0.01
