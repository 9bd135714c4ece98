"""Every message that crosses a process boundary, each a typed value.

Theory of operation
-------------------
This module is the wire vocabulary of taskmill: each class below is one op,
declared with :func:`~taskmill.protocol.wire_types.message`, which gives it a
checked ``to_wire()`` / ``from_wire()`` pair (see
:mod:`taskmill.protocol.wire_types`).  The shells translate between these
values and the wire and nothing else builds or reads op dicts; the pure
state machines take them as events and return them as commands:

* a worker's state machine returns ``TaskFinished`` (with its own address in
  ``worker``); the worker shell sends ``to_wire()`` on its stream; the
  scheduler shell decodes it, filling ``worker`` (the stream it came on) and
  ``stimulus_id`` (its own), and hands it to the scheduler's state machine;
* the scheduler's state machine returns ``ComputeTask`` addressed to
  ``worker``; the shell routes it by that field and sends ``to_wire()``; the
  worker shell decodes it and hands it to the worker's state machine.

So adding a message from a worker to the scheduler touches this module, the
worker machine that returns it and the scheduler machine that handles it.
``docs/protocol.md`` lists every op below (a test keeps the two in step).

The vocabulary is one namespace in several modules, split by topic to keep
each readable: this one holds the greeting, registration and the streams;
the request/reply ops (:mod:`taskmill.protocol.requests`) and each feature's
ops (``shared``, ``plugins``, ``locks``, ``actors``, ``forwarding``,
``stealing``) are in
modules of their own, imported and re-exported at the end of this one.  A new
topic adds its module to that list, so its ops register after those before it.

Fields in ``local=`` are filled in by the receiving end and never sent: the
peer a stream message came from (``worker``, ``client``), the receiver's own
``stimulus_id`` and clock (``now``).  For a message a machine returns, the
same field names the destination (``ComputeTask.worker``,
``KeyInMemory.client``).

Crossed messages: every message the scheduler sends a worker on its stream
(``compute-task``, ``free-keys``, ``acquire-replicas``) carries an ``epoch``,
one more than the scheduler's previous message to any worker, and the
messages a worker sends about keys (and its heartbeats) carry ``seen``: the
``epoch`` of the last scheduler message it had handled when it sent them.
On FIFO streams that tells the scheduler whether a worker's word about a key
was sent before or after the worker saw a given ``free-keys`` (see "Crossed
messages" in ``taskmill.core.scheduler.state``).

Payloads the scheduler never looks inside (functions, arguments, results,
exceptions) are :class:`~taskmill.protocol.serialize.Serialized` values.
"""

from __future__ import annotations

from taskmill.frozen import frozen
from typing import Any

from taskmill.protocol.serialize import Serialized
from taskmill.protocol.wire_types import (
    ANY,
    CLIENT,
    NANNY,
    SCHEDULER,
    WORKER,
    REGISTRY,
    Address,
    Key,
    Message,
    Priority,
    Record,
    arrived,
    decode,
    message,
    record,
    wire_fields,
)


__all__ = ["REGISTRY", "Message", "Record", "arrived", "decode", "Key", "Address", "Priority",
           "ANY", "CLIENT", "NANNY", "SCHEDULER", "WORKER"]

_FROM_CLIENT = ("client", "stimulus_id")
_FROM_WORKER = ("worker", "stimulus_id")


# --------------------------------------------------------------------------- #
# Registration and greeting (any connection between processes)
# --------------------------------------------------------------------------- #
@message("hello", ANY, ANY, kind="greeting")
@frozen
class Hello(Message):
    """The accepting side's first message on every connection between
    processes: ``challenge`` is 32 random bytes when a token is configured."""

    challenge: bytes | None = None


@message("auth", ANY, ANY, kind="greeting")
@frozen
class Auth(Message):
    """The connecting side's answer to a challenge: its nonce and
    HMAC-SHA256(token, "client" + challenge + nonce)."""

    nonce: bytes
    mac: bytes


@message("no-token", ANY, ANY, kind="greeting")
@frozen
class NoToken(Message):
    """The connecting side has no token to answer a challenge with."""


@message("denied", ANY, ANY, kind="greeting")
@frozen
class Denied(Message):
    """The accepting side refused the MAC."""


@message("welcome", ANY, ANY, kind="greeting")
@frozen
class Welcome(Message):
    """The accepting side proves it holds the token too:
    HMAC-SHA256(token, "server" + challenge + nonce)."""

    mac: bytes


@message("register-client", CLIENT, SCHEDULER, kind="request")
@frozen
class RegisterClient(Message):
    """Opens a client's stream; answered with ``client-registered``, then the
    connection carries batches of client messages one way and reports the other."""

    client: str


