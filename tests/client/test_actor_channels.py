"""Actor calls from a blocking Executor's threads go over the calling
thread's own connections (taskmill.client.actor_channels): in order,
pipelined, readable from another thread, one connection per actor, bounded,
and closed with the Executor."""

from __future__ import annotations

import threading
import time

import pytest

from taskmill import Executor
from taskmill.client import actor_channels
from tests.client.test_actors import DEADLINE, Counter, released

pytestmark = pytest.mark.timeout(60)


def test_a_threads_calls_use_its_own_channel_and_come_back_in_order(executor: Executor) -> None:
    a = executor.submit(Counter, actor=True).result(DEADLINE)
    calls = [a.record(i) for i in range(300)]  # written at once, read as asked for
    assert len(executor.session.blocking_channels) == 1
    assert calls[-1].result(DEADLINE) == 300  # reading the last hands every earlier one over
    assert all(c.done() for c in calls)
    assert [c.result(0) for c in calls] == list(range(1, 301))


def test_a_result_can_be_read_from_another_thread(executor: Executor) -> None:
    a = executor.submit(Counter, actor=True).result(DEADLINE)
    calls = [a.increment() for _ in range(20)]
    got: list[int] = []
    readers = [threading.Thread(target=lambda c=c: got.append(c.result(DEADLINE)))
               for c in reversed(calls)]
    for r in readers:
        r.start()
    for r in readers:
        r.join(DEADLINE)
    assert sorted(got) == list(range(1, 21))


def test_a_long_call_on_one_actor_does_not_hold_up_another_on_the_same_worker(
        executor: Executor) -> None:
    worker = executor.cluster.workers[0].address
    slow = executor.submit(Counter, actor=True, workers=[worker]).result(DEADLINE)
    fast = executor.submit(Counter, actor=True, workers=[worker]).result(DEADLINE)
    released.clear()
    held = slow.wait_released()
    try:
        assert fast.increment().result(DEADLINE) == 1  # its own channel: not behind `held`
        assert not held.done()
    finally:
        released.set()
    assert held.result(DEADLINE) is True


def test_a_done_check_reads_what_arrived_without_waiting(executor: Executor) -> None:
    a = executor.submit(Counter, actor=True).result(DEADLINE)
    released.clear()
    held = a.wait_released()
    assert not held.done()
    released.set()
    deadline = time.monotonic() + DEADLINE
    while not held.done():  # polls the channel: no result() needed
        assert time.monotonic() < deadline, "done() never read the reply"
    assert held.result(0) is True


def test_channels_per_thread_are_bounded(executor: Executor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actor_channels, "MAX_CHANNELS", 2)
    actors = [executor.submit(Counter, actor=True).result(DEADLINE) for _ in range(4)]
    for a in actors:
        assert a.increment().result(DEADLINE) == 1
    assert len(executor.session.blocking_channels) == 2  # the least recently used idle ones closed
    assert actors[0].increment().result(DEADLINE) == 2  # reopened on demand


def test_closing_the_executor_closes_its_channels() -> None:
    e = Executor(n_workers=1, threads_per_worker=1, processes=False, set_as_default=False)
    try:
        a = e.submit(Counter, actor=True).result(DEADLINE)
        assert a.increment().result(DEADLINE) == 1
        session = e.session
        (channel,) = session.blocking_channels
    finally:
        e.close()
    assert channel.broken and channel.comm.sock.fileno() == -1
    assert not session.blocking_channels


class Blobs:
    """Replies big enough to fill the socket buffers of a pipelined burst."""

    def blob(self, i: int) -> bytes:
        return i.to_bytes(4, "big") * 4096  # 16 kB


def test_a_burst_bigger_than_the_socket_buffers_does_not_deadlock(executor: Executor) -> None:
    # the worker answers each request before reading the next; a writer that
    # did not take replies in while the worker waited on it would wait forever
    b = executor.submit(Blobs, actor=True).result(DEADLINE)
    calls = [b.blob(i) for i in range(3000)]  # 48 MB of replies
    assert [c.result(DEADLINE)[:4] for c in calls] == [i.to_bytes(4, "big") for i in range(3000)]
