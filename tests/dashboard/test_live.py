"""The dashboard, /metrics, the task stream and the performance report on a
real (in-process) cluster."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from taskmill import Executor, Security, wait
from tests.dashboard.workload import fail_every_tenth, inc
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)


# These clusters have no token (Security()): the tests read the pages as a
# script would; test_guard.py and test_browser.py log in to guarded ones.
OPEN = Security()


@pytest.fixture(scope="module")
def executor() -> Iterator[Executor]:
    with Executor(n_workers=2, threads_per_worker=2, processes=False, security=OPEN) as e:
        yield e


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()  # type: ignore[no-any-return]


def _metrics(e: Executor) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    base = e.dashboard_link.rsplit("/", 1)[0]  # type: ignore[union-attr]
    text = _get(base + "/metrics").decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_dashboard_link_everywhere(executor: Executor) -> None:
    link = executor.dashboard_link
    assert link is not None and link.startswith("http://127.0.0.1:") and link.endswith("/status")
    assert executor.scheduler_info()["dashboard"] == link
    assert _get(link.rsplit("/", 1)[0] + "/health") == b"ok"
    html = executor._repr_html_()
    assert link in html and "workers" in html and "running" in html


def test_metrics_parse_with_real_figures(executor: Executor) -> None:
    before = _metrics(executor)
    good = executor.map(inc, range(300))
    bad = executor.map(fail_every_tenth, range(50))
    wait(good + bad)
    m = _metrics(executor)
    done = ("taskmill_tasks_completed_total", (("outcome", "finished"),))
    failed = ("taskmill_tasks_completed_total", (("outcome", "erred"),))
    assert m[done] - before.get(done, 0) == 345
    assert m[failed] - before.get(failed, 0) == 5
    # tasks by state come from a scan of all tasks done at most every 2 s: wait for a fresh one
    def tasks_in(state: str) -> float:
        return _metrics(executor)[("taskmill_tasks", (("state", state),))]

    wait_for(lambda: tasks_in("memory") >= 345 and tasks_in("erred") >= 5, timeout=10,
             message="tasks by state in /metrics")
    count = ("taskmill_task_duration_seconds_count", ())
    assert m[count] - before.get(count, 0) == 350
    assert m[("taskmill_task_duration_seconds_bucket", (("le", "+Inf"),))] == m[count]
    assert m[("taskmill_task_duration_seconds_sum", ())] > 0
    assert m[("taskmill_workers", ())] == 2 and m[("taskmill_threads", ())] == 4
    assert ("taskmill_event_loop_delay_seconds", ()) in m
    assert m[("taskmill_dashboard_cpu_seconds_total", ())] > 0  # what the scrapes cost
    # worker memory arrives with heartbeats (every second)
    wait_for(lambda: all(v > 10**6 for (name, labels), v in _metrics(executor).items()
                         if name == "taskmill_worker_memory_bytes" and ("kind", "process") in labels),
             timeout=10, message="worker process memory in /metrics")
    kinds = {dict(labels)["kind"] for (name, labels) in m if name == "taskmill_worker_memory_bytes"}
    assert kinds == {"process", "managed", "limit"}


def _events(url: str, headers: dict[str, str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """The (id, data) of each server-sent event from ``url``."""
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        event_id = ""
        for line in r:
            if line.startswith(b"id: "):
                event_id = line[4:].decode().strip()
            elif line.startswith(b"data: "):
                yield event_id, json.loads(line[6:])


def test_status_is_pushed_with_only_new_records(executor: Executor) -> None:
    base = executor.dashboard_link.rsplit("/", 1)[0]  # type: ignore[union-attr]
    wait(executor.map(inc, range(1000, 1100)))
    first_id, first = next(_events(base + "/api/status/events"))
    seen = first["stream"]["next"]
    assert first_id == f"{seen},{first['stream']['next_transfer']}" and seen >= 100
    assert len(first["stream"]["keys"]) == min(seen, 5000)
    assert first["summary"]["workers"] == 2 and {g["group"] for g in first["progress"]} >= {"inc"}
    # a page that reconnects sends the last event id and receives only what is new
    futures = executor.map(inc, range(2000, 2030))
    wait(futures)
    for event_id, update in _events(base + "/api/status/events", {"Last-Event-ID": first_id}):
        if update["stream"]["next"] >= seen + 30:
            break
    assert set(update["stream"]["keys"][-30:]) == {f.key for f in futures}
    assert len(update["stream"]["keys"]) == update["stream"]["next"] - seen
    _, workers = next(_events(base + "/api/workers/events"))
    assert len(workers["workers"]) == 2 and workers["summary"]["threads"] == 4
    # the same by request, for scripts
    polled = json.loads(_get(f"{base}/api/status?after={seen}&after_transfer=0"))
    assert len(polled["stream"]["keys"]) == polled["stream"]["next"] - seen >= 30
    assert json.loads(_get(base + "/api/workers"))["summary"]["workers"] == 2


def test_closing_with_a_page_subscribed_is_prompt() -> None:
    with Executor(n_workers=1, threads_per_worker=1, processes=False, dashboard_port=0, security=OPEN,
                  set_as_default=False) as e:
        events = _events(e.dashboard_link.rsplit("/", 1)[0] + "/api/status/events")  # type: ignore[union-attr]
        next(events)
        start = time.monotonic()
        e.close()
        assert time.monotonic() - start < 5
        assert list(events) == []  # the stream ended with the scheduler


def test_task_stream_and_performance_report(executor: Executor, tmp_path: Any) -> None:
    path = tmp_path / "report.html"
    with executor.performance_report(str(path)) as report:
        futs = executor.map(fail_every_tenth, range(100, 200))
        wait(futs)
    stream = executor.get_task_stream(start=report.start)
    keys = {f.key for f in futs}
    mine = [r for r in stream if r["key"] in keys]
    assert len(mine) == 100
    assert sum(r["status"] == "error" for r in mine) == 10
    assert {r["worker"] for r in mine} <= set(executor.nthreads())
    assert all(r["thread"] in (0, 1) and r["stop"] >= r["start"] and r["transfer"] == 0.0 for r in mine)
    html = path.read_text()
    assert html.startswith("<!doctype html>") and "<script" not in html
    assert report.data is not None
    groups = {g["group"]: g for g in report.data["groups"]}
    assert groups["fail_every_tenth"]["count"] == 100 and groups["fail_every_tenth"]["errors"] == 10
    assert html.count("<rect") >= 100


def test_transfer_time_is_recorded(executor: Executor) -> None:
    w1, w2 = sorted(executor.nthreads())
    [x] = executor.scatter([list(range(100_000))], workers=[w1])
    y = executor.submit(len, x, workers=[w2])
    assert y.result() == 100_000
    rec = [r for r in executor.get_task_stream() if r["key"] == y.key]
    assert rec and rec[0]["worker"] == w2 and rec[0]["transfer"] > 0


def test_task_api_tells_the_story(executor: Executor) -> None:
    f = executor.submit(fail_every_tenth, 1000)
    wait([f])
    base = executor.dashboard_link.rsplit("/", 1)[0]  # type: ignore[union-attr]
    info = json.loads(_get(f"{base}/api/task?key={f.key}"))
    assert info["state"] == "erred" and "no multiples of ten: 1000" in info["error"]["text"]
    assert "ValueError" in info["error"]["traceback"]
    assert [s["to"] for s in info["story"]][-1] == "erred"
    assert all(s["time"] for s in info["story"])
    assert "error" in f._repr_html_() and "ValueError" in f._repr_html_()


def test_taken_dashboard_port_warns_and_runs_on(caplog: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with caplog.at_level("WARNING", logger="taskmill.dashboard"):
            with Executor(n_workers=1, threads_per_worker=1, processes=False,
                          dashboard_port=port, set_as_default=False) as e:
                assert e.submit(inc, 1).result() == 2
                assert e.dashboard_link is None
    assert any("dashboard disabled" in r.message for r in caplog.records)


def test_no_dashboard() -> None:
    with Executor(n_workers=1, threads_per_worker=1, processes=False, dashboard_port=None,
                  set_as_default=False) as e:
        assert e.dashboard_link is None and e.scheduler_info()["dashboard"] is None
        assert len(e.get_task_stream()) == 0
        e.submit(inc, 1).result()
        assert [r["key"] for r in e.get_task_stream()] == [e.submit(inc, 1).key]
