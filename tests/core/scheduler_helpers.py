"""Tiny builders for synchronous scheduler state-machine tests.

``Sched`` wraps a validating ``SchedulerState`` and remembers every command;
the module functions make events without boilerplate.  A worker message made
without ``seen`` (0) is sent as by a worker that has handled every message
the scheduler sent so far (``up_to_date``); a test of crossed messages gives
``seen`` itself (``Sched.epoch`` is the scheduler's latest).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Iterable, TypeVar

from taskmill.core.scheduler.events import (
    SchedulerCommand,
    SchedulerEvent,
    WorkerLeft,
)
from taskmill.protocol.vocabulary import (
    ComputeTask,
    FreeKeys,
    KeyCancelled,
    KeyErred,
    KeyInMemory,
    KeyLost,
    RegisterWorker,
    TaskErred,
    TaskFinished,
    TaskSpec,
    UpdateGraph,
)
from taskmill.core.scheduler.state import SchedulerState

C = TypeVar("C", bound=SchedulerCommand)
_ids = itertools.count()


def sid() -> str:
    return f"stim-{next(_ids)}"


def task(
    key: str,
    *deps: str,
    func: str | None = None,
    priority: tuple[int, ...] = (0,),
    retries: int = 0,
    workers: tuple[str, ...] | None = None,
    allow_other_workers: bool = False,
    resources: dict[str, float] | None = None,
) -> TaskSpec:
    """A TaskSpec whose function token is the key's prefix (or ``func``)."""
    token = func if func is not None else key.rpartition("-")[0] or key
    return TaskSpec(
        key=key,
        func_token=token,
        args=(key, deps),  # type: ignore[arg-type]
        dependencies=tuple(deps),
        priority=priority,
        retries=retries,
        workers=workers,
        allow_other_workers=allow_other_workers,
        resources=resources,
    )


def submit(tasks: Iterable[TaskSpec], wanted: Iterable[str] = (), client: str = "c1") -> UpdateGraph:
    tasks = tuple(tasks)
    funcs = {t.func_token: f"<func {t.func_token}>" for t in tasks}
    return UpdateGraph(sid(), client=client, tasks=tasks, wanted=tuple(wanted),
                       funcs=funcs)  # type: ignore[arg-type]


def join(addr: str, nthreads: int = 1, memory_limit: int = 2**30,
         resources: dict[str, float] | None = None) -> RegisterWorker:
    return RegisterWorker(stimulus_id=sid(), worker=addr, nthreads=nthreads, memory_limit=memory_limit, now=0.0,
                        resources=resources)


def leave(addr: str, reason: str = "connection closed") -> WorkerLeft:
    return WorkerLeft(sid(), worker=addr, reason=reason)


def finished(addr: str, key: str, nbytes: int = 8, duration: float = 1.0) -> TaskFinished:
    return TaskFinished(
        sid(), worker=addr, key=key, nbytes=nbytes, type_name="int", start=0.0, stop=duration
    )


def erred(addr: str, key: str, text: str = "ZeroDivisionError('boom')") -> TaskErred:
    return TaskErred(
        sid(), worker=addr, key=key, exception=f"<exc {key}>", traceback="<tb>", exception_text=text
    )


def up_to_date(state: SchedulerState, events: Iterable[SchedulerEvent]) -> tuple[SchedulerEvent, ...]:
    """``events``, each worker message without ``seen`` given the scheduler's
    latest ``epoch``: sent after its worker handled everything sent to it."""
    epoch = state.epoch
    return tuple(dataclasses.replace(e, seen=epoch) if getattr(e, "seen", None) == 0 else e  # type: ignore[arg-type]
                 for e in events)


def of(cmds: Iterable[SchedulerCommand], kind: type[C]) -> list[C]:
    return [c for c in cmds if isinstance(c, kind)]


class Sched:
    """A validating SchedulerState plus a log of all commands it produced."""

    def __init__(self, *workers: str | tuple[str, int], allowed_failures: int = 3,
                 look_ahead: bool = False) -> None:
        # look-ahead off by default: these tests follow one round trip per
        # task; tests/core/test_scheduler_look_ahead.py turns it on
        self.state = SchedulerState(allowed_failures=allowed_failures, validate=True,
                                    look_ahead=look_ahead)
        self.log: list[SchedulerCommand] = []
        for w in workers:
            if isinstance(w, tuple):
                self(join(w[0], w[1]))
            else:
                self(join(w))

    @property
    def epoch(self) -> int:
        """The ``epoch`` of the last message the scheduler sent a worker."""
        return self.state.epoch

    def __call__(self, *events: SchedulerEvent) -> list[SchedulerCommand]:
        cmds = self.state.handle(*up_to_date(self.state, events))
        self.log.extend(cmds)
        return cmds

    def computes(self, cmds: list[SchedulerCommand]) -> dict[str, str]:
        """key -> worker of the ComputeTask commands in ``cmds``."""
        return {c.key: c.worker for c in of(cmds, ComputeTask)}

    def processing(self) -> dict[str, str]:
        """key -> worker for every task processing now."""
        return {
            ts.key: ts.processing_on.address
            for ts in self.state.tasks.values()
            if ts.processing_on is not None
        }

    def run_all(self, limit: int = 10_000) -> None:
        """Finish every processing task (and those that become processing)."""
        for _ in range(limit):
            proc = self.processing()
            if not proc:
                return
            key, addr = next(iter(proc.items()))
            self(finished(addr, key))
        raise AssertionError("did not converge")

    def reports(self, client: str | None = None) -> list[Any]:
        kinds = (KeyInMemory, KeyErred, KeyLost, KeyCancelled)
        return [
            c for c in self.log if isinstance(c, kinds) and (client is None or c.client == client)
        ]

    def freed(self, cmds: list[SchedulerCommand] | None = None) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for c in of(self.log if cmds is None else cmds, FreeKeys):
            out.setdefault(c.worker, set()).update(c.keys)
        return out
