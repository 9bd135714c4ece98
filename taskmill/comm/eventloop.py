"""Event loop selection: uvloop when it is installed, asyncio's otherwise.

Theory of operation
-------------------
uvloop roughly quarters the cost of a loopback round trip, so every taskmill
process runs its asyncio code through :func:`run` (or a loop from
:func:`new_event_loop`).  Setting ``TASKMILL_EVENT_LOOP=asyncio`` forces the
standard loop, e.g. to compare the two or to debug (the option
``comm.event-loop`` of :mod:`taskmill.config`; reading it builds the
configuration, so the first loop of a process pays for that once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from taskmill import config
from taskmill.config_checks import choice

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new uvloop loop if uvloop imports (and is not disabled), else asyncio's."""
    if config.read("comm.event-loop", choice("uvloop", "asyncio")) == "uvloop":
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
