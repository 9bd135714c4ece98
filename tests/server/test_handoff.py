"""The worker's hand-off queue: items reach waiting threads in order, once each."""

from __future__ import annotations

import asyncio
import gc
import os
import threading

import pytest

from taskmill.server.handoff import HandOff, LoopInbox

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


def test_the_loop_inbox_runs_on_drained_after_each_run_of_its_callbacks() -> None:
    """Callbacks posted while the loop is busy run together, in order, and
    ``on_drained`` runs once after them (the worker's one machine pass)."""
    seen: list[object] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        drained = asyncio.Event()

        def on_drained() -> None:
            seen.append("drained")
            drained.set()

        inbox = LoopInbox(loop, on_drained)
        poster = threading.Thread(target=lambda: [inbox.post(seen.append, i) for i in range(3)])
        poster.start()
        poster.join(10)  # the loop is blocked here: all three wait for one run
        await asyncio.wait_for(drained.wait(), 10)
        inbox.close()
        with pytest.raises(RuntimeError, match="closed"):
            inbox.post(seen.append, 3)

    asyncio.run(main())
    assert seen == [0, 1, 2, "drained"]
