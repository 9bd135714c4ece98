"""The scheduler's heartbeats to its workers: one a round to a worker it sent
nothing since the last round, none to a worker its stream keeps busy (any
message is a sign of life to the worker)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Callable

import pytest

from taskmill import Executor
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)


def inc(x: int) -> int:
    return x + 1


def test_only_workers_the_scheduler_sent_nothing_since_the_last_round_get_a_heartbeat(
        set_options: Callable[[dict[str, Any]], None]) -> None:
    set_options({"scheduler.worker-ttl": 2})  # a round every 0.5 s
    with Executor(n_workers=2, threads_per_worker=1, processes=False) as e:
        scheduler = e.cluster.scheduler  # type: ignore[union-attr]
        busy, idle = sorted(scheduler.worker_streams)
        heartbeats: Counter[str] = Counter()
        for address, stream in scheduler.worker_streams.items():
            def recording(*msgs: Any, _send: Any = stream.send_messages, _to: str = address) -> None:
                heartbeats[_to] += sum(m.op == "scheduler-heartbeat" for m in msgs)
                _send(*msgs)
            stream.send_messages = recording
        wait_for(lambda: heartbeats[busy] >= 2 and heartbeats[idle] >= 2, 20,
                 message="both idle workers get heartbeats")
        before = heartbeats.copy()
        deadline = time.monotonic() + 20
        i = 0
        while heartbeats[idle] - before[idle] < 6:  # six rounds while ``busy`` gets work
            assert time.monotonic() < deadline, "the idle worker got no heartbeats"
            assert e.submit(inc, i, workers=[busy], pure=False).result() == i + 1
            i += 1
        assert heartbeats[busy] - before[busy] <= 1  # (one if the machine stalled a round)
