"""The dashboard's pure views over a scheduler state and a monitor: no network."""

from __future__ import annotations

import json

from taskmill.dashboard import views
from taskmill.dashboard.colors import group_color
from taskmill.dashboard.monitor import DURATION_BUCKETS, SchedulerMonitor
from taskmill.dashboard.report import render
from taskmill.protocol.vocabulary import Heartbeat
from tests.dashboard.scenario import decode_stream, done, scenario


def test_assign_lanes_packs_overlapping_tasks_into_thread_lanes():
    recs = [("a-1", "w1", 0.0, 2.0, 0.0, True), ("a-2", "w1", 1.0, 3.0, 0.0, True),
            ("a-3", "w1", 2.0, 4.0, 0.0, True), ("a-4", "w2", 0.0, 1.0, 0.5, False)]
    out = views.assign_lanes(recs, {"w1": 2, "w2": 1})
    lanes = {r["key"]: r["thread"] for r in out}
    assert lanes == {"a-1": 0, "a-2": 1, "a-3": 0, "a-4": 0}
    assert [r["key"] for r in out] == ["a-1", "a-4", "a-2", "a-3"]  # by start time
    a4 = next(r for r in out if r["key"] == "a-4")
    assert a4 == {"key": "a-4", "group": "a", "worker": "w2", "thread": 0, "start": 0.0,
                  "stop": 1.0, "transfer": 0.5, "status": "error"}


def test_assign_lanes_never_exceeds_threads_even_with_clock_noise():
    recs = [(f"x-{i}", "w", 0.0, 1.0, 0.0, True) for i in range(5)]
    assert {r["thread"] for r in views.assign_lanes(recs, {"w": 2})} == {0, 1}


def test_progress_counts_current_states_and_running_totals():
    s, mon = scenario()
    groups = {g["group"]: g for g in views.progress(s.state, mon)}
    inc = groups["inc"]
    assert inc["memory"] == 4 and inc["done"] == 4
    assert inc["processing"] + inc["queued"] + inc["waiting"] == 2
    assert inc["total"] == 6 and inc["failed"] == 0
    assert groups["bad"]["failed"] == 1 and groups["bad"]["erred"] == 1
    # dec-0 never ran: it erred because its input did
    assert groups["dec"]["erred"] == 1 and groups["dec"]["failed"] == 1 and groups["dec"]["done"] == 0
    assert abs(inc["seconds"] - 4.0) < 1e-9


def test_task_stream_sends_each_record_once():
    s, mon = scenario()
    first = views.task_stream(mon, s.state.nthreads())
    assert first["next"] == 5
    rows = decode_stream(first)
    assert rows == list(mon.stream)
    assert rows[-1][0] == "bad-0" and rows[-1][1] in ("w1", "w2") and rows[-1][2:] == (20.0, 20.5, 0.0, False)
    mon.task_done(done("w1", "inc-9", 30.0, 31.0, 0.25, ok=True))
    second = views.task_stream(mon, s.state.nthreads(), after=first["next"])
    assert decode_stream(second) == [("inc-9", "w1", 30.0, 31.0, 0.25, True)] and second["next"] == 6
    assert views.task_stream(mon, {}, after=6)["keys"] == ()
    assert len(views.task_stream(mon, {}, after=0, limit=2)["keys"]) == 2
    # a cursor from before a restart (past what was recorded) gets everything
    assert len(views.task_stream(mon, {}, after=1000)["keys"]) == 6
    mon.heartbeat(Heartbeat("s", "w2", 0.0, transfers=(("w1", 1.0, 1.5, 1000, 2),)))
    third = views.task_stream(mon, {}, after=6)
    [[wi, peer, start, stop, nbytes, nkeys]] = third["transfers"]
    assert (third["workers"][wi], peer, start, stop, nbytes, nkeys) == ("w2", "w1", 1.0, 1.5, 1000, 2)
    assert json.loads(json.dumps(third)) == {**third, "keys": []}  # plain JSON


