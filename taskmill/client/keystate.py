"""What one client session knows about one key: shared by all its Futures.

A key's status is one of the states below; a Future of the key reports it
(``Future.status``), the session sets it from the scheduler's reports.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from taskmill.protocol import Serialized

PENDING, FINISHED, ERROR, CANCELLED, LOST = "pending", "finished", "error", "cancelled", "lost"


class PendingFuture(Protocol):
    """What the session does with a key's Futures not completed yet (a
    :class:`taskmill.client.future.Future` fits): it completes them."""

    def done(self) -> bool: ...

    def set_result(self, result: Any) -> None: ...

    def set_exception(self, exception: BaseException | None) -> None: ...

    def _cancel_locally(self) -> bool: ...

    def _sync_running(self) -> None: ...


class KeyState:
    """Status, location and (once fetched) value of a key, for one session.

    Mutated only on the session's event loop thread, except ``refcount`` and
    ``pending`` which the session guards with its lock.
    """

    __slots__ = (
        "key", "status", "refcount", "pending", "running", "who_has", "type_name",
        "exception", "traceback", "value", "has_value", "payload", "waiters", "_arrived",
        "_compact_at",
    )

    def __init__(self, key: str) -> None:
        self.key = key
        self.status = PENDING
        self.refcount = 0
        # The Futures not completed yet, weakly: a Future's garbage collection
        # is what releases the key.  A completed Future is never completed
        # again, so completing empties the list (each Future costs O(1) once).
        self.pending: list[weakref.ref[PendingFuture]] = []
        #: its call runs on a worker, as the scheduler last said (``keys-running``)
        self.running = False
        self._compact_at = 8
        self.who_has: tuple[str, ...] = ()
        self.type_name = ""
        self.exception: BaseException | None = None
        self.traceback: str | None = None
        self.value: Any = None
        self.has_value = False
        #: a small result that came with the scheduler's report, not yet unpickled
        self.payload: Serialized | None = None
        self.waiters: list[KeysWaiter] = []
        self._arrived: asyncio.Event | None = None

    def unpack_payload(self) -> bool:
        """Unpickle a result that came with the in-memory report; True when
        the value is now here.  Safe from any thread: at worst two threads
        unpickle the same bytes."""
        payload = self.payload
        if payload is not None and not self.has_value:
            self.value = payload.deserialize()
            self.has_value = True
            self.payload = None
        return self.has_value

    def user_value(self, session: Any) -> Any:
        """The value as handed to the user.  A value whose class defines
        ``_taskmill_bind(value, session)`` (an actor's proxy, which holds its
        own key) is handed out through it: the cached one must not hold the
        key, or the key would hold itself forever."""
        bind = getattr(type(self.value), "_taskmill_bind", None)
        return self.value if bind is None else bind(self.value, session)

    def add_future(self, fut: PendingFuture) -> None:
        """Remember a new Future of this key (under the session's lock)."""
        refs = self.pending
        if len(refs) >= self._compact_at:  # many came and went: drop the dead references
            refs[:] = [r for r in refs if r() is not None]
            self._compact_at = max(8, 2 * len(refs))  # amortized O(1) per Future
        refs.append(weakref.ref(fut))

    def live_pending(self) -> list[PendingFuture]:
        """The live Futures not completed yet, kept here (under the session's lock)."""
        return [f for f in (r() for r in self.pending) if f is not None]

    def take_pending(self) -> list[PendingFuture]:
        """The live Futures not completed yet, forgotten here: the caller
        completes them now (under the session's lock)."""
        refs, self.pending = self.pending, []
        self._compact_at = 8
        return [f for f in (r() for r in refs) if f is not None]

    def note_arrival(self) -> None:
        """The scheduler reported the key in memory: wake whoever waits for
        that (loop thread only; no Event is made when nobody waits)."""
        if self._arrived is not None:
            self._arrived.set()

    @property
    def arrived_event(self) -> asyncio.Event:
        """Set each time the scheduler reports the key in memory (loop thread only)."""
        if self._arrived is None:
            self._arrived = asyncio.Event()
        return self._arrived


class KeysWaiter:
    """Resolves one asyncio future once every one of a set of keys reached a
    terminal state: one object per ``gather`` instead of one Event per key."""

    __slots__ = ("remaining", "future")

    def __init__(self, states: list[KeyState]) -> None:
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.remaining = 0
        for ks in states:
            if ks.status == PENDING:
                self.remaining += 1
                ks.waiters.append(self)
        if not self.remaining:
            self.future.set_result(None)

    def key_done(self) -> None:
        self.remaining -= 1
        if self.remaining == 0 and not self.future.done():
            self.future.set_result(None)
