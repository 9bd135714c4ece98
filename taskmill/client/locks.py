"""``Lock``, ``Semaphore`` and ``Event``: waiting primitives held by the
scheduler, shared by every client and task of a cluster.

Theory of operation
-------------------
The objects here hold a name and nothing else that matters across
processes: the scheduler keeps the state (:mod:`taskmill.server.locks`, its
decisions in :mod:`taskmill.core.locks`), and two objects of one name, in
any client or task, are one primitive.  ``name=None`` makes a unique name.
Pickling keeps the name (and a Semaphore's ``max_leases``), so a primitive
passed to a task is the same primitive there; the unpickled object holds no
lease of the original, as in dask.distributed.

The Executor an object talks through is ``client=`` when given, else, at
first use, the running task's (``get_client()``: a task uses its worker's
client) or the most recent open Executor of this process.  With an
asynchronous Executor every method returns an awaitable (``async with``
works); otherwise it blocks.

* ``acquire`` sends one ``lock-acquire`` and waits for its reply: the
  scheduler answers when the lease is granted or the timeout passes.  Each
  call has its own lease id; the object keeps the ids it holds, and
  ``release`` gives back the oldest.  An acquire abandoned by its caller
  (cancelled, or its reply lost) withdraws its lease id, so a grant nobody
  receives does not keep the lock.
* Leases belong to the client's session: when it closes (the Executor
  closes, its process dies, or a task's worker is killed) the scheduler
  frees them at once.  While a client holds leases it refreshes them every
  third of the lease timeout the scheduler gave, so that only a holder that
  stays connected but stops running (a frozen process) loses them, after
  ``$TASKMILL_LEASE_TIMEOUT`` seconds (default 30).
* Where dask.distributed is quiet this module says what is wrong: releasing
  more often than acquiring is a ``RuntimeError`` naming the primitive;
  a name in use by another kind, or a Semaphore name in use with another
  ``max_leases``, is a ``ValueError`` (dask warns and carries on).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
import uuid
import weakref
import warnings
from collections import deque
from collections.abc import Coroutine
from typing import Any

from taskmill import timeouts
from taskmill.client import registry
from taskmill.client.session import Session
from taskmill.comm import CommClosedError
from taskmill.protocol.locks import EVENT, LOCK, SEMAPHORE
from taskmill.errors import SchedulerGoneError
from taskmill.protocol.vocabulary import (
    EventClear,
    EventIsSet,
    EventSet,
    EventWait,
    LockAcquire,
    LockRefresh,
    LockRelease,
    LockClose,
    LockValue,
    Message,
)

__all__ = ["Lock", "Semaphore", "Event"]

logger = logging.getLogger(__name__)


class _Refresher:
    """Keeps the leases of one session alive (module docstring); runs on
    the session's loop only."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.leases: set[str] = set()
        self.task: asyncio.Task[None] | None = None

    def add(self, lease: str, lease_timeout: float | None) -> None:
        self.leases.add(lease)
        if lease_timeout is not None and self.task is None:
            self.task = asyncio.ensure_future(self._run(lease_timeout / 3))

    async def _run(self, interval: float) -> None:
        session = self.session
        while self.leases and session.status == "running":
            await asyncio.sleep(interval)
            if not self.leases or session.status != "running":
                break
            try:
                await session.scheduler_call(LockRefresh(session.id))
            except Exception as exc:  # the next round tries again; a lost scheduler ends the session
                logger.warning("could not refresh the Lock/Semaphore leases of %s: %s", session.id, exc)
        self.task = None


_refreshers: weakref.WeakKeyDictionary[Session, _Refresher] = weakref.WeakKeyDictionary()
#: withdrawals of abandoned acquires, kept until done
_withdrawals: set[asyncio.Task[Any]] = set()


def _refresher(session: Session) -> _Refresher:
    refresher = _refreshers.get(session)
    if refresher is None:
        refresher = _refreshers[session] = _Refresher(session)
    return refresher


def _reply_wait(timeout: float | None) -> float | None:
    """How long to wait for the reply to a request the scheduler answers
    within ``timeout`` (None: whenever it comes, while connected)."""
    return None if timeout is None else timeout + timeouts.REQUEST.get()


#: units of a timeout given as text, as dask.distributed accepts ("200ms", "2 s", "1.5min")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$", re.I)