def test_totals_are_folded_lazily_and_exactly():
    mon = SchedulerMonitor(stream_length=10)  # folds at least every 5 records: none is lost
    for i in range(23):
        mon.task_done(done("w", f"g{i % 2}-{i}", 0.0, 0.002 if i % 3 else 20.0, ok=i % 7 != 0))
    assert mon.tasks_total == 23 and len(mon.stream) == 10
    assert mon.erred_total == 4  # i = 0, 7, 14, 21
    assert {g: (c.finished, c.erred) for g, c in mon.groups.items()} == {"g0": (10, 2), "g1": (9, 2)}
    assert sum(mon.duration_buckets) == 23
    assert mon.duration_buckets[DURATION_BUCKETS.index(0.005)] == 15  # 0.002 s <= 0.005 s
    assert mon.duration_buckets[DURATION_BUCKETS.index(60.0)] == 8  # 20 s
    assert abs(mon.duration_sum - (15 * 0.002 + 8 * 20.0)) < 1e-9
    assert abs(mon.groups["g0"].seconds + mon.groups["g1"].seconds - mon.duration_sum) < 1e-9
    # dask tuple keys and keys without a dash are grouped like the scheduler groups them
    for key in ("('sum-4f2a', 3)", "nodash", "g0-99"):
        mon.task_done(done("w", key, 0.0, 1.0, ok=True))
    assert {g: c.finished for g, c in mon.groups.items()} == {"g0": 11, "g1": 9, "sum": 1, "nodash": 1}


def test_workers_view_has_figures_and_nanny_history():
    s, mon = scenario()
    mon.heartbeat(Heartbeat("s", "w1", 0.0, memory=123_000_000, cpu=42.0,
                            transfers=(("w2", 1.0, 1.5, 1000, 2),)))
    mon.nanny_exits["n1"] = [2, "worker process exited with signal SIGKILL"]
    s.state.workers["w1"].nanny = "n1"
    rows = {r["address"]: r for r in views.workers(s.state, {"w1": {"memory": 123_000_000}}, mon)}
    w1 = rows["w1"]
    assert w1["nthreads"] == 2 and w1["cpu"] == 42.0 and w1["memory_process"] == 123_000_000
    assert w1["restarts"] == 2 and "SIGKILL" in w1["last_exit"]
    assert w1["stored"] == len(s.state.workers["w1"].has_what)
    assert rows["w2"]["restarts"] == 0 and rows["w2"]["cpu"] is None
    assert mon.transfer_count == 1 and mon.transfer_bytes == 1000


def test_task_info_tells_the_story_with_times_and_the_error():
    s, mon = scenario()
    info = views.task_info(s.state, mon, "bad-0")
    assert info["state"] == "erred" and info["known"]
    assert info["error"]["text"] == "ValueError: nope"
    assert [(e["from"], e["to"]) for e in info["story"]][-1] == ("processing", "erred")
    assert len(info["runs"]) == 1 and info["runs"][0]["status"] == "error"
    assert info["dependents"] == ["dec-0"]
    unknown = views.task_info(s.state, mon, "nope-1")
    assert not unknown["known"] and unknown["state"] == "forgotten"


def test_stimulus_times_come_from_batch_stamps():
    mon = SchedulerMonitor()
    mon.stamp("update-graph-3")
    mon.stamp("task-finished-7")
    t3, t7, t5, t9, odd = mon.when(["x-3", "y-7", "z-5", "w-9", "no-number"])
    assert t3 is not None and t7 is not None and t5 == t7 and t9 is None and odd is None


def test_group_timings_and_report_render():
    s, mon = scenario()
    tasks = views.assign_lanes(mon.stream, s.state.nthreads())
    groups = {g["group"]: g for g in views.group_timings(tasks)}
    assert groups["inc"]["count"] == 4 and abs(groups["inc"]["mean"] - 1.0) < 1e-9
    assert groups["bad"]["errors"] == 1
    html = render({"start": 10.0, "stop": 21.0, "tasks": tasks, "groups": list(groups.values()),
                   "transfers": [], "memory": [{"time": 12.0, "worker": "w1", "memory": 10**8}],
                   "workers": s.state.nthreads(), "scheduler": "tcp://x:1"})
    assert html.startswith("<!doctype html>") and "<script" not in html  # self-contained:
    assert "<link" not in html and "src=" not in html and "href=" not in html
    assert html.count("<rect") >= 5 and "bad-0" in html and group_color("inc") in html


def test_group_colours_are_stable_and_never_error_red():
    assert group_color("inc") == group_color("inc")
    hues = [int(group_color(f"g{i}")[4:].split(",")[0]) for i in range(100)]
    assert all(30 <= h < 320 for h in hues) and len(set(hues)) > 50


def test_the_header_says_when_tasks_wait_without_workers():
    s, mon = scenario()
    assert views.summary(s.state, mon)["waiting_for_workers"] is None
    mon.waiting_for_workers = {"seconds": 12.0, "tasks": 7}  # what the scheduler's check sets
    assert views.summary(s.state, mon)["waiting_for_workers"] == {"seconds": 12.0, "tasks": 7}
