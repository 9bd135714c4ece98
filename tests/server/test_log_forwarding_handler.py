"""The worker side of ``forward_logging`` alone: the handler captures only
records of its own worker's task threads, never blocks them, keeps at most
``MAX_PENDING`` records waiting, and its plugin's teardown sends what waits."""

from __future__ import annotations

import asyncio
import logging
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from taskmill import log_forwarding
from taskmill.log_forwarding import ForwardLoggingPlugin
from taskmill.server.task_context import enter_pool


class FakeWorker:
    def __init__(self) -> None:
        self.runner = object()
        self.sent: list[tuple[str, tuple[dict[str, Any], ...]]] = []

    def forward_log_records(self, topic: str, records: tuple[dict[str, Any], ...]) -> None:
        self.sent.append((topic, records))


def in_task_thread(runner: object, fn: Any) -> None:
    """Run ``fn`` in a thread that looks like a task thread of ``runner``."""
    def body() -> None:
        enter_pool(runner).call = SimpleNamespace(key="k", generation=0)
        fn()
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()


def messages(worker: FakeWorker) -> list[str]:
    return [r["msg"] for _, records in worker.sent for r in records]


def test_only_this_workers_task_threads_are_captured_and_teardown_sends_what_waits() -> None:
    async def main() -> FakeWorker:
        worker, other = FakeWorker(), FakeWorker()
        plugin = ForwardLoggingPlugin("tm.handler", logging.WARNING, "forward-logging-tm.handler")
        plugin.setup(worker)
        log = logging.getLogger("tm.handler")
        log.warning("not in a task")  # this thread runs no task
        in_task_thread(other.runner, lambda: log.warning("another worker's task"))
        in_task_thread(worker.runner, lambda: (log.warning("mine %d", 1), log.info("too low"),
                                               logging.getLogger("taskmill.x").error("ours")))
        assert worker.sent == []  # waiting for the loop, which has not run yet
        plugin.teardown(worker)  # removes the handler and sends the batch
        in_task_thread(worker.runner, lambda: log.warning("after teardown"))
        await asyncio.sleep(0)  # the send queued by the first record finds nothing left
        return worker

    worker = asyncio.run(main())
    assert messages(worker) == ["mine 1"]
    [(topic, [record])] = worker.sent
    assert topic == "forward-logging-tm.handler" and record["levelname"] == "WARNING"
    assert record["args"] is None and record["name"] == "tm.handler"


def test_records_beyond_the_bound_are_dropped_and_counted(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(log_forwarding, "MAX_PENDING", 3)

    async def main() -> FakeWorker:
        worker = FakeWorker()
        plugin = ForwardLoggingPlugin("tm.bound", logging.NOTSET, "t")
        plugin.setup(worker)
        log = logging.getLogger("tm.bound")
        in_task_thread(worker.runner, lambda: [log.warning("r%d", i) for i in range(5)])
        await asyncio.sleep(0)  # one turn of the loop: it runs the send the first record queued
        plugin.teardown(worker)
        return worker

    with caplog.at_level(logging.WARNING, logger="taskmill.worker"):
        worker = asyncio.run(main())
    assert messages(worker) == ["r0", "r1", "r2"]
    assert "dropped 2 log records" in caplog.text
