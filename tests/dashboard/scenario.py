"""A small scheduler scenario and the task-stream wire decoder, shared by the
dashboard's unit tests."""

from __future__ import annotations

import base64
from array import array
from typing import Any

from taskmill.dashboard.monitor import SchedulerMonitor
from taskmill.protocol import serialize
from taskmill.protocol.vocabulary import TaskErred, TaskFinished
from tests.core.scheduler_helpers import Sched, erred, finished, submit, task


def done(worker: str, key: str, start: float, stop: float, transfer: float = 0.0,
         ok: bool = True) -> TaskFinished | TaskErred:
    """A worker's ``task-finished`` (or, not ``ok``, ``task-erred``) message."""
    if ok:
        return TaskFinished("s", worker, key, 8, "int", start, stop, transfer=transfer)
    return TaskErred("s", worker, key, serialize(ValueError()), "tb", "ValueError", start, stop,
                     transfer=transfer)


def scenario() -> tuple[Sched, SchedulerMonitor]:
    """Two workers; inc-0..3 finish, bad-0 errs, dec-0 depends on bad-0, inc-4/5 still to run."""
    s = Sched(("w1", 2), ("w2", 1))
    mon = SchedulerMonitor()
    keys = [f"inc-{i}" for i in range(6)]
    s(submit([task(k) for k in keys] + [task("bad-0"), task("dec-0", "bad-0")],
             wanted=keys + ["bad-0", "dec-0"]))
    for i, k in enumerate(keys[:4]):
        worker = s.processing()[k]
        s(finished(worker, k))
        mon.task_done(done(worker, k, 10.0 + i, 11.0 + i, ok=True))
    worker = s.processing()["bad-0"]
    s(erred(worker, "bad-0", "ValueError: nope"))
    mon.task_done(done(worker, "bad-0", 20.0, 20.5, ok=False))
    return s, mon


def decode_stream(stream: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The wire's columns back into (key, worker, start, stop, transfer, ok) rows."""
    def col(name: str, code: str) -> list[Any]:
        return list(array(code, base64.b64decode(stream[name])))
    workers = [stream["workers"][i] for i in col("worker", "I")]
    return list(zip(stream["keys"], workers, col("start", "d"), col("stop", "d"),
                    col("transfer", "d"), [bool(ok) for ok in col("ok", "B")]))
