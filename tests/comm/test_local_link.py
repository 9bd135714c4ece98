"""Same-loop links: batching per loop turn, order, ownership, closing."""

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


def test_messages_of_one_turn_arrive_together_on_the_next_turn_in_order() -> None:
    async def main() -> None:
        a, b, got, _ = connected()
        a.send({"i": 0})
        a.send({"i": 1}, {"i": 2})
        assert got == []  # never synchronously
        await asyncio.sleep(0)
        assert got == [[{"i": 0}, {"i": 1}, {"i": 2}]]
        a.send({"i": 3})
        await asyncio.sleep(0)
        assert got[1] == [{"i": 3}]
        assert a.peer_address == "b" and b.peer_address == "a"

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
        await asyncio.sleep(0)
        assert got_b == [["to b"]] and got_a == [["to a"]]

    run(main())


def test_close_delivers_what_is_queued_then_tells_the_other_end_once() -> None:
    async def main() -> None:
        a, b, got, closed = connected()
        a.send("last words")
        await a.close()
        assert got == [["last words"]]
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
        a.send("dropped")
        b.abort()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert got == [] and closed == ["a"]
        assert "closed" in repr(a)

    run(main())
