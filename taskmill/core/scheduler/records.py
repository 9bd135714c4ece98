"""Records the pure scheduler state machine keeps about tasks, workers and clients.

Theory of operation
-------------------
The scheduler machine (``taskmill.core.scheduler.state``) keeps one
:class:`TaskRecord` per known key (in ``TaskMachine.tasks``), one
:class:`WorkerRecord` per live worker (``Membership.workers``) and one
:class:`ClientRecord` per client that wants something (``ClientWants.clients``).  Records point at
each other directly (a task's ``who_has`` holds worker records, a worker's
``has_what`` holds task records), so no lookup by key or address is needed on
hot paths.

Every "set" of records is a ``dict[record, None]``: an insertion-ordered set.
Records hash by identity, so a plain ``set`` would iterate in memory-address
order and the commands the state machine emits would differ from run to run;
ordered dicts keep every run of the same events byte-for-byte reproducible.
Collections of keys or addresses follow the same rule, for a subtler reason:
``hash(str)`` is salted per process, so a set of strings iterates in another
order in the process that replays a stimulus log.  A plain ``set`` appears
only where nothing iterates it (membership tests), and says so.

Memory per task is what limits a scheduler holding millions of keys, so a
task record is kept small.  Its seven link maps (``dependencies`` ...
``acquiring_on``) start as the one shared, frozen :data:`EMPTY` mapping and
a task gets its own dict only when something is first put in it (most map
tasks never have dependencies, dependents, waiters or copies being made):
every read works on ``EMPTY`` as on an empty dict, and so do ``pop(x,
None)``, ``del`` (of a missing key: KeyError) and ``clear()``; putting
something in it raises TypeError, so a writer must replace it first
(``if m is EMPTY: m = ts.x = {}``).  Likewise a task held by one worker
shares that worker's one-entry ``who_has`` map (``WorkerRecord.alone``),
a task with one dependent that dependent's one-entry ``dependents`` map
(``TaskRecord.alone``: the leaves of a reduction, every link of a chain),
and a task wanted by one client that client's one-entry ``who_wants`` map
for the report it got (``ClientRecord.alone``), all :class:`Frozen` dicts
that their writers (``TaskMachine.add_replica``/``remove_replica``,
:func:`link_dependent`/:func:`unlink_dependent`, ``ClientWants``) replace,
never change.  A task's ``priority`` and ``seq`` are read from its
``sort_key``, one flat tuple that holds them (see :func:`sort_key`).  The
task's definition is kept on the record itself (``TaskRecord.define``: the
function's token, shared, the arguments' frame, the actor flag: three slots
cost less than an object of their own), not as the decoded ``TaskSpec`` with
its wire objects; prefixes and tokens are interned, one string for all the
tasks that share them.

Invariants (checked by ``taskmill.core.scheduler.validate``):

* ``ts in ws.has_what``  <=>  ``ws in ts.who_has``; a task is in memory iff
  ``who_has`` is non-empty.  (``has_what`` maps each task held to the
  ``epoch`` its copy was recorded at; ``who_has`` maps each holder to None.)
* ``ws.unacked_frees`` maps each key of ``ws.free_log`` to the latest
  ``epoch`` it was freed with there; ``free_log`` is in ``epoch`` order.
* ``ts.processing_on is ws``  <=>  ``ts in ws.processing``  <=>  state is
  ``processing``; ``ws.used`` is the sum of ``slot_cost`` of ``ws.processing``.
  ``ts.running`` (its worker reported the call started) only while processing.
* ``dts in ts.dependencies``  <=>  ``ts in dts.dependents``.
* ``ts in dts.waiters``  <=>  ``dts in ts.dependencies`` and ``ts`` is active
  (waiting, queued, no-worker or processing): the dependents that still need
  ``dts``'s data.  ``ts.waiting_on`` is the subset of ``ts.dependencies`` not
  in memory, kept only while ``ts`` is active.
* ``client in ts.who_wants``  <=>  ``ts in clients[client].wants``.
* ``ws in ts.acquiring_on``  <=>  ``ts in ws.acquiring``: ``ws`` was told to
  fetch a copy of ``ts`` (replicate, retirement) and has not reported it yet;
  only for tasks in memory, never for a holder.
* ``ws in idle``  <=>  ``ws.used < ws.capacity`` and ``ws`` is neither paused
  nor retiring.
* ``ws.resources_used`` is the sum of ``resources`` of ``ws.processing`` and
  never exceeds ``ws.resources`` (see ``taskmill.core.scheduler.resource_index``).
"""