@message("client-registered", SCHEDULER, CLIENT, kind="request")
@frozen
class ClientRegistered(Message):
    """The scheduler accepted the client: its public address and its id."""

    address: Address
    id: str


@message("register-worker", WORKER, SCHEDULER, kind="request", local=("stimulus_id", "now"))
@frozen
class RegisterWorker(Message):
    """Opens a worker's stream (the worker joins the cluster); answered with
    ``worker-registered`` or ``registration-refused``.  ``incarnation`` is new
    at each registration: ``put-data`` answers with it, so that
    ``scatter-done`` credits only the registration that took the data.
    ``held``: the data a worker kept when it lost its scheduler (key ->
    bytes), sent when it registers again; the scheduler takes those keys as
    in memory there (a restarted scheduler keeps them for the clients that
    re-submit their tasks, ``taskmill.core.scheduler.held_keys``)."""

    worker: Address
    nthreads: int
    memory_limit: int
    nanny: Address | None = None
    name: str = ""
    pid: int = 0
    #: abstract resources it declares, e.g. {"GPU": 2}
    resources: dict[str, float] | None = None
    incarnation: str = ""
    #: key -> bytes of the data it still holds (registering again after a loss)
    held: dict[Key, int] | None = None
    stimulus_id: str = ""
    now: float = 0.0


@message("worker-registered", SCHEDULER, WORKER, kind="request")
@frozen
class WorkerRegistered(Message):
    """``files``: what was uploaded to the cluster so far (name -> bytes)."""

    files: dict[str, bytes]


@message("registration-refused", SCHEDULER, ANY, kind="request")
@frozen
class RegistrationRefused(Message):
    """The scheduler refused a registration (``reason`` says why)."""

    reason: str


# --------------------------------------------------------------------------- #
# Client -> scheduler (stream)
# --------------------------------------------------------------------------- #
@record
@frozen
class TaskSpec(Record):
    """One task of ``update-graph``: how to run it and what it needs.  The
    function travels once per client by ``func_token`` (``UpdateGraph.funcs``);
    ``args`` are the pickled arguments, in which dependencies appear as
    references to their keys."""

    key: Key
    func_token: str
    args: Serialized
    dependencies: tuple[Key, ...] = ()
    priority: Priority = (0,)
    retries: int = 0
    #: restrictions: run only there (or prefer there, with allow_other_workers)
    workers: tuple[Address, ...] | None = None
    allow_other_workers: bool = False
    #: abstract resources it holds while it runs, e.g. {"GPU": 1} (always strict)
    resources: dict[str, float] | None = None
    #: it makes an actor (``submit(..., actor=True)``): its result is an object
    #: living only where it ran, so losing that worker errs the key
    #: (``ActorLostError``) instead of building a new object nobody can reach
    actor: bool = False


@message("update-graph", CLIENT, SCHEDULER, local=(*_FROM_CLIENT, "now"))
@frozen
class UpdateGraph(Message):
    """A client adds tasks and declares which keys it wants (holds futures for).

    Tasks whose key already exists are not re-added (pure tasks submitted twice
    share one task); a key that failed or was forgotten is re-added.  A
    dependency that is neither in ``tasks`` nor already known makes the
    dependent task err at once with an error naming the key.  ``funcs`` holds
    the functions (by token) not sent by this client before."""

    stimulus_id: str
    client: str
    tasks: tuple[TaskSpec, ...]
    wanted: tuple[Key, ...]
    funcs: dict[str, Serialized] | None = None
    now: float = 0.0


@message("release-keys", CLIENT, SCHEDULER, local=_FROM_CLIENT)
@frozen
class ReleaseKeys(Message):
    """The client no longer holds any future for these keys."""

    stimulus_id: str
    client: str
    keys: tuple[Key, ...]


@message("want-keys", CLIENT, SCHEDULER, local=_FROM_CLIENT)
@frozen
class WantKeys(Message):
    """The client holds futures for existing keys, unpickled from another client say."""

    stimulus_id: str
    client: str
    keys: tuple[Key, ...]


@message("fire-and-forget", CLIENT, SCHEDULER, local=_FROM_CLIENT)
@frozen
class FireAndForget(Message):
    """Compute these keys even after every client released them; forget each
    once it is done."""

    stimulus_id: str
    client: str
    keys: tuple[Key, ...]


