"""Same-loop links: delivery at once or per loop turn, order, ownership, closing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskmill.comm import CommClosedError, run
from taskmill.comm.local import LocalEnd, local_link

pytestmark = pytest.mark.timeout(30)


def connected() -> tuple[LocalEnd, LocalEnd, list[list[Any]], list[str]]:
    a, b = local_link(asyncio.get_running_loop(), "a", "b")
    got: list[list[Any]] = []
    closed: list[str] = []
    b.on_messages = got.append
    a.on_close = lambda: closed.append("a")
    b.on_close = lambda: closed.append("b")
    return a, b, got, closed


def test_an_idle_link_delivers_at_once_and_a_busy_one_on_the_next_turn_in_order() -> None:
    async def main() -> None:
        a, b, got, _ = connected()
        a.send({"i": 0})
        assert got == [[{"i": 0}]]  # idle: inside send
        a.send({"i": 1}, {"i": 2})
        assert got[1] == [{"i": 1}, {"i": 2}]
        assert a.peer_address == "b" and b.peer_address == "a"

    run(main())


def test_sends_during_a_delivery_wait_for_the_next_turn_and_keep_their_order() -> None:
    async def main() -> None:
        a, b = local_link(asyncio.get_running_loop(), "a", "b")
        log: list[Any] = []

        def b_receives(batch: list[Any]) -> None:
            log.append(("b got", batch))
            if batch == ["ping"]:
                b.send("pong")  # back to a: not inside this delivery
                a.send("more")  # a's own next message waits too
                log.append("b done")

        b.on_messages = b_receives
        a.on_messages = lambda batch: log.append(("a got", batch))
        a.send("ping")
        assert log == [("b got", ["ping"]), "b done"]
        a.send("after")  # queued behind "more", never ahead of it
        await asyncio.sleep(0)
        assert log[2:] == [("b got", ["more", "after"]), ("a got", ["pong"])] or \
            log[2:] == [("a got", ["pong"]), ("b got", ["more", "after"])]
        a.send("idle again")
        assert log[-1] == ("b got", ["idle again"])

    run(main())


def test_messages_sent_before_the_receiver_is_set_arrive_on_the_next_turn() -> None:
    async def main() -> None:
        a, b = local_link(asyncio.get_running_loop(), "a", "b")
        got: list[list[Any]] = []
        a.send("early")
        b.on_messages = got.append
        assert got == []
        await asyncio.sleep(0)
        assert got == [["early"]]

    run(main())


def test_a_failing_receiver_goes_to_the_loop_not_to_the_sender() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = local_link(loop, "a", "b")
        seen: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _, context: seen.append(context))

        def broken(batch: list[Any]) -> None:
            raise ValueError("receiver bug")

        b.on_messages = broken
        a.send("x")  # does not raise
        assert isinstance(seen[0]["exception"], ValueError)
        got: list[list[Any]] = []
        b.on_messages = got.append
        a.send("y")  # the link is idle again
        assert got == [["y"]]

    run(main())


def test_messages_are_handed_over_not_copied() -> None:
    async def main() -> None:
        a, _, got, _ = connected()
        msg = {"op": "x", "payload": [1, 2]}
        a.send(msg)
        await asyncio.sleep(0)
        assert got[0][0] is msg

    run(main())


def test_both_directions_are_independent() -> None:
    async def main() -> None:
        a, b, got_b, _ = connected()
        got_a: list[list[Any]] = []
        a.on_messages = got_a.append
        a.send("to b")
        b.send("to a")
        assert got_b == [["to b"]] and got_a == [["to a"]]

    run(main())


def test_close_delivers_what_is_queued_then_tells_the_other_end_once() -> None:
    async def main() -> None:
        a, b, got, closed = connected()
        b.on_messages = lambda batch: (got.append(batch), a.send("last words"))
        a.send("first")  # its receiver sends again: that one waits in a's outbox
        await a.close()
        assert got == [["first"], ["last words"]]
        assert a.closed() and b.closed()
        await asyncio.sleep(0)
        assert closed == ["b"]
        await a.close()
        b.abort()
        await asyncio.sleep(0)
        assert closed == ["b"]
        with pytest.raises(CommClosedError, match="local link to b is closed"):
            a.send("too late")
        with pytest.raises(CommClosedError):
            b.send("too late")

    run(main())


def test_abort_drops_what_is_queued() -> None:
    async def main() -> None:
        a, b, got, closed = connected()
        b.on_messages = lambda batch: (got.append(batch), a.send("dropped"))
        a.send("kept")
        b.abort()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert got == [["kept"]] and closed == ["a"]
        assert "closed" in repr(a)

    run(main())


def test_an_end_that_delivers_at_the_end_of_the_turn_sends_one_batch_in_order() -> None:
    async def main() -> None:
        a, b = local_link(asyncio.get_running_loop(), "a", "b", b_at_once=False)
        got_a: list[list[Any]] = []
        got_b: list[list[Any]] = []
        a.on_messages, b.on_messages = got_a.append, got_b.append
        b.send("one")
        b.send("two", "three")
        assert got_a == []  # not inside send
        a.send("at once")  # the other end still delivers at once
        assert got_b == [["at once"]]
        await asyncio.sleep(0)
        assert got_a == [["one", "two", "three"]]

    run(main())