from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass
from typing import Any, NoReturn

from taskmill.core.resources import ResourceSpec
from taskmill.protocol.serialize import Serialized
from taskmill.protocol.vocabulary import Address, Key, Priority, TaskSpec

#: The workers a task may run on, sorted: hashable, equal however they were
#: listed, and iterated in the same order in every process (a frozenset of
#: strings iterates in hash order, which differs between processes, so a
#: replayed stimulus log could place tasks differently).
Restriction = tuple[Address, ...]


def restriction(workers: tuple[Address, ...] | None) -> Restriction | None:
    """The canonical form of a task's ``workers=``."""
    return None if workers is None else tuple(sorted(set(workers)))

# --------------------------------------------------------------------------- #
# Task states
# --------------------------------------------------------------------------- #
RELEASED = "released"  # known, no data, not being computed (lineage only)
WAITING = "waiting"  # needed; some dependency is not in memory yet
QUEUED = "queued"  # ready, held on the scheduler until a worker has a free slot
NO_WORKER = "no-worker"  # ready, but no live worker satisfies its restrictions
PROCESSING = "processing"  # sent to exactly one worker
MEMORY = "memory"  # held by at least one worker
ERRED = "erred"  # failed (or lost without lineage); keeps its error
FORGOTTEN = "forgotten"  # removed from the scheduler

ALL_STATES = frozenset(
    {RELEASED, WAITING, QUEUED, NO_WORKER, PROCESSING, MEMORY, ERRED, FORGOTTEN}
)
#: States in which a task is still to be computed and needs its inputs.
ACTIVE_STATES = frozenset({WAITING, QUEUED, NO_WORKER, PROCESSING})

# Error types the scheduler itself decides (``KeyErred.error_type``).
KILLED_WORKER = "KilledWorker"
MISSING_DEPENDENCY = "MissingDependencyError"
#: Internal marker: a key without lineage whose last copy is gone.  Clients
#: wanting the key itself get ``KeyLost``; dependents err with
#: ``MissingDependencyError``.
LOST_DATA = "LostData"
#: An actor's object is gone with its worker (never recomputed: its proxies
#: point at the old worker).
ACTOR_LOST = "ActorLostError"

#: How many distinct task prefixes the duration table remembers.
MAX_PREFIXES = 10_000


