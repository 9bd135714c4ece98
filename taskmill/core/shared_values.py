"""The scheduler's shared values, as a pure state machine: queues, variables, datasets.

Theory of operation
-------------------
:class:`SharedValues` decides everything about the values clients share
through the scheduler (``Queue``, ``Variable``, datasets); the scheduler
shell (:mod:`taskmill.server.shared_values`) only turns requests into calls
of its methods and the commands they return into replies and scheduler
events.  No clock, no I/O: a request that may wait names itself with a
``waiter`` id chosen by the shell and gives its ``deadline`` (an absolute
time, None: none); ``expire(now)`` fails the waiters whose deadline passed,
``next_deadline()`` says when to call it next.

A value is an :class:`Item`: the payload as the client sent it (opaque,
never unpickled here) and the keys of the Futures inside it.  Every key held
by some item is *pinned*: the scheduler machine counts ``SHARED_HOLDER`` as a
client wanting it (``Pin``), until the last item holding it goes (``Unpin``),
so a Future's data lives while only a queue, variable or dataset refers to
it.  A value handed to a client is first *handed over* (``Handover``): its
keys are held for that client by a pseudo-client of its own
(``handover_holder(client, token)``, one per handover) until the client says
it wants them itself, so the keys are never unwanted in between, even
when the item that pinned them is taken at the same moment.

Names: queues and variables share one namespace (using a queue's name as a
variable is a ``TypeError`` naming both kinds); datasets have their own, as
in dask.distributed.

Commands returned: ``Reply(waiter, value)`` (a waiting request's answer: None for a ``put``,
the :class:`Given` item taken or read, a list of them for a batch),
``Fail(waiter, error)``, ``Pin(keys)``, ``Unpin(keys)`` and
``Handover(client, token, keys)``; requests that never wait return their answer or
raise their error directly.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any, Union

Key = str
#: the pseudo-client that wants every key a shared value refers to
SHARED_HOLDER = "shared-values"
QUEUE, VARIABLE = "Queue", "Variable"


def handover_holder(client: str, token: str) -> str:
    """The pseudo-client holding the keys of the handover ``token`` to
    ``client`` until the client holds them itself."""
    return f"{handover_prefix(client)}{token}"


def handover_prefix(client: str) -> str:
    """What the names of ``client``'s handover pseudo-clients start with."""
    return f"handover:{client}:"


@dataclass(frozen=True, slots=True)
class Item:
    """One shared value: the client's opaque payload and its Futures' keys."""

    payload: Any
    keys: tuple[Key, ...] = ()


