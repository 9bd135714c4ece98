"""Records, states and legal transitions of the worker state machine.

Theory of operation
-------------------
A key known to a worker has one :class:`TaskRecord`, in one of the states
below (``released`` is the pseudo-state of a key without a record).
``TRANSITIONS`` lists every legal state change; the machine's books
(:mod:`taskmill.core.worker.bookkeeping`) check each change against it and
raise :class:`InvalidWorkerTransition`, with the key's story, on any other.
See :mod:`taskmill.core.worker.state` for what each state means and which
events move records between them.

Determinism: the machine must be a pure function of its events *in every
process*, because a stimulus log is replayed in another process than the one
that wrote it, and Python salts ``hash(str)`` per process
(``PYTHONHASHSEED``): a ``set`` of keys or addresses iterates in a different
order in each process.  So every collection of keys or addresses that the
machine iterates is a ``dict[..., None]``, an insertion-ordered set (the
scheduler's records follow the same rule): a record's ``waiting``,
``dependents`` and ``who_has``, the fetch queue's ``has_what`` and the books'
``_missing``.  The order in which they are walked decides which dependents
become ready first (their ``seq`` breaks priority ties in the ready heap),
the order of ``AskWhoHas`` keys and of the story.  A plain ``set`` is kept
only where nothing iterates it in the machine (membership tests and sizes:
the books' ``executing`` and ``in_memory``, delivered function tokens); each
says so where it is declared.
"""

from __future__ import annotations

from taskmill.protocol.vocabulary import (
    Address,
    ComputeTask,
    Key,
    Priority,
)

__all__ = [
    "TRANSITIONS",
    "InvalidWorkerState",
    "InvalidWorkerTransition",
    "StoryEntry",
    "TaskRecord",
]

RELEASED = "released"  # pseudo-state: no record (new, or forgotten)
WAITING = "waiting"
READY = "ready"
EXECUTING = "executing"
MEMORY = "memory"
ERROR = "error"
FETCH = "fetch"
FLIGHT = "flight"
MISSING = "missing"
CANCELLED = "cancelled"

#: Every legal (start, finish) state change.  ``released`` stands for "no
#: record": creation starts from it and forgetting ends in it.
TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {
        (RELEASED, WAITING),
        (RELEASED, READY),
        (RELEASED, FETCH),
        (RELEASED, MISSING),
        (RELEASED, MEMORY),
        (WAITING, READY),
        (WAITING, MEMORY),
        (WAITING, FETCH),
        (WAITING, MISSING),
        (WAITING, RELEASED),
        (READY, EXECUTING),
        (READY, MEMORY),
        (READY, FETCH),
        (READY, MISSING),
        (READY, RELEASED),
        (EXECUTING, MEMORY),
        (EXECUTING, ERROR),
        (EXECUTING, CANCELLED),
        (EXECUTING, FETCH),
        (EXECUTING, MISSING),
        (CANCELLED, EXECUTING),
        (CANCELLED, FLIGHT),
        (CANCELLED, MEMORY),
        (CANCELLED, RELEASED),
        (FETCH, FLIGHT),
        (FETCH, MISSING),
        (FETCH, MEMORY),
        (FETCH, WAITING),
        (FETCH, READY),
        (FETCH, RELEASED),
        (FLIGHT, MEMORY),
        (FLIGHT, FETCH),
        (FLIGHT, MISSING),
        (FLIGHT, CANCELLED),
        (FLIGHT, WAITING),
        (FLIGHT, READY),
        (MISSING, FETCH),
        (MISSING, MEMORY),
        (MISSING, WAITING),
        (MISSING, READY),
        (MISSING, RELEASED),
        (MEMORY, RELEASED),
        (ERROR, WAITING),
        (ERROR, READY),
        (ERROR, FETCH),
        (ERROR, MISSING),
        (ERROR, MEMORY),
        (ERROR, RELEASED),
    }
)

#: ``TRANSITIONS`` indexed by start state (a cheaper membership test)
_ALLOWED: dict[str, frozenset[str]] = {
    start: frozenset(f for s, f in TRANSITIONS if s == start) for start, _ in TRANSITIONS
}

StoryEntry = tuple[Key, str, str, str]  # (key, start, finish or note, stimulus_id)
_HeapEntry = tuple[Priority, int, Key]


class InvalidWorkerTransition(RuntimeError):
    """A state change that is not in ``TRANSITIONS``: a bug in this module."""


class InvalidWorkerState(AssertionError):
    """``validate()`` found a broken invariant."""


class TaskRecord:
    """What this worker knows about one key.  Internal, mutable, slotted."""

    __slots__ = (
        "key",
        "state",
        "priority",
        "seq",
        "req",
        "deps",
        "waiting",
        "dependents",
        "who_has",
        "coming_from",
        "nbytes",
        "type_name",
        "start",
        "stop",
        "assigned",
        "held",
        "previous",
    )

    def __init__(self, key: Key, priority: Priority) -> None:
        self.key = key
        self.state = RELEASED
        self.priority = priority
        self.seq = 0  # heap entry generation: entries with another seq are stale
        self.req: ComputeTask | None = None  # until Execute is emitted
        self.deps: tuple[Key, ...] = ()  # inputs still referenced by this task
        # insertion-ordered sets (see "Determinism" in the module docstring)
        self.waiting: dict[Key, None] | None = None  # inputs not in memory yet
        self.dependents: dict[Key, None] | None = None  # pending tasks needing this key
        self.who_has: dict[Address, None] | None = None  # peers holding it (not here)
        self.coming_from: Address | None = None  # peer of the fetch in flight
        self.nbytes = 0
        self.type_name = ""
        self.start = 0.0
        self.stop = 0.0
        self.assigned = False  # the scheduler wants it computed/reported here
        self.held = False  # the scheduler believes the data is here
        self.previous: str | None = None  # state before "cancelled"

    def __repr__(self) -> str:
        return f"<TaskRecord {self.key!r} {self.state}>"
