"""What one client session knows about one key: shared by all its Futures."""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

from taskmill.client.future import PENDING

if TYPE_CHECKING:
    from taskmill.client.future import Future


class KeyState:
    """Status, location and (once fetched) value of a key, for one session.

    Mutated only on the session's event loop thread, except ``refcount`` and
    ``futures`` which the session guards with its lock.
    """

    __slots__ = (
        "key", "status", "refcount", "futures", "who_has", "type_name",
        "exception", "traceback", "value", "has_value", "_done", "_arrived",
    )

    def __init__(self, key: str) -> None:
        self.key = key
        self.status = PENDING
        self.refcount = 0
        self.futures: weakref.WeakSet[Future] = weakref.WeakSet()
        self.who_has: tuple[str, ...] = ()
        self.type_name = ""
        self.exception: BaseException | None = None
        self.traceback: str | None = None
        self.value: Any = None
        self.has_value = False
        self._done: asyncio.Event | None = None
        self._arrived: asyncio.Event | None = None

    @property
    def done_event(self) -> asyncio.Event:
        """Set while the key is in a terminal state (loop thread only)."""
        if self._done is None:
            self._done = asyncio.Event()
            if self.status != PENDING:
                self._done.set()
        return self._done

    @property
    def arrived_event(self) -> asyncio.Event:
        """Set each time the scheduler reports the key in memory (loop thread only)."""
        if self._arrived is None:
            self._arrived = asyncio.Event()
        return self._arrived
