"""The worker's hand-off queue: items reach waiting threads in order, once each."""

from __future__ import annotations

import gc
import os
import threading

import pytest

from taskmill.server.handoff import HandOff

pytestmark = pytest.mark.timeout(30)


def test_items_reach_waiting_threads_once_each_in_order() -> None:
    q: HandOff[int | None] = HandOff()
    got: list[list[int]] = [[], []]

    def take(mine: list[int]) -> None:
        while (item := q.get()) is not None:
            mine.append(item)

    threads = [threading.Thread(target=take, args=(mine,)) for mine in got]
    for t in threads:
        t.start()
    for i in range(2000):
        q.put(i)
    q.put(None)
    q.put(None)
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    assert sorted(got[0] + got[1]) == list(range(2000))
    assert got[0] == sorted(got[0]) and got[1] == sorted(got[1])  # each thread took them in order


def test_drain_takes_the_queued_items_and_get_then_waits_for_the_next() -> None:
    q: HandOff[str] = HandOff()
    q.put("a")
    q.put("b")
    assert q.drain() == ["a", "b"]
    assert q.drain() == []
    q.put("c")  # the drained items' wake-ups are still in the pipe: get skips them
    assert q.get() == "c"


def test_its_pipe_is_closed_when_collected() -> None:
    q: HandOff[int] = HandOff()
    fds = (q._read_fd, q._write_fd)
    del q
    gc.collect()
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)
