"""What simulated tasks do: their values, sizes, durations and failures.

Theory of operation
-------------------
A simulated task never runs user code.  :class:`SimTask` describes one task
the way a test wants it to behave; the :class:`TaskBook` of a cluster keeps
every definition and carries out a run on behalf of a simulated worker:

* the **value** of a task is :func:`sim_value` of its key and the values of
  its dependencies (in their declared order), an ``int``: deterministic, so
  the book can say what any key must hold (:meth:`TaskBook.expected`) and a
  wrong input anywhere upstream shows in the result;
* a task with ``fail=n`` raises :class:`SimulatedFailure` on its first ``n``
  runs anywhere in the cluster (the book counts runs per key), so
  ``fail=1, retries=1`` succeeds on the retry and ``fail=2, retries=1`` errs;
* ``nbytes`` is the size the worker reports, ``duration`` how many simulated
  seconds a run takes;
* scattered data (:meth:`TaskBook.scatter`) has the value the client put.

Definitions are pure, as task keys are: a key has one definition; defining
it again differently is a mistake in the test and raises ``ValueError``.
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from taskmill.core.scheduler.records import key_prefix
from taskmill.protocol import Serialized
from taskmill.protocol.vocabulary import TaskSpec


class SimulatedFailure(Exception):
    """What a simulated task raises on a run that fails (``SimTask.fail``)."""

    def __init__(self, key: str, attempt: int) -> None:
        super().__init__(key, attempt)
        #: the task that raised, and which run of it (1 = the first) it was
        self.key = key
        self.attempt = attempt

    def __str__(self) -> str:
        return f"simulated failure of {self.key!r} (run {self.attempt})"


@dataclass(frozen=True, slots=True)
class SimTask:
    """How one simulated task behaves, and how it is submitted.

    ``deps``: keys of the tasks (or scattered data) it takes as inputs;
    ``fail``: how many of its first runs raise :class:`SimulatedFailure`;
    ``func``: its function token (by default the key's prefix, so tasks
    ``inc-1`` and ``inc-2`` share the function ``inc``).  ``secede_after``:
    a run calls ``secede()`` that many simulated seconds after it starts and
    ``rejoin()`` ``seceded_for`` seconds later (None: when the test calls
    ``SimWorker.let_rejoin``), then takes ``duration`` more once a thread is
    granted (``rejoins=False``: it ends seceded instead).
    The rest is what :class:`~taskmill.protocol.vocabulary.TaskSpec` says."""

    key: str
    deps: tuple[str, ...] = ()
    duration: float = 0.01
    nbytes: int = 8
    fail: int = 0
    retries: int = 0
    priority: tuple[int, ...] = (0,)
    workers: tuple[str, ...] | None = None
    allow_other_workers: bool = False
    resources: dict[str, float] | None = None
    func: str | None = None
    secede_after: float | None = None
    seceded_for: float | None = 0.01
    rejoins: bool = True

    @property
    def func_token(self) -> str:
        """The token its function travels under."""
        return self.func if self.func is not None else key_prefix(self.key)

    def spec(self) -> TaskSpec:
        """The ``TaskSpec`` a client submits for it."""
        return TaskSpec(self.key, self.func_token, args_payload(self.key), tuple(self.deps),
                        self.priority, self.retries, self.workers, self.allow_other_workers,
                        self.resources)


def args_payload(key: str) -> Serialized:
    """The (opaque) arguments of a simulated task: its key, so the worker can
    check it ran what it was sent."""
    return Serialized([key.encode()])


def func_payload(token: str) -> Serialized:
    """The (opaque) function of ``token``, as a client sends it."""
    return Serialized([b"sim-func:" + token.encode()])


def sim_value(key: str, inputs: Sequence[Any]) -> int:
    """The value of task ``key`` run on ``inputs`` (its dependencies' values)."""
    return zlib.crc32(f"{key}|{inputs!r}".encode())


def serialized_value(value: Any) -> Serialized:
    """``value`` as a worker attaches a small result to ``task-finished``."""
    return Serialized([pickle.dumps(value, protocol=5)])


def serialized_failure(exc: SimulatedFailure) -> Serialized:
    """``exc`` as a worker sends it with ``task-erred``."""
    return Serialized([pickle.dumps(exc, protocol=5)])


class TaskBook:
    """Every simulated task and scattered key of one cluster, and the runs so far."""

    def __init__(self) -> None:
        #: key -> its definition
        self.tasks: dict[str, SimTask] = {}
        #: key -> (value, nbytes) of scattered data
        self.scattered: dict[str, tuple[Any, int]] = {}
        #: key -> how many runs of it started, anywhere
        self.runs: dict[str, int] = {}
        self._expected: dict[str, Any] = {}

    def define(self, task: SimTask) -> None:
        """Record ``task``; the same key must keep the same definition."""
        old = self.tasks.get(task.key)
        if old is not None:
            if old != task:
                raise ValueError(f"task {task.key!r} was defined differently before: {old} != {task}")
            return
        if task.key in self.scattered:
            raise ValueError(f"{task.key!r} is scattered data, not a task")
        self.tasks[task.key] = task

    def scatter(self, key: str, value: Any, nbytes: int) -> None:
        """Record scattered data; a key keeps its value."""
        if key in self.tasks:
            raise ValueError(f"{key!r} is a task, not scattered data")
        old = self.scattered.get(key)
        if old is not None and old != (value, nbytes):
            raise ValueError(f"{key!r} was scattered before with another value or size")
        self.scattered[key] = (value, nbytes)

    def nbytes(self, key: str) -> int:
        """The size a worker holding ``key`` reports."""
        task = self.tasks.get(key)
        if task is not None:
            return task.nbytes
        return self.scattered[key][1]

    def run(self, key: str, inputs: dict[str, Any]) -> tuple[bool, Any]:
        """One run of task ``key`` on ``inputs`` (its dependencies' values by
        key): ``(True, value)`` or ``(False, SimulatedFailure)``."""
        task = self.tasks[key]
        attempt = self.runs[key] = self.runs.get(key, 0) + 1
        if attempt <= task.fail:
            return False, SimulatedFailure(key, attempt)
        return True, sim_value(key, [inputs[d] for d in task.deps])

    def expected(self, key: str) -> Any:
        """The value ``key`` must have wherever it is held."""
        if key in self._expected:
            return self._expected[key]
        if key in self.scattered:
            value = self.scattered[key][0]
        else:
            task = self.tasks[key]
            value = sim_value(key, [self.expected(d) for d in task.deps])
        self._expected[key] = value
        return value

    def closure(self, keys: Iterable[str]) -> set[str]:
        """``keys`` and everything they depend on, transitively."""
        out: set[str] = set()
        stack = list(keys)
        while stack:
            key = stack.pop()
            if key in out:
                continue
            out.add(key)
            task = self.tasks.get(key)
            if task is not None:
                stack.extend(task.deps)
        return out