def _check_timeout(what: str, timeout: Any) -> float | None:
    """``timeout`` in seconds: a number, a ``timedelta`` or text such as
    "200ms" (None: no limit); else ValueError naming ``what``."""
    if timeout is None:
        return None
    seconds: float | None = None
    if isinstance(timeout, datetime.timedelta):
        seconds = timeout.total_seconds()
    elif isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        seconds = float(timeout)
    elif isinstance(timeout, str) and (match := _DURATION.match(timeout)):
        unit = _UNITS.get(match.group(2).lower() or "s")
        seconds = None if unit is None else float(match.group(1)) * unit
    if seconds is None or not seconds >= 0:
        raise ValueError(f"{what}: timeout must be seconds >= 0 (a number, a timedelta or text "
                         f"such as '200ms') or None, not {timeout!r}")
    return seconds


class _Primitive:
    """A name on the scheduler and the Executor to reach it through."""

    kind = ""

    def __init__(self, name: str | None, client: Any) -> None:
        if name is None:
            name = f"{self.kind}-{uuid.uuid4().hex}"
        if not isinstance(name, str) or not name:
            raise TypeError(f"{self.kind} name must be a non-empty str or None, not {name!r}")
        self.name = name
        self._client = client

    @property
    def client(self) -> Any:
        """The Executor this object talks through (module docstring)."""
        if self._client is None:  # kept: a lease is released through the client that took it
            self._client = registry.require_client(None, repr(self))
        return self._client

    def _call(self, make: Any, *args: Any) -> Any:
        """``make(session, *args)``: awaited in asynchronous mode, else run."""
        executor = self.client
        coro: Coroutine[Any, Any, Any] = make(executor.session, *args)
        return executor._call(coro)

    def _ask(self, msg: Message) -> Any:
        async def ask(session: Session) -> Any:
            return await session.scheduler_call(msg)

        return self._call(ask)

    async def _wait_on_scheduler(self, session: Session, msg: Message, timeout: float | None) -> Any:
        """Send a request the scheduler answers within ``timeout`` (or when
        granted); a lost scheduler is a SchedulerGoneError naming this object."""
        try:
            return await session.scheduler_call(msg, timeout=_reply_wait(timeout))
        except CommClosedError as exc:
            raise SchedulerGoneError(
                f"{self!r}: the scheduler at {session.scheduler_address} went away while this "
                f"waited ({exc}); the primitives it held are gone with it") from exc

    def __await__(self) -> Any:
        """``await Lock(...)`` gives the object (dask.distributed's idiom)."""
        async def itself() -> Any:
            return self

        return itself().__await__()

    def __repr__(self) -> str:
        return f"<{self.kind}: {self.name}>"


