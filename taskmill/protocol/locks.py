"""The request ops of the scheduler's waiting primitives: ``Lock``,
``Semaphore`` and ``Event`` (:mod:`taskmill.client.locks`).

Theory of operation
-------------------
Part of the vocabulary of :mod:`taskmill.protocol.vocabulary`, which imports
this module last (so its ops come last in ``docs/protocol.md``) and
re-exports its classes.  Every op is a request from a client (a task uses its
worker's client) to the scheduler, answered by :mod:`taskmill.server.locks`.
A request that must wait (``lock-acquire``, ``event-wait``) is answered when
it is granted or its ``timeout`` passes, on its own connection: the client
never polls.  Requests carry the client's id because they do not travel on
its stream: the scheduler ties leases to the client's session and frees them
when that session closes.  ``primitive`` is ``"Lock"`` or ``"Semaphore"``.
"""

from __future__ import annotations

from taskmill.frozen import frozen
from taskmill.protocol.wire_types import CLIENT, SCHEDULER, Message, message

__all__ = [
    "LockAcquire",
    "LockRelease",
    "LockValue",
    "LockClose",
    "LockRefresh",
    "EventSet",
    "EventClear",
    "EventIsSet",
    "EventWait",
]

#: the kinds of primitive (``primitive`` of the lock requests, the scheduler's entries)
LOCK, SEMAPHORE, EVENT = "Lock", "Semaphore", "Event"


@message("lock-acquire", CLIENT, SCHEDULER, kind="request")
@frozen
class LockAcquire(Message):
    """Ask for the lease ``lease`` (unique per call) of the lock or semaphore
    ``name``, waiting up to ``timeout`` seconds (None: until granted);
    -> {"granted": bool, "lease_timeout": seconds a silent holder keeps it, or None}."""

    primitive: str
    name: str
    lease: str
    client: str
    max_leases: int = 1
    timeout: float | None = None


@message("lock-release", CLIENT, SCHEDULER, kind="request")
@frozen
class LockRelease(Message):
    """Free the held ``lease`` (or withdraw a waiting one); -> "OK", or a
    RuntimeError when the lease is not held (released already, or expired)."""

    primitive: str
    name: str
    lease: str


@message("lock-value", CLIENT, SCHEDULER, kind="request")
@frozen
class LockValue(Message):
    """-> how many leases of the lock or semaphore ``name`` are held now."""

    primitive: str
    name: str


@message("lock-close", CLIENT, SCHEDULER, kind="request")
@frozen
class LockClose(Message):
    """Forget the lock or semaphore ``name`` (``Semaphore.close``): its
    waiters get False, its leases vanish; -> how many leases were held."""

    primitive: str
    name: str


@message("lock-refresh", CLIENT, SCHEDULER, kind="request")
@frozen
class LockRefresh(Message):
    """``client`` is alive: its leases start their lease timeout again;
    -> how many it holds."""

    client: str


@message("event-set", CLIENT, SCHEDULER, kind="request")
@frozen
class EventSet(Message):
    """Set the event ``name``, waking every waiter; -> "OK"."""

    name: str


@message("event-clear", CLIENT, SCHEDULER, kind="request")
@frozen
class EventClear(Message):
    """Clear the event ``name``; -> "OK"."""

    name: str


@message("event-is-set", CLIENT, SCHEDULER, kind="request")
@frozen
class EventIsSet(Message):
    """-> whether the event ``name`` is set."""

    name: str


@message("event-wait", CLIENT, SCHEDULER, kind="request")
@frozen
class EventWait(Message):
    """Wait (the wait ``request``, unique per call) until the event ``name``
    is set, at most ``timeout`` seconds (None: no limit); -> whether it is set."""

    name: str
    request: str
    client: str
    timeout: float | None = None