@message("cancel-keys", CLIENT, SCHEDULER, local=_FROM_CLIENT)
@frozen
class CancelKeys(Message):
    """Stop these keys and their dependents; every client that wants one is
    told ``key-cancelled``.  With ``force`` the workers running them also
    abandon those calls at once (``abandon-tasks``), freeing their threads."""

    stimulus_id: str
    client: str
    keys: tuple[Key, ...]
    force: bool = False


@message("scatter-done", CLIENT, SCHEDULER, local=_FROM_CLIENT)
@frozen
class ScatterDone(Message):
    """The client put data directly on workers (``put-data``) and wants it:
    ``who_has`` says where, ``incarnations`` which registration of each of
    those workers took it (``put-data``'s answer).  A worker is credited only
    if it is still that registration, or it reported the keys itself
    (``keys-scattered``)."""

    stimulus_id: str
    client: str
    who_has: dict[Key, tuple[Address, ...]]
    nbytes: dict[Key, int]
    type_names: dict[Key, str] | None = None
    incarnations: dict[Address, str] | None = None


@message("close-client", CLIENT, SCHEDULER)
@frozen
class CloseClient(Message):
    """The client leaves: everything it wanted is released."""


# --------------------------------------------------------------------------- #
# Scheduler -> client (stream): reports
# --------------------------------------------------------------------------- #
@message("key-in-memory", SCHEDULER, CLIENT, local=("stimulus_id", "client"))
@frozen
class KeyInMemory(Message):
    """``key`` is in memory on ``who_has``; ``value`` is the small result a
    worker attached (the client then needs no fetch), if any."""

    stimulus_id: str
    client: str
    key: Key
    who_has: tuple[Address, ...]
    type_name: str = ""
    value: Serialized | None = None


@message("key-erred", SCHEDULER, CLIENT, local=("stimulus_id", "client"))
@frozen
class KeyErred(Message):
    """``key`` failed.  With ``exception`` None the scheduler itself failed it:
    ``error_type`` names the taskmill error the client raises ("KilledWorker",
    "MissingDependencyError") with ``exception_text`` as its message."""

    stimulus_id: str
    client: str
    key: Key
    exception: Serialized | None
    traceback: str | None
    exception_text: str
    worker: Address = ""  # where it failed ("" when the scheduler decided it)
    error_type: str = ""


@message("key-lost", SCHEDULER, CLIENT, local=("stimulus_id", "client"))
@frozen
class KeyLost(Message):
    """The key's data is gone and cannot be recomputed (no lineage), or the
    key is unknown."""

    stimulus_id: str
    client: str
    key: Key
    reason: str


@message("worker-gone", SCHEDULER, CLIENT, local=("stimulus_id", "client"))
@frozen
class WorkerGone(Message):
    """The scheduler removed the worker at ``removed`` (``reason``): the
    client aborts its connections to it, so a fetch from a worker gone silent
    fails at once (and is retried from another holder, or waits for the
    key's recomputation) instead of waiting out the data timeout."""

    stimulus_id: str
    client: str
    removed: Address
    reason: str


@message("no-workers", SCHEDULER, CLIENT, local=("stimulus_id", "client"))
@frozen
class NoWorkers(Message):
    """``tasks`` tasks have waited ``waited`` seconds with no worker connected
    (sent at growing intervals while it lasts); ``timeout``: the option
    ``scheduler.no-workers-timeout`` after which they err (None: never).
    The client logs a warning when some of its futures are pending."""

    stimulus_id: str
    client: str
    waited: float
    tasks: int
    timeout: float | None = None


@message("key-cancelled", SCHEDULER, CLIENT, local=("stimulus_id", "client"))
@frozen
class KeyCancelled(Message):
    """``key`` was cancelled (by a client, or the cluster restarted)."""

    stimulus_id: str
    client: str
    key: Key
    reason: str = ""


@message("keys-running", SCHEDULER, CLIENT, local=("stimulus_id", "client"))
@frozen
class KeysRunning(Message):
    """The calls of ``keys`` started on a worker (``running``), or went back
    to waiting for one (``running=False``: their worker died, or a retry
    waits).  Not sent for calls that finish within the worker's report
    delay: their ``key-in-memory`` or ``key-erred`` says it all."""

    stimulus_id: str
    client: str
    keys: tuple[Key, ...]
    running: bool = True


# --------------------------------------------------------------------------- #
# Scheduler -> worker (stream)
# --------------------------------------------------------------------------- #
@message("compute-task", SCHEDULER, WORKER, local=("worker",))
@frozen
class ComputeTask(Message):
    """Run ``key`` on ``worker``.  ``who_has`` lists, for each dependency, the
    workers holding it.  ``func`` is None when this worker was already sent
    the function of ``func_token``.  With ``report_value`` a client wants the
    result: the worker attaches it to ``task-finished`` when it is small."""

    stimulus_id: str
    worker: Address
    key: Key
    func_token: str
    func: Serialized | None
    args: Serialized
    who_has: dict[Key, tuple[Address, ...]]
    nbytes: dict[Key, int]
    priority: Priority
    report_value: bool = False
    #: the scheduler's message counter (see the module docstring)
    epoch: int = 0