class Semaphore(_Primitive):
    """At most ``max_leases`` holders at a time, across the cluster.

    ``acquire(timeout=None)`` waits for a lease (True) or the timeout
    (False); ``release()`` gives back this object's oldest lease;
    ``get_value()`` is the number of leases held now.  Leases of a holder
    that disconnects are freed at once; of one that goes silent, after the
    lease timeout.  A context manager.
    """

    kind = SEMAPHORE

    def __init__(self, max_leases: int = 1, name: str | None = None, client: Any = None) -> None:
        if isinstance(max_leases, bool) or not isinstance(max_leases, int) or max_leases < 1:
            raise ValueError(f"Semaphore max_leases must be an int >= 1, not {max_leases!r}")
        super().__init__(name, client)
        self.max_leases = max_leases
        self._leases: deque[str] = deque()
        self._closed = False

    def __reduce__(self) -> Any:
        return (Semaphore, (self.max_leases, self.name))

    def acquire(self, timeout: Any = None) -> Any:
        """Wait for a lease, at most ``timeout`` seconds (a number, a
        ``timedelta`` or text such as "200ms"); True when acquired."""
        self._check_open("acquire")
        return self._call(self._acquire, _check_timeout(f"{self!r}.acquire", timeout))

    async def _acquire(self, session: Session, timeout: float | None) -> bool:
        lease = uuid.uuid4().hex
        request = LockAcquire(self.kind, self.name, lease, session.id, self.max_leases, timeout)
        try:
            reply = await self._wait_on_scheduler(session, request, timeout)
        except (asyncio.CancelledError, TimeoutError):  # given up: leave no lease behind
            withdraw = asyncio.ensure_future(self._withdraw(session, lease))
            _withdrawals.add(withdraw)
            withdraw.add_done_callback(_withdrawals.discard)
            raise
        if not reply["granted"]:
            return False
        self._leases.append(lease)
        _refresher(session).add(lease, reply["lease_timeout"])
        return True

    async def _withdraw(self, session: Session, lease: str) -> None:
        try:
            await session.scheduler_call(LockRelease(self.kind, self.name, lease))
        except Exception as exc:  # answered meanwhile and released, or the session is gone
            logger.debug("withdrawing %s lease %s: %s", self, lease, exc)

    def release(self) -> Any:
        """Give back this object's oldest lease (True).  Without one, or when
        it expired: RuntimeError."""
        self._check_open("release")
        try:
            lease = self._leases.popleft()
        except IndexError:
            raise RuntimeError(f"{self!r} was released more often than it was acquired: this "
                               f"{self.kind} object holds no lease (release it from the object "
                               "that acquired it)") from None
        return self._call(self._release, lease)

    async def _release(self, session: Session, lease: str) -> bool:
        _refresher(session).leases.discard(lease)
        await session.scheduler_call(LockRelease(self.kind, self.name, lease))
        return True

    def close(self) -> Any:
        """Forget this semaphore on the scheduler at once, as dask.distributed's
        hard close: callers waiting in ``acquire`` get False, the leases still
        held vanish (a RuntimeWarning says how many other holders had; their
        ``release`` then raises), and this object can no longer be used.  A new object of the
        same name starts afresh."""
        self._closed = True
        return self._call(self._close)

    async def _close(self, session: Session) -> None:
        refresher = _refresher(session)
        own = len(self._leases)
        for lease in self._leases:
            refresher.leases.discard(lease)
        self._leases.clear()
        held = await session.scheduler_call(LockClose(self.kind, self.name))
        if held > own:
            warnings.warn(f"{self!r} was closed while {held - own} lease(s) of other holders "
                          "were still held; their "
                          "holders' release() will raise RuntimeError", RuntimeWarning, stacklevel=2)

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r}.{what}(): it was closed; make a new "
                               f"{self.kind}({self.name!r}) to use the name again")

    def get_value(self) -> Any:
        """How many leases are held now (by anyone)."""
        return self._ask(LockValue(self.kind, self.name))

    def __enter__(self) -> Semaphore:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> Semaphore:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()


class Lock(Semaphore):
    """A lock held by the scheduler: one holder at a time, across the cluster.

    ``acquire(blocking=True, timeout=None)`` -> True when acquired, False
    when ``blocking=False`` and held, or when the timeout passed;
    ``release()`` (a ``RuntimeError`` if this object does not hold it);
    ``locked()``.  Not reentrant.  A context manager.
    """

    kind = LOCK

    def __init__(self, name: str | None = None, client: Any = None) -> None:
        super().__init__(1, name, client)

    def __reduce__(self) -> Any:
        return (Lock, (self.name,))

    def acquire(self, blocking: bool = True, timeout: Any = None) -> Any:  # type: ignore[override]
        """Acquire the lock; ``blocking=False`` does not wait."""
        if not blocking:
            if timeout is not None:
                raise ValueError(f"{self!r}.acquire: give a timeout only with blocking=True")
            timeout = 0
        return super().acquire(timeout)

    def locked(self) -> Any:
        """Whether anyone holds the lock now."""
        value = self.get_value()
        if asyncio.iscoroutine(value):
            async def held() -> bool:
                return bool(await value)

            return held()
        return bool(value)


class Event(_Primitive):
    """A flag held by the scheduler: ``set()``, ``clear()``, ``is_set()`` and
    ``wait(timeout=None)`` (True once set, False if the timeout passed)."""

    kind = EVENT

    def __init__(self, name: str | None = None, client: Any = None) -> None:
        super().__init__(name, client)

    def __reduce__(self) -> Any:
        return (Event, (self.name,))

    def set(self) -> Any:
        """Set the flag, waking every waiter."""
        return self._ask(EventSet(self.name))

    def clear(self) -> Any:
        """Clear the flag."""
        return self._ask(EventClear(self.name))

    def is_set(self) -> Any:
        """Whether the flag is set."""
        return self._ask(EventIsSet(self.name))

    def wait(self, timeout: Any = None) -> Any:
        """Wait until the flag is set, at most ``timeout`` (as for
        ``Semaphore.acquire``); whether it is set."""
        return self._call(self._wait, _check_timeout(f"{self!r}.wait", timeout))

    async def _wait(self, session: Session, timeout: float | None) -> bool:
        request = EventWait(self.name, uuid.uuid4().hex, session.id, timeout)
        return bool(await self._wait_on_scheduler(session, request, timeout))
