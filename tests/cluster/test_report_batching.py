"""A worker holds its task reports while other calls still run there, so a
map's reports reach the scheduler in batches; the report of its last running
call goes at once (``REPORT_HOLD``, ``BatchedSend``'s ``hold``)."""

from __future__ import annotations

import time

import pytest

from taskmill import Executor

pytestmark = pytest.mark.timeout(60)


def inc(x: int) -> int:
    return x + 1


def test_reports_wait_for_company_but_never_for_an_idle_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    # A hold far longer than the test: whatever arrives in time was not held by the timer.
    monkeypatch.setattr("taskmill.server.worker.REPORT_HOLD", 60.0)
    with Executor(n_workers=1, threads_per_worker=1, processes=False) as e:
        (worker,) = e.cluster.workers
        assert e.submit(inc, 0).result() == 1
        stream = worker.stream
        messages, batches = stream.messages_sent, stream.batches_sent

        n = 500
        assert e.gather(e.map(inc, range(n))) == list(range(1, n + 1))  # the last report flushed the rest
        sent, writes = stream.messages_sent - messages, stream.batches_sent - batches
        assert sent >= n
        assert writes <= sent // 4, (sent, writes)  # batched (up to HOLD_LIMIT messages a write)

        started = time.monotonic()
        assert e.submit(inc, 10**6).result() == 10**6 + 1  # a lone call's report is not held
        assert time.monotonic() - started < 30
        assert stream.pending == 0

