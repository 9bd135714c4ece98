"""Event loop selection: uvloop when it is installed, asyncio's otherwise.

Theory of operation
-------------------
uvloop roughly quarters the cost of a loopback round trip, so every taskmill
process runs its asyncio code through :func:`run` (or a loop from
:func:`new_event_loop`).  Setting ``TASKMILL_EVENT_LOOP=asyncio`` forces the
standard loop, e.g. to compare the two or to debug.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new uvloop loop if uvloop imports (and is not disabled), else asyncio's."""
    if os.environ.get("TASKMILL_EVENT_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(coro: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """Like ``asyncio.run(coro)``, on a loop from :func:`new_event_loop`."""
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(coro)
