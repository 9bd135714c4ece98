"""The scheduler's stream marks (a value sent with keys waits for its mark to
come through the sender's stream): marks nobody takes up do not pile up."""

from __future__ import annotations

import asyncio
from typing import Any

from taskmill.core.scheduler.events import StreamMarked
from taskmill.server.shared_values import SharedValuesShell


def shell() -> SharedValuesShell:
    def serve(handlers: Any) -> None:
        pass

    return SharedValuesShell(serve, lambda *events: None, lambda what: what)


def test_a_mark_whose_request_never_comes_is_dropped_after_the_request_timeout(
        set_options: Any) -> None:
    set_options({"comm.timeouts.request": 0.05})

    async def main() -> None:
        s = shell()
        s.marked(StreamMarked("sid", "client-a", "m1"))
        assert ("client-a", "m1") in s._marks
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while s._marks and loop.time() < deadline:  # the (tiny) request timeout's timer fires
            await asyncio.sleep(0.01)
        assert s._marks == {}

    asyncio.run(main())


def test_a_mark_that_came_first_lets_its_request_go_on_and_is_gone_after() -> None:
    async def main() -> None:
        s = shell()
        s.marked(StreamMarked("sid", "client-a", "m1"))
        await s._after_mark("client-a", "m1")  # already through: no wait
        assert s._marks == {}

    asyncio.run(main())


def test_a_departing_client_takes_its_marks_along() -> None:
    async def main() -> None:
        s = shell()
        s.marked(StreamMarked("sid", "client-a", "m1"))
        s.marked(StreamMarked("sid", "client-b", "m2"))
        s.client_left("client-a")
        assert list(s._marks) == [("client-b", "m2")]

    asyncio.run(main())