@dataclass(frozen=True, slots=True)
class Given:
    """A value handed to a client: the item, and the ``token`` of its
    handover (the client names it when it holds the keys; "" without keys)."""

    item: Item
    token: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the waiting request ``waiter`` with ``value``."""

    waiter: int
    value: Any


@dataclass(frozen=True, slots=True)
class Fail:
    """Answer the waiting request ``waiter`` with the exception ``error``."""

    waiter: int
    error: Exception


@dataclass(frozen=True, slots=True)
class Pin:
    """The scheduler machine must count ``SHARED_HOLDER`` as wanting ``keys``."""

    keys: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class Unpin:
    """``SHARED_HOLDER`` no longer wants ``keys``."""

    keys: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class Handover:
    """Hold ``keys`` for ``client`` (``handover_holder(client, token)``) until it holds them."""

    client: str
    token: str
    keys: tuple[Key, ...]


Command = Union[Reply, Fail, Pin, Unpin, Handover]


@dataclass(slots=True)
class _Waiter:
    waiter: int
    client: str
    deadline: float | None
    batch: int | None = None  # queue getters: None one value, n > 0 n values
    item: Item | None = None  # queue putters: the value to put


@dataclass(slots=True)
class _Queue:
    maxsize: int
    items: deque[Item] = field(default_factory=deque)
    getters: deque[_Waiter] = field(default_factory=deque)
    putters: deque[_Waiter] = field(default_factory=deque)

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self.items)


@dataclass(slots=True)
class _Variable:
    item: Item | None = None
    getters: list[_Waiter] = field(default_factory=list)


class SharedValues:
    """Queues, variables and datasets, their waiters and their pinned keys."""

    def __init__(self) -> None:
        self.queues: dict[str, _Queue] = {}
        self.variables: dict[str, _Variable] = {}
        self.datasets: dict[str, Item] = {}
        #: key -> how many held items refer to it (pinned while > 0)
        self.refcounts: Counter[Key] = Counter()
        self._waiting: dict[int, tuple[str, str]] = {}  # waiter -> (kind, name)
        self._handovers = 0  # handovers made, for their tokens
        #: the kind of primitive another holder of names (the scheduler's
        #: locks, semaphores and events) uses ``name`` for, or None
        self.taken_elsewhere: Callable[[str], str | None] = _nowhere

    def kind_of(self, name: str) -> str | None:
        """The kind of primitive using ``name`` here (``"Queue"``, ``"Variable"``), or None."""
        if name in self.queues:
            return QUEUE
        if name in self.variables:
            return VARIABLE
        return None

    # ------------------------------------------------------------------ #
    # Keys held
    # ------------------------------------------------------------------ #
    def _hold(self, item: Item, out: list[Command]) -> None:
        new = []
        for key in item.keys:
            self.refcounts[key] += 1
            if self.refcounts[key] == 1:
                new.append(key)
        if new:
            out.append(Pin(tuple(new)))

    def _drop(self, item: Item | None, out: list[Command]) -> None:
        if item is None:
            return
        gone = []
        for key in item.keys:
            self.refcounts[key] -= 1
            if self.refcounts[key] <= 0:
                del self.refcounts[key]
                gone.append(key)
        if gone:
            out.append(Unpin(tuple(gone)))

    def _hand(self, client: str, item: Item, out: list[Command]) -> Given:
        if not item.keys:
            return Given(item)
        self._handovers += 1
        token = str(self._handovers)
        out.append(Handover(client, token, item.keys))
        return Given(item, token)

    def pinned(self) -> set[Key]:
        """Every key some held value refers to."""
        return set(self.refcounts)

    # ------------------------------------------------------------------ #
    # Names
    # ------------------------------------------------------------------ #
    def _check_kind(self, name: str, kind: str) -> None:
        other = (VARIABLE if name in self.variables else None) if kind == QUEUE else (
            QUEUE if name in self.queues else None)
        if other is None:
            other = self.taken_elsewhere(name)
        if other is not None:
            raise TypeError(f"the name {name!r} is already used by a {other}, so it cannot be "
                            f"used for a {kind}: choose another name")

    def _queue(self, name: str, maxsize: int) -> _Queue:
        queue = self.queues.get(name)
        if queue is None:
            self._check_kind(name, QUEUE)
            if maxsize < 0:
                raise ValueError(f"Queue {name!r}: maxsize must be >= 0 (0: unbounded), not {maxsize}")
            queue = self.queues[name] = _Queue(maxsize)
        return queue

    def _variable(self, name: str) -> _Variable:
        var = self.variables.get(name)
        if var is None:
            self._check_kind(name, VARIABLE)
            var = self.variables[name] = _Variable()
        return var

    # ------------------------------------------------------------------ #
    # Queues
    # ------------------------------------------------------------------ #
    def queue_put(self, name: str, maxsize: int, item: Item, client: str, waiter: int,
                  deadline: float | None) -> list[Command]:
        """Append ``item``, or wait while the queue is full; ``Reply(waiter, None)`` once in."""
        queue = self._queue(name, maxsize)
        out: list[Command] = []
        self._hold(item, out)
        if queue.full() or queue.putters:
            queue.putters.append(_Waiter(waiter, client, deadline, item=item))
            self._waiting[waiter] = (QUEUE, name)
            return out
        queue.items.append(item)
        out.append(Reply(waiter, None))
        self._serve_queue(queue, out)
        return out

    def queue_get(self, name: str, maxsize: int, client: str, waiter: int,
                  deadline: float | None, batch: int | None) -> list[Command]:
        """Take the oldest item (``batch`` n: n items; 0: all there, no wait)."""
        queue = self._queue(name, maxsize)
        if batch is not None and batch < 0:
            raise ValueError(f"Queue {name!r}: batch must be True, False or a positive count")
        out: list[Command] = []
        if batch == 0:
            taken = self._take(queue, len(queue.items), client, out)
            out.append(Reply(waiter, taken))
            self._serve_queue(queue, out)
            return out
        queue.getters.append(_Waiter(waiter, client, deadline, batch=batch))
        self._waiting[waiter] = (QUEUE, name)
        self._serve_queue(queue, out)
        return out

    def queue_size(self, name: str, maxsize: int) -> int:
        """How many items the queue holds."""
        return len(self._queue(name, maxsize).items)

    def _take(self, queue: _Queue, n: int, client: str, out: list[Command]) -> list[Given]:
        given = []
        for _ in range(n):
            item = queue.items.popleft()
            given.append(self._hand(client, item, out))
            self._drop(item, out)
        return given

    def _serve_queue(self, queue: _Queue, out: list[Command]) -> None:
        """Let waiting putters in and waiting getters take, in arrival order."""
        while True:
            if queue.putters and not queue.full():
                putter = queue.putters.popleft()
                del self._waiting[putter.waiter]
                assert putter.item is not None
                queue.items.append(putter.item)
                out.append(Reply(putter.waiter, None))
                continue
            if queue.getters:
                getter = queue.getters[0]
                need = 1 if getter.batch is None else getter.batch
                if len(queue.items) >= need or (queue.maxsize and need > queue.maxsize
                                                 and queue.full()):
                    queue.getters.popleft()
                    del self._waiting[getter.waiter]
                    taken = self._take(queue, min(need, len(queue.items)), getter.client, out)
                    out.append(Reply(getter.waiter, taken[0] if getter.batch is None else taken))
                    continue
            return

    # ------------------------------------------------------------------ #
    # Variables
    # ------------------------------------------------------------------ #
    def variable_set(self, name: str, item: Item) -> list[Command]:
        """Replace the variable's value (the old one is released); waiting readers get it."""
        var = self._variable(name)
        out: list[Command] = []
        self._hold(item, out)
        old, var.item = var.item, item
        for getter in var.getters:
            del self._waiting[getter.waiter]
            out.append(Reply(getter.waiter, self._hand(getter.client, item, out)))
        var.getters.clear()
        self._drop(old, out)
        return out

    def variable_get(self, name: str, client: str, waiter: int,
                     deadline: float | None) -> list[Command]:
        """The variable's value, or wait for its first ``set``."""
        var = self._variable(name)
        out: list[Command] = []
        if var.item is not None:
            out.append(Reply(waiter, self._hand(client, var.item, out)))
        else:
            var.getters.append(_Waiter(waiter, client, deadline))
            self._waiting[waiter] = (VARIABLE, name)
        return out

    def variable_delete(self, name: str) -> list[Command]:
        """Forget the variable: its value is released, its waiting readers fail."""
        var = self.variables.pop(name, None)
        out: list[Command] = []
        if var is None:
            return out
        for getter in var.getters:
            del self._waiting[getter.waiter]
            out.append(Fail(getter.waiter, RuntimeError(
                f"Variable {name!r} was deleted while this get() waited for a value")))
        self._drop(var.item, out)
        return out

    # ------------------------------------------------------------------ #
    # Datasets
    # ------------------------------------------------------------------ #
    def publish(self, items: dict[str, Item], override: bool) -> list[Command]:
        """Publish each name; an existing name is a ``KeyError`` (none
        published) unless ``override`` (the old value is released)."""
        if not override:
            taken = sorted(n for n in items if n in self.datasets)
            if taken:
                raise KeyError(f"Dataset {taken[0]!r} is already published: unpublish it "
                               "first, or publish with override=True")
        out: list[Command] = []
        for name, item in items.items():
            self._hold(item, out)
            self._drop(self.datasets.get(name), out)
            self.datasets[name] = item
        return out

    def dataset_get(self, name: str, client: str) -> tuple[Given, list[Command]]:
        """The dataset's item (handed over to ``client``); unknown: ``KeyError``."""
        item = self.datasets.get(name)
        if item is None:
            raise KeyError(f"Dataset {name!r} is not published (published: "
                           f"{sorted(self.datasets) or 'none'})")
        out: list[Command] = []
        return self._hand(client, item, out), out

    def unpublish(self, name: str) -> list[Command]:
        """Remove the dataset and release its value; unknown: ``KeyError``."""
        item = self.datasets.pop(name, None)
        if item is None:
            raise KeyError(f"Dataset {name!r} is not published, so it cannot be unpublished")
        out: list[Command] = []
        self._drop(item, out)
        return out

    # ------------------------------------------------------------------ #
    # Waiters
    # ------------------------------------------------------------------ #
    def next_deadline(self) -> float | None:
        """The earliest deadline of a waiting request (None: none waits with one)."""
        deadlines = [w.deadline for w in self._all_waiters() if w.deadline is not None]
        return min(deadlines) if deadlines else None

    def _all_waiters(self) -> list[_Waiter]:
        out: list[_Waiter] = []
        for queue in self.queues.values():
            out += queue.getters
            out += queue.putters
        for var in self.variables.values():
            out += var.getters
        return out

    def expire(self, now: float) -> list[Command]:
        """Fail with ``TimeoutError`` every waiter whose deadline is <= ``now``."""
        out: list[Command] = []
        for w in self._all_waiters():
            if w.deadline is not None and w.deadline <= now:
                kind, name = self._waiting[w.waiter]
                what = ("put() found it full" if w.item is not None else "get() found no value")
                if kind == VARIABLE:
                    what = "get() found it never set"
                self._forget(w.waiter, out)
                out.append(Fail(w.waiter, TimeoutError(
                    f"{kind} {name!r}: {what} within the timeout")))
        return out

    def cancel(self, waiter: int) -> list[Command]:
        """The request ``waiter`` is gone (its connection closed): stop waiting
        for it; a waiting ``put``'s value is dropped."""
        out: list[Command] = []
        if waiter in self._waiting:
            self._forget(waiter, out)
        return out

    def _forget(self, waiter: int, out: list[Command]) -> None:
        kind, name = self._waiting.pop(waiter)
        if kind == VARIABLE:
            var = self.variables[name]
            var.getters = [w for w in var.getters if w.waiter != waiter]
            return
        queue = self.queues[name]
        for w in queue.putters:
            if w.waiter == waiter:
                queue.putters.remove(w)
                self._drop(w.item, out)
                break
        queue.getters = deque(w for w in queue.getters if w.waiter != waiter)
        self._serve_queue(queue, out)  # a big batch getter gone may unblock those behind


def _nowhere(name: str) -> str | None:
    return None
