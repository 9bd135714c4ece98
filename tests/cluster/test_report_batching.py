"""A worker holds its task reports while other calls still run there, so a
map's reports reach the scheduler in batches; the report of its last running
call goes at once (``REPORT_HOLD``, ``BatchedSend``'s ``hold``)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from taskmill import Executor, worker_client
from taskmill.comm import BatchedSend

pytestmark = pytest.mark.timeout(60)


def inc(x: int) -> int:
    return x + 1


def inc_through_a_child(x: int) -> int:
    with worker_client() as e:  # secedes: the child runs on the freed thread
        return int(e.submit(inc, x).result()) + 1


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



def test_a_seceded_call_does_not_hold_the_reports_it_waits_for(monkeypatch: pytest.MonkeyPatch) -> None:
    held: list[tuple[str, float]] = []  # (op, hold) of every message the worker sends
    send = BatchedSend.send

    def recording(self: BatchedSend, *msgs: Any, hold: float = 0.0) -> None:
        held.extend((m.get("op", "?") if isinstance(m, dict) else "?", hold) for m in msgs)
        send(self, *msgs, hold=hold)

    with Executor(n_workers=1, threads_per_worker=1, processes=False) as e:
        (worker,) = e.cluster.workers
        monkeypatch.setattr(worker.stream, "send", recording.__get__(worker.stream))
        assert e.submit(inc_through_a_child, 1).result(timeout=30) == 3
        reports = [hold for op, hold in held if op == "task-finished"]
        assert reports == [0.0, 0.0], held  # the child's (its parent seceded) and the parent's