@message("free-keys", SCHEDULER, WORKER, local=("worker",))
@frozen
class FreeKeys(Message):
    """Forget these keys: data, queued or running work."""

    stimulus_id: str
    worker: Address
    keys: tuple[Key, ...]
    epoch: int = 0


@message("acquire-replicas", SCHEDULER, WORKER, local=("worker",))
@frozen
class AcquireReplicas(Message):
    """Fetch copies of keys from their holders (``who_has``) and keep them
    (replicate, retiring a peer, insurance); each copy is reported with
    ``add-keys``, or ``released-keys`` for one the worker cannot take."""

    stimulus_id: str
    worker: Address
    who_has: dict[Key, tuple[Address, ...]]
    nbytes: dict[Key, int]
    epoch: int = 0


@message("abandon-tasks", SCHEDULER, WORKER, local=("worker",))
@frozen
class AbandonTasks(Message):
    """Sent right after the ``free-keys`` of a forced cancel: the calls of
    these keys still running there are abandoned (their threads leave the
    pool's count and their outcomes are dropped), so the worker starts other
    tasks at once."""

    stimulus_id: str
    worker: Address
    keys: tuple[Key, ...]


@message("retired", SCHEDULER, WORKER, local=("worker",))
@frozen
class Retired(Message):
    """The worker was retired: its data lives elsewhere.  With ``close`` it
    closes itself (exit status 0, so its nanny does not start it again)."""

    worker: Address
    close: bool = False


@message("scheduler-heartbeat", SCHEDULER, WORKER, local=("worker",))
@frozen
class SchedulerHeartbeat(Message):
    """The scheduler is alive (about once a second): a worker that hears
    nothing on its stream for twice ``scheduler.worker-ttl`` seconds drops it
    and registers again (:mod:`taskmill.core.liveness`)."""

    worker: Address


@message("worker-removed", SCHEDULER, WORKER, local=("worker",))
@frozen
class WorkerRemoved(Message):
    """The scheduler removed the worker at ``removed`` (``reason``): a fetch
    from it still waiting is abandoned (the worker asks who else holds the
    keys), since a silent peer would never answer it."""

    worker: Address
    removed: Address
    reason: str


# --------------------------------------------------------------------------- #
# Worker -> scheduler (stream)
# --------------------------------------------------------------------------- #
@message("task-finished", WORKER, SCHEDULER, local=_FROM_WORKER)
@frozen
class TaskFinished(Message):
    """``key`` is in memory on ``worker``.  Zero times: obtained without running
    it (fetched or scattered).  ``value``: the small result, when the task was
    sent with ``report_value``; forwarded to the clients, never stored.
    ``transfer``: seconds spent fetching its inputs (diagnostics)."""

    stimulus_id: str
    worker: Address
    key: Key
    nbytes: int
    type_name: str
    start: float
    stop: float
    value: Serialized | None = None
    transfer: float = 0.0
    #: the ``epoch`` of the last scheduler message handled (module docstring)
    seen: int = 0


@message("task-erred", WORKER, SCHEDULER, local=_FROM_WORKER)
@frozen
class TaskErred(Message):
    """``key`` raised on ``worker``: the pickled exception and its traceback text."""

    stimulus_id: str
    worker: Address
    key: Key
    exception: Serialized
    traceback: str
    exception_text: str
    start: float = 0.0
    stop: float = 0.0
    transfer: float = 0.0
    seen: int = 0


@message("tasks-started", WORKER, SCHEDULER, local=_FROM_WORKER)
@frozen
class TasksStarted(Message):
    """The calls of ``keys`` run on ``worker``'s threads: those still
    running a few milliseconds after they started, reported together (one
    that finished first needs no report: ``task-finished`` implies it ran)."""

    stimulus_id: str
    worker: Address
    keys: tuple[Key, ...]
    seen: int = 0


@message("add-keys", WORKER, SCHEDULER, local=_FROM_WORKER)
@frozen
class AddKeys(Message):
    """The worker now also holds copies of keys (fetched, or asked to acquire)."""

    stimulus_id: str
    worker: Address
    nbytes: dict[Key, int]
    seen: int = 0