class Frozen(dict[Any, Any]):
    """A dict nothing can be put in, changed or taken out of: the shared
    :data:`EMPTY`, and the one-entry maps records share (``who_has``,
    ``dependents``, ``who_wants``: see the module docstring).  What would change nothing works as on
    a dict: ``pop(k, default)`` and ``del`` of a missing key, ``clear()``
    of an empty one."""

    __slots__ = ()

    def _frozen(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("this map is shared by many records and never changes (records.Frozen): "
                        "give the record its own dict before changing it")

    __setitem__ = setdefault = update = __ior__ = popitem = _frozen

    def pop(self, key: Any, *default: Any) -> Any:
        """``dict.pop`` of a key it does not hold."""
        if key in self:
            self._frozen()
        return dict.pop(self, key, *default)

    def __delitem__(self, key: Any) -> None:
        if key in self:
            self._frozen()
        raise KeyError(key)

    def clear(self) -> None:
        """Nothing to clear (it is empty) or a TypeError."""
        if self:
            self._frozen()


#: The empty link map every new record shares (see the module docstring).
EMPTY: dict[Any, Any] = Frozen()


#: A task's queue order: its priority's items, :data:`END_OF_PRIORITY`, its ``seq``.
SortKey = tuple[float, ...]
#: Ends a priority in a :data:`SortKey`: below every item, so a priority that
#: is a prefix of another sorts first, as tuples do.
END_OF_PRIORITY = float("-inf")


def sort_key(priority: Priority, seq: int) -> SortKey:
    """The queue order of a task submitted ``seq``-th with ``priority``:
    lower runs first, by priority, then by submission.  Flat (one tuple,
    not ``(priority, seq)``): it orders the same, costs 40 bytes less per
    task, and a comparison in a long queue's heap follows one pointer less."""
    return (*priority, END_OF_PRIORITY, seq)


def key_prefix(key: Key) -> str:
    """The task-name prefix used for duration estimates: the key up to its
    last ``'-'`` (``"inc-4f2a"`` -> ``"inc"``), or the whole key.  A dask
    tuple key travels as its repr; its name is the first element's
    (``"('sum-4f2a', 3)"`` -> ``"sum"``, ``"('x', 7)"`` -> ``"x"``)."""
    whole = key
    if key[:1] == "(" and key[1:2] in ("'", '"'):
        end = key.find(key[1], 2)
        if end > 0:
            key = key[2:end]
    head, sep, _ = key.rpartition("-")
    if sep:
        return sys.intern(head)
    return key if key is whole else sys.intern(key)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why a task is erred; shared by the task that failed and the dependents
    that failed because of it."""

    exception: Any
    traceback: Any
    exception_text: str
    worker: Address = ""
    error_type: str = ""


class TaskRecord:
    """Everything the scheduler knows about one key."""

    __slots__ = (
        "key",
        "prefix",
        "func_token",
        "args",
        "actor",
        "sort_key",
        "retries",
        "restrictions",
        "allow_other_workers",
        "resources",
        "state",
        "dependencies",
        "dependents",
        "waiters",
        "waiting_on",
        "who_has",
        "who_wants",
        "processing_on",
        "running",
        "slot_cost",
        "queue_epoch",
        "nbytes",
        "type_name",
        "error",
        "suspicious",
        "deaths",
        "acquiring_on",
        "alone",
    )

    def __init__(
        self,
        key: Key,
        spec: TaskSpec | None,
        priority: Priority,
        seq: int,
        retries: int = 0,
        restrictions: Restriction | None = None,
        allow_other_workers: bool = False,
        resources: ResourceSpec | None = None,
    ) -> None:
        self.key = key
        self.prefix = key_prefix(key)
        #: how to run it (see ``define``); ``func_token`` None: no definition
        #: (data scattered by a client)
        self.func_token: str | None = None
        self.args: bytes | Serialized | None = None
        self.actor = False
        self.define(spec)
        #: Queue order: user/graph priority first (lower runs first), then
        #: submission order (``seq``); see :func:`sort_key`.
        self.sort_key: SortKey = sort_key(priority, seq)
        self.retries = retries
        self.restrictions = restrictions
        self.allow_other_workers = allow_other_workers
        #: abstract resources it holds on its worker while processing
        self.resources = resources
        self.state = RELEASED
        self.dependencies: dict[TaskRecord, None] = EMPTY
        self.dependents: dict[TaskRecord, None] = EMPTY
        self.waiters: dict[TaskRecord, None] = EMPTY
        self.waiting_on: dict[TaskRecord, None] = EMPTY
        #: its holders (the ``epoch`` each copy was recorded at is in their ``has_what``)
        self.who_has: dict[WorkerRecord, None] = EMPTY
        #: client -> the last terminal report sent to it for this key
        #: ("memory", "erred", "lost") or "" (nothing yet).  Reports are sent
        #: only when they differ from the last one: no duplicates.
        self.who_wants: dict[str, str] = EMPTY
        self.processing_on: WorkerRecord | None = None
        #: its worker reported the call started (``TasksStarted``) and the
        #: wanting clients were told (``KeysRunning``); cleared when it leaves
        #: ``processing``
        self.running = False
        self.slot_cost = 0
        self.queue_epoch = 0
        self.nbytes = -1
        self.type_name = ""
        self.error: ErrorInfo | None = None
        self.suspicious = 0
        #: (worker, reason) of each worker that died while running it
        self.deaths: tuple[tuple[Address, str], ...] = ()
        #: workers told to fetch a copy (``AcquireReplicas``) that have not got it yet
        self.acquiring_on: dict[WorkerRecord, None] = EMPTY
        #: the ``dependents`` of every input of this task that has no other
        #: dependent (shared, see the module docstring; made on first use)
        self.alone: dict[TaskRecord, None] | None = None

    def define(self, spec: TaskSpec | None) -> None:
        """Keep what a ``ComputeTask`` needs of ``spec`` (None: no definition,
        scattered data): the function's token, interned (one string for every
        task of the same function); the arguments' only frame as ``bytes``
        (the common case), else the ``Serialized`` as it came; the actor
        flag.  Its key, priority and options live in other slots, its
        dependencies become links."""
        if spec is None:
            self.func_token = self.args = None
            self.actor = False
            return
        self.func_token = sys.intern(spec.func_token)
        args = spec.args
        self.args = args
        if type(args) is Serialized and len(args.frames) == 1:
            frame = args.frames[0]
            if type(frame) is bytes:
                self.args = frame
        self.actor = spec.actor

    def payload(self) -> Serialized:
        """The arguments, to send in a ``ComputeTask`` (it has a definition)."""
        args = self.args
        assert args is not None, f"task {self.key!r} has no definition"
        return Serialized([args]) if isinstance(args, bytes) else args

    @property
    def priority(self) -> Priority:
        """The priority it was submitted with (lower runs first)."""
        return self.sort_key[:-2]  # type: ignore[return-value]  # its items are the priority's ints

    @property
    def seq(self) -> int:
        """Its place in submission order (the tie-break after ``priority``)."""
        return self.sort_key[-1]  # type: ignore[return-value]  # an int

    def __repr__(self) -> str:
        return f"<TaskRecord {self.key!r} {self.state}>"


def link_dependent(dts: TaskRecord, ts: TaskRecord) -> None:
    """``ts`` depends on ``dts``: put it in ``dts.dependents`` (a first
    dependent's map is the one ``ts`` shares with all its lone inputs)."""
    dependents = dts.dependents
    if type(dependents) is dict:
        dependents[ts] = None
    elif not dependents:
        alone = ts.alone
        if alone is None:
            alone = ts.alone = Frozen({ts: None})
        dts.dependents = alone
    elif ts not in dependents:  # another task's shared map: a dict of its own from now on
        dts.dependents = {**dependents, ts: None}


def unlink_dependent(dts: TaskRecord, ts: TaskRecord) -> None:
    """``ts`` no longer depends on ``dts``: take it out of ``dts.dependents``."""
    dependents = dts.dependents
    if type(dependents) is dict:
        dependents.pop(ts, None)
    elif ts in dependents:  # its shared map
        dts.dependents = EMPTY


class WorkerRecord:
    """One live worker process.  A worker that leaves and comes back at the
    same address gets a new record (its data and function cache are gone)."""

    __slots__ = (
        "address",
        "nthreads",
        "memory_limit",
        "nanny",
        "name",
        "alive",
        "processing",
        "has_what",
        "nbytes",
        "used",
        "capacity",
        "funcs",
        "restricted_queue",
        "memory",
        "last_seen",
        "paused",
        "retiring",
        "acquiring",
        "resources",
        "resources_used",
        "unacked_frees",
        "free_log",
        "incarnation",
        "alone",
    )

    def __init__(
        self,
        address: Address,
        nthreads: int,
        memory_limit: int,
        capacity: int,
        nanny: Address | None = None,
        name: str = "",
        now: float = 0.0,
        resources: dict[str, float] | None = None,
    ) -> None:
        self.address = address
        self.nthreads = nthreads
        self.memory_limit = memory_limit
        self.nanny = nanny
        self.name = name
        self.alive = True
        self.processing: dict[TaskRecord, None] = {}
        #: task held -> the ``epoch`` of the last message to a worker when the
        #: copy was recorded (a ``MissingData`` must be younger to strike it off)
        self.has_what: dict[TaskRecord, int] = {}
        self.nbytes = 0
        #: slot units taken by ``processing`` (see ``taskmill.core.scheduler.policy``)
        self.used = 0
        self.capacity = capacity
        #: func tokens already sent to this worker process (a plain set:
        #: membership tests only, never iterated)
        self.funcs: set[str] = set()
        #: heap of queue entries for tasks restricted to a set of workers
        #: including this one (lazy deletion, see ``policy``; kept by ``Placement``)
        self.restricted_queue: list[tuple[SortKey, int, TaskRecord]] = []
        self.memory = 0
        self.last_seen = now
        #: memory is short there (``Paused``): no new task goes there
        self.paused = False
        #: being retired (``RetireRequested``): no new task, data moves away
        self.retiring = False
        #: tasks it was told to fetch a copy of (see ``TaskRecord.acquiring_on``)
        self.acquiring: dict[TaskRecord, None] = {}
        #: abstract resources it declared (totals), and those its processing tasks hold
        self.resources: dict[str, float] = resources or {}
        self.resources_used: dict[str, float] = {}
        #: the ledger of frees it may not have handled yet: key -> ``epoch`` of
        #: the latest ``FreeKeys`` of it sent here, and those ``FreeKeys`` as
        #: ``(epoch, keys)``, oldest first (see ``crossed``)
        self.unacked_frees: dict[Key, int] = {}
        self.free_log: deque[tuple[int, tuple[Key, ...]]] = deque()
        #: the worker's token of this registration (``RegisterWorker.incarnation``)
        self.incarnation = ""
        #: the ``who_has`` of every task held here only (shared, see the module docstring)
        self.alone: dict[WorkerRecord, None] = Frozen({self: None})

    def freeing(self, keys: tuple[Key, ...], epoch: int) -> None:
        """A ``FreeKeys`` of ``keys`` with ``epoch`` goes to this worker."""
        self.free_log.append((epoch, keys))
        unacked = self.unacked_frees
        for key in keys:
            unacked[key] = epoch

    def acknowledge(self, seen: int) -> None:
        """The worker sent a message after handling the scheduler's message
        ``seen``: it has handled every ``FreeKeys`` up to that one."""
        log = self.free_log
        if log and log[0][0] <= seen:
            unacked = self.unacked_frees
            while log and log[0][0] <= seen:
                epoch, keys = log.popleft()
                for key in keys:
                    if unacked.get(key) == epoch:
                        del unacked[key]

    def crossed(self, key: Key, seen: int) -> bool:
        """Whether a message about ``key`` that the worker sent after handling
        the scheduler's message ``seen`` crossed a ``FreeKeys`` of ``key``
        (which it handled afterwards, and which overrides what it said)."""
        epoch = self.unacked_frees.get(key)
        return epoch is not None and epoch > seen

    @property
    def open(self) -> bool:
        """Whether new tasks and new copies of data may go here."""
        return not self.paused and not self.retiring

    def __repr__(self) -> str:
        return f"<WorkerRecord {self.address!r} processing={len(self.processing)}>"


#: The pseudo-client that wants the keys of ``fire-and-forget`` messages: each
#: is released as soon as it is done (nobody is told).
FIRE_AND_FORGET = "fire-and-forget"


class ClientRecord:
    """A client and the keys it holds futures for."""

    __slots__ = ("client", "wants", "_alone")

    def __init__(self, client: str) -> None:
        self.client = client
        self.wants: dict[TaskRecord, None] = {}
        self._alone: dict[str, dict[str, str]] = {}

    def alone(self, last: str) -> dict[str, str]:
        """The ``who_wants`` of a task only this client wants, told ``last``:
        one shared :class:`Frozen` map per report, not a dict per task."""
        shared = self._alone.get(last)
        if shared is None:
            shared = self._alone[last] = Frozen({self.client: last})
        return shared

    def __repr__(self) -> str:
        return f"<ClientRecord {self.client!r} wants={len(self.wants)}>"
