"""Who holds, who waits and who is woken: the decisions behind ``Lock``,
``Semaphore`` and ``Event``, held by the scheduler.

Theory of operation
-------------------
:class:`Coordination` is a pure, deterministic state machine: the scheduler's
shell (:mod:`taskmill.server.locks`) calls one method per request or event,
passing the time as a number (seconds on any monotonic clock), and gets back
the :class:`Answer` s to send: each the reply to a request that was waiting.
Nothing here sleeps, reads a clock or touches a socket.

* A **Lock** is a semaphore of one lease; a **Semaphore** of ``max_leases``.
  Each ``acquire`` carries a lease id made by the caller (unique per call).
  It is granted at once when a lease is free and nobody waits before it;
  otherwise it waits in arrival order (FIFO: no waiter starves), answered
  ``True`` when a release hands it the lease, or ``False`` when its deadline
  passes.  A ``timeout`` of 0 never waits.
* ``release(lease)`` frees a held lease (the next waiters get it) or
  withdraws a waiting one (a caller that gave up, answered ``False``).  A
  lease neither held nor waiting is a ``RuntimeError`` that says why it may
  have gone (released already, or expired).
* Leases belong to a client.  :meth:`Coordination.client_left` frees every
  lease of a client whose session closed (a task's client is its worker's,
  so a killed worker frees its tasks' leases at once) and drops its waiters.
  A client that stays connected but goes silent keeps its leases only while
  it refreshes them: each lease expires ``lease_timeout`` seconds after its
  grant or its client's last :meth:`Coordination.refresh` (None: never).
* ``close(kind, name)`` (``Semaphore.close``) forgets the lock or semaphore
  at once: its waiters are answered ``False``, its held leases vanish (their
  release is then the RuntimeError above), and the number of leases that
  were still held is returned, for the caller to warn about.
* An **Event** is a flag and its waiters: ``set`` answers every waiter
  ``True``; ``wait`` on a set event is answered at once.
* One name is one primitive: the registry of names is shared by the three
  kinds, and a name in use by one kind is refused to another with a
  ``ValueError`` naming both.  A name is in use while its lock or semaphore
  has holders or waiters, or its event is set or waited on; then it is
  forgotten (an idle lock and a never-seen one are the same).
* :meth:`Coordination.tick` ends what is due at ``now`` (deadlines passed,
  leases expired); :meth:`Coordination.next_deadline` says when to call it
  next.  Both scan every waiter and lease: the counts are those of the user's
  primitives, not of tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from taskmill.protocol.locks import EVENT, LOCK, SEMAPHORE

__all__ = ["LOCK", "SEMAPHORE", "EVENT", "Answer", "Coordination"]


@dataclass(frozen=True, slots=True)
class Answer:
    """The reply to the waiting request ``request`` (a lease id or an event
    wait id): ``granted`` is True when acquired / the event was set."""

    request: str
    granted: bool


@dataclass(slots=True)
class _Waiter:
    client: str
    deadline: float | None


@dataclass(slots=True)
class _Lease:
    client: str
    expires: float | None


@dataclass(slots=True)
class _Leases:
    """A lock or a semaphore: its held leases and its queue, both in order."""

    kind: str
    max_leases: int
    held: dict[str, _Lease] = field(default_factory=dict)
    waiting: dict[str, _Waiter] = field(default_factory=dict)


@dataclass(slots=True)
class _Flag:
    """An event: whether it is set, and who waits for it."""

    is_set: bool = False
    waiting: dict[str, _Waiter] = field(default_factory=dict)


#: which holders or waiters to drop (see ``Coordination._drop``)
_Pred = Callable[[Any], bool]


class Coordination:
    """The scheduler's locks, semaphores and events (module docstring)."""

    def __init__(self, lease_timeout: float | None = 30.0) -> None:
        if lease_timeout is not None and not lease_timeout > 0:
            raise ValueError(f"lease_timeout must be a number of seconds > 0 or None, "
                             f"not {lease_timeout!r}")
        self.lease_timeout = lease_timeout
        self.names: dict[str, _Leases | _Flag] = {}
        #: the kind of primitive another holder of names (the scheduler's
        #: queues and variables) uses ``name`` for, or None
        self.taken_elsewhere: Callable[[str], str | None] = _nowhere

    def kind_of(self, name: str) -> str | None:
        """The kind of primitive using ``name`` here (``"Lock"``...), or None."""
        entry = self.names.get(name)
        if entry is None:
            return None
        return entry.kind if isinstance(entry, _Leases) else EVENT

    # ------------------------------------------------------------------ #
    # Locks and semaphores
    # ------------------------------------------------------------------ #
    def acquire(self, kind: str, name: str, lease: str, client: str, *, max_leases: int,
                now: float, timeout: float | None) -> list[Answer]:
        """Ask for a lease of ``name``: answered now, or later (returns [])."""
        if kind not in (LOCK, SEMAPHORE):
            raise ValueError(f"acquire: kind must be {LOCK!r} or {SEMAPHORE!r}, not {kind!r}")
        if isinstance(max_leases, bool) or not isinstance(max_leases, int) or max_leases < 1:
            raise ValueError(f"{kind} {name!r}: max_leases must be an int >= 1, not {max_leases!r}")
        if timeout is not None and timeout < 0:
            raise ValueError(f"{kind} {name!r}: timeout must be >= 0 seconds or None, not {timeout!r}")
        entry = self._entry(kind, name, max_leases)
        assert isinstance(entry, _Leases)
        if entry.max_leases != max_leases:
            raise ValueError(
                f"Semaphore {name!r} is in use with max_leases={entry.max_leases}; it cannot be "
                f"acquired with max_leases={max_leases}: give every Semaphore of one name the "
                "same max_leases")
        if lease in entry.held or lease in entry.waiting:
            raise ValueError(f"{kind} {name!r}: lease {lease!r} was asked for twice")
        if not entry.waiting and len(entry.held) < entry.max_leases:
            entry.held[lease] = _Lease(client, self._expiry(now))
            return [Answer(lease, True)]
        if timeout == 0:
            return [Answer(lease, False)]
        entry.waiting[lease] = _Waiter(client, None if timeout is None else now + timeout)
        return []

    def release(self, kind: str, name: str, lease: str, now: float) -> list[Answer]:
        """Free the held ``lease`` (waiters get it) or withdraw the waiting
        one (answered False)."""
        entry = self.names.get(name)
        if isinstance(entry, _Leases) and entry.kind == kind:
            if entry.held.pop(lease, None) is not None:
                return self._grant(name, entry, now)
            if entry.waiting.pop(lease, None) is not None:
                self._forget_if_idle(name)
                return [Answer(lease, False)]
        why = (f"the lock {name!r} is not held by this Lock object (never acquired, released "
               f"already, or" if kind == LOCK else
               f"Semaphore {name!r} has no such lease (released already, or")
        raise RuntimeError(f"{why} its holder went silent for more than the lease timeout of "
                           f"{self.lease_timeout} s, or its client disconnected, and it expired)")

    def close(self, kind: str, name: str) -> tuple[list[Answer], int]:
        """Forget the lock or semaphore ``name``: its waiters are answered
        False; -> (those answers, how many leases were still held)."""
        entry = self.names.get(name)
        if not isinstance(entry, _Leases) or entry.kind != kind:
            self._check_kind(kind, name)
            return [], 0
        del self.names[name]
        return [Answer(request, False) for request in entry.waiting], len(entry.held)

    def value(self, kind: str, name: str) -> int:
        """How many leases of ``name`` are held now (0 for an unknown name)."""
        entry = self.names.get(name)
        if isinstance(entry, _Leases) and entry.kind == kind:
            return len(entry.held)
        self._check_kind(kind, name)
        return 0

    def refresh(self, client: str, now: float) -> int:
        """``client`` is alive: its leases expire ``lease_timeout`` from now.
        Returns how many it holds."""
        count = 0
        for entry in self.names.values():
            if isinstance(entry, _Leases):
                for held in entry.held.values():
                    if held.client == client:
                        held.expires = self._expiry(now)
                        count += 1
        return count

    # ------------------------------------------------------------------ #
    # Events
    # ------------------------------------------------------------------ #
    def set_event(self, name: str) -> list[Answer]:
        """Set the event: every waiter is answered True."""
        entry = self._entry(EVENT, name, 0)
        assert isinstance(entry, _Flag)
        entry.is_set = True
        answers = [Answer(request, True) for request in entry.waiting]
        entry.waiting.clear()
        return answers

    def clear_event(self, name: str) -> None:
        """Clear the event (waits wait again)."""
        entry = self.names.get(name)
        if isinstance(entry, _Flag):
            entry.is_set = False
            self._forget_if_idle(name)
        else:
            self._check_kind(EVENT, name)

    def is_set(self, name: str) -> bool:
        """Whether the event is set."""
        entry = self.names.get(name)
        self._check_kind(EVENT, name)
        return isinstance(entry, _Flag) and entry.is_set

    def wait_event(self, name: str, request: str, client: str, *, now: float,
                   timeout: float | None) -> list[Answer]:
        """Wait for the event to be set: answered now, or later (returns [])."""
        if timeout is not None and timeout < 0:
            raise ValueError(f"Event {name!r}: timeout must be >= 0 seconds or None, not {timeout!r}")
        entry = self._entry(EVENT, name, 0)
        assert isinstance(entry, _Flag)
        if entry.is_set or timeout == 0:
            self._forget_if_idle(name)
            return [Answer(request, entry.is_set)]
        if request in entry.waiting:
            raise ValueError(f"Event {name!r}: wait {request!r} was asked for twice")
        entry.waiting[request] = _Waiter(client, None if timeout is None else now + timeout)
        return []

    # ------------------------------------------------------------------ #
    # Time and departures
    # ------------------------------------------------------------------ #
    def client_left(self, client: str, now: float) -> list[Answer]:
        """``client``'s session closed: its leases are freed and its waits
        answered False (nobody reads those answers)."""
        return self._drop(lambda holder: holder.client == client,
                          lambda waiter: waiter.client == client, now)

    def tick(self, now: float) -> list[Answer]:
        """Answer False the waits whose deadline passed and free the leases
        whose holder did not refresh them in time."""
        return self._drop(lambda held: held.expires is not None and held.expires <= now,
                          lambda waiter: waiter.deadline is not None and waiter.deadline <= now,
                          now)

    def next_deadline(self) -> float | None:
        """When :meth:`tick` has something to do next (None: nothing pending)."""
        times: list[float] = []
        for entry in self.names.values():
            times.extend(w.deadline for w in entry.waiting.values() if w.deadline is not None)
            if isinstance(entry, _Leases):
                times.extend(h.expires for h in entry.held.values() if h.expires is not None)
        return min(times, default=None)

    # ------------------------------------------------------------------ #
    # Internals
    # ------------------------------------------------------------------ #
    def _drop(self, lease_gone: _Pred, wait_gone: _Pred, now: float) -> list[Answer]:
        answers: list[Answer] = []
        for name, entry in list(self.names.items()):
            for request in [r for r, w in entry.waiting.items() if wait_gone(w)]:
                del entry.waiting[request]
                answers.append(Answer(request, False))
            if isinstance(entry, _Leases):
                for lease in [lease for lease, h in entry.held.items() if lease_gone(h)]:
                    del entry.held[lease]
                answers.extend(self._grant(name, entry, now))
            else:
                self._forget_if_idle(name)
        return answers

    def _grant(self, name: str, entry: _Leases, now: float) -> list[Answer]:
        """Hand free leases to the first waiters."""
        answers = []
        while entry.waiting and len(entry.held) < entry.max_leases:
            lease = next(iter(entry.waiting))
            waiter = entry.waiting.pop(lease)
            entry.held[lease] = _Lease(waiter.client, self._expiry(now))
            answers.append(Answer(lease, True))
        self._forget_if_idle(name)
        return answers

    def _expiry(self, now: float) -> float | None:
        return None if self.lease_timeout is None else now + self.lease_timeout

    def _entry(self, kind: str, name: str, max_leases: int) -> _Leases | _Flag:
        """The primitive ``name`` of ``kind``, made if new."""
        self._check_kind(kind, name)
        entry = self.names.get(name)
        if entry is None:
            entry = self.names[name] = _Flag() if kind == EVENT else _Leases(kind, max_leases)
        return entry

    def _check_kind(self, kind: str, name: str) -> None:
        entry = self.names.get(name)
        if entry is None:
            other = self.taken_elsewhere(name)
            if other is not None:
                raise ValueError(f"the name {name!r} is in use by a {other}; a {kind} cannot use "
                                 f"it too: give the {kind} another name")
            return
        actual = entry.kind if isinstance(entry, _Leases) else EVENT
        if actual != kind:
            raise ValueError(f"the name {name!r} is in use by a {actual}; a {kind} cannot use it "
                             f"too: give the {kind} another name")

    def _forget_if_idle(self, name: str) -> None:
        entry = self.names.get(name)
        if entry is None or entry.waiting:
            return
        if entry.held if isinstance(entry, _Leases) else entry.is_set:
            return
        del self.names[name]


def _nowhere(name: str) -> str | None:
    return None