@message("keys-scattered", WORKER, SCHEDULER, local=_FROM_WORKER)
@frozen
class KeysScattered(Message):
    """``client`` put these keys here (``put-data``), sent before the answer:
    the scheduler credits this worker when the client's ``scatter-done``
    wants them, and frees them if the client is gone without sending it."""

    stimulus_id: str
    worker: Address
    client: str
    nbytes: dict[Key, int]


@message("released-keys", WORKER, SCHEDULER, local=_FROM_WORKER)
@frozen
class ReleasedKeys(Message):
    """The worker dropped (or declined to fetch) its copies of keys."""

    stimulus_id: str
    worker: Address
    keys: tuple[Key, ...]
    seen: int = 0


@message("missing-data", WORKER, SCHEDULER, local=_FROM_WORKER)
@frozen
class MissingData(Message):
    """``worker`` could not get ``keys`` from ``errant_worker``: that copy is
    gone, or did not exist yet when it asked.  ``seen``: the ``epoch`` of the
    last scheduler message it had handled when it *asked* ``errant_worker``."""

    stimulus_id: str
    worker: Address
    errant_worker: Address
    keys: tuple[Key, ...]
    seen: int = 0


@message("paused", WORKER, SCHEDULER, local=_FROM_WORKER)
@frozen
class Paused(Message):
    """The worker's memory is short (``paused``): send it no new task while
    another worker has room; ``False`` when it resumes."""

    stimulus_id: str
    worker: Address
    paused: bool


@message("seceded", WORKER, SCHEDULER, local=_FROM_WORKER)
@frozen
class Seceded(Message):
    """The task ``key`` running on ``worker`` left the worker's thread count
    (``secede()``, ``seceded``) or took a thread again (``rejoin()``, False):
    the scheduler frees or takes back its slot there, while the task stays
    processing on that worker."""

    stimulus_id: str
    worker: Address
    key: Key
    seceded: bool


@message("heartbeat", WORKER, SCHEDULER, local=(*_FROM_WORKER, "now"))
@frozen
class Heartbeat(Message):
    """Periodic figures of a worker (for policy and the dashboard; never
    needed for correctness).  ``transfers``: (peer, start, stop, bytes, keys);
    ``seen`` lets the scheduler forget the frees a quiet worker has handled."""

    stimulus_id: str
    worker: Address
    now: float
    memory: int = 0
    executing: int = 0
    in_memory: int = 0
    managed: int = 0
    spilled: int = 0
    paused: bool = False
    cpu: float = 0.0
    transfers: tuple[tuple[Address, float, float, int, int], ...] = ()
    #: the ``epoch`` of the last scheduler message handled (module docstring)
    seen: int = 0


@message("unregister", WORKER, SCHEDULER)
@frozen
class Unregister(Message):
    """The worker is closing: its stream ends after this."""


def op_names() -> list[str]:
    """Every op of the vocabulary, in declaration order."""
    return list(REGISTRY)


def describe(op: str) -> dict[str, Any]:
    """What the protocol document says of ``op``: route, kind and wire fields."""
    cls = REGISTRY[op]
    return {"op": op, "class": cls.__name__, "sender": cls.sender, "receiver": cls.receiver,
            "kind": cls.kind, "fields": [field.name for field in wire_fields(cls)],
            "local": list(cls.local), "doc": (cls.__doc__ or "").strip()}


# The ops of the other topics, each declared in a module of its own (the
# request/reply ops, the shared values', the plugins', the waiting
# primitives', the actors', log forwarding's, work stealing's) and re-exported here.  Imported
# in this order, after the streams' are declared, they register (and
# docs/protocol.md lists them) in this order.
from taskmill.protocol import (  # noqa: E402
    requests as _requests,
    shared as _shared,
    plugins as _plugins,
    locks as _locks,
    actors as _actors,
    forwarding as _forwarding,
    stealing as _stealing,
)
from taskmill.protocol.requests import *  # noqa: E402,F401,F403
from taskmill.protocol.shared import *  # noqa: E402,F401,F403
from taskmill.protocol.plugins import *  # noqa: E402,F401,F403
from taskmill.protocol.locks import *  # noqa: E402,F401,F403
from taskmill.protocol.actors import *  # noqa: E402,F401,F403
from taskmill.protocol.forwarding import *  # noqa: E402,F401,F403
from taskmill.protocol.stealing import *  # noqa: E402,F401,F403

__all__ += _requests.__all__
__all__ += _shared.__all__
__all__ += _plugins.__all__
__all__ += _locks.__all__
__all__ += _actors.__all__
__all__ += _forwarding.__all__
__all__ += _stealing.__all__
