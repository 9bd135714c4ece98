"""What a client submitted, kept until it releases the keys: the intent that
rebuilds a restarted scheduler's graph.

Theory of operation
-------------------
The scheduler's graph is not precious because each client keeps what it
submitted.  Every ``submit_tasks`` call (one ``submit``, a ``map``, a dask
graph) is recorded as a *batch*: its task specs, in the order they were sent
(dependencies before dependents), and how many of its wanted keys this client
still holds.  A batch whose tasks depend on keys another live batch defines
is that batch's *child*: the parent's specs are the lineage of the child's
results.  A batch lives while this client holds one of its wanted keys or
one of its children lives; a key whose last Future goes (``released``)
counts down every batch that wanted it, and a batch that dies releases its
parents in turn.  So the client keeps exactly what the scheduler would need
to recompute every result it may still ask for (``submit(f, x)`` of a
Future ``x`` whose own Future was dropped keeps ``x``'s spec).

Functions travel once per client by token (``UpdateGraph.funcs``), so the
serialized functions are kept separately, by token, for as long as the
client lives (their number is bounded by the client's distinct functions).

``replay()`` gives what to submit to a new scheduler: the specs of the live
batches in submission order (parents before children; each key once) and
the functions they use.  Actors' specs are left out: an actor's object
lived on one worker, and running its constructor again would make an object
that its proxies cannot reach (its Future fails as lost, like the proxies).  Thread safety: every method takes the lock; user
threads record, any thread releases, the event loop replays.
"""

from __future__ import annotations

import threading
from taskmill.protocol import Serialized
from taskmill.protocol.vocabulary import TaskSpec


class _Batch:
    """One submission: its specs, the batches it depends on, and what keeps it."""

    __slots__ = ("tasks", "wanted", "children", "parents")

    def __init__(self, tasks: list[TaskSpec], wanted: int, parents: list[int]) -> None:
        self.tasks = tasks
        #: how many of its wanted keys this client still holds
        self.wanted = wanted
        #: how many live batches depend on its keys
        self.children = 0
        self.parents = parents


class Submissions:
    """The specs of what this client submitted and still needs (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: token -> serialized function, every one this client sent
        self._funcs: dict[str, Serialized] = {}
        #: id -> live batch, in submission order
        self._batches: dict[int, _Batch] = {}
        #: held key -> the ids of the live batches that want it
        self._by_key: dict[str, list[int]] = {}
        #: key -> the live batch that defines it (the latest)
        self._defined: dict[str, int] = {}
        self._next = 0

    def __len__(self) -> int:
        """The number of live batches."""
        return len(self._batches)

    def record(self, tasks: list[TaskSpec], funcs: dict[str, Serialized],
               wanted: list[str]) -> None:
        """``tasks`` were submitted with ``funcs``; this client holds ``wanted``.
        (A key wanted twice is counted, and released, twice; a parent named
        twice is linked twice: the counts stay consistent without sets.)"""
        with self._lock:
            if funcs:
                self._funcs.update(funcs)
            if not wanted or not tasks:
                return
            self._next += 1
            batch_id = self._next
            defined, batches, by_key = self._defined, self._batches, self._by_key
            parents = [defined[d] for t in tasks for d in t.dependencies if d in defined]
            for parent in parents:
                batches[parent].children += 1
            batches[batch_id] = _Batch(tasks, len(wanted), parents)
            for t in tasks:
                defined[t.key] = batch_id
            for key in wanted:
                ids = by_key.get(key)
                if ids is None:
                    by_key[key] = [batch_id]
                else:
                    ids.append(batch_id)

    def released(self, key: str) -> None:
        """This client no longer holds ``key``."""
        with self._lock:
            for batch_id in self._by_key.pop(key, ()):
                batch = self._batches.get(batch_id)
                if batch is not None:
                    batch.wanted -= 1
                    self._drop_if_unused(batch_id)

    def _drop_if_unused(self, batch_id: int) -> None:
        stack = [batch_id]
        while stack:
            batch_id = stack.pop()
            batch = self._batches[batch_id]
            if batch.wanted > 0 or batch.children > 0:
                continue
            del self._batches[batch_id]
            for spec in batch.tasks:
                if self._defined.get(spec.key) == batch_id:
                    del self._defined[spec.key]
            for parent in batch.parents:
                self._batches[parent].children -= 1
                stack.append(parent)

    def replay(self) -> tuple[list[TaskSpec], dict[str, Serialized]]:
        """The specs of the live batches (submission order, each key once,
        no actors) and the functions they use."""
        with self._lock:
            batches = list(self._batches.values())
            funcs = self._funcs
            seen: set[str] = set()
            specs: list[TaskSpec] = []
            for batch in batches:
                for spec in batch.tasks:
                    if spec.key not in seen and not spec.actor:
                        seen.add(spec.key)
                        specs.append(spec)
            used = {spec.func_token: funcs[spec.func_token] for spec in specs
                    if spec.func_token in funcs}
        return specs, used
