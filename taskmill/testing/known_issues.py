"""Known machine bugs and protocol gaps the simulation runs into, recognised as they happen.

Theory of operation
-------------------
The simulated shells know the ground truth the machines cannot see (what each
worker really holds, which incarnation of a worker a client put data on), so
they can tell, at the moment a message is delivered, that it is about to
trigger a known defect.  Each such moment is recorded in
:attr:`~taskmill.testing.scheduler.SimScheduler.known_issues` as
``(code, key, worker)``.  The random-scenario tests use the record to tell a
schedule that failed because of a known defect (counted and reported, each
defect pinned by an ``xfail`` test in ``tests/simulated/test_known_issues.py``)
from a new failure.  When a defect is fixed, its detector and the tolerance
go, and the ``xfail`` test starts passing (it is strict).

The detectors only look; they never change what is delivered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

#: A late ``add-keys`` from the worker the scheduler now has computing that
#: very key is answered with ``free-keys``, which cancels the computation:
#: the task stays ``processing`` forever (or its result is dropped).
ADD_KEYS_WHILE_PROCESSING = "add-keys-while-processing"
#: ``add-keys`` for a copy the worker was told to drop meanwhile (the
#: ``free-keys`` crossed it): the scheduler records a holder that has nothing.
STALE_ADD_KEYS = "stale-add-keys"
#: A late ``missing-data`` strikes off a copy the errant worker holds again
#: by now: the scheduler forgets a copy that exists (the worker keeps it).
STALE_MISSING_DATA = "stale-missing-data"
#: A ``task-finished`` from an earlier assignment of a key is taken for the
#: result of a new assignment of the same key to the same worker, while the
#: ``free-keys`` that ended the earlier one makes the worker drop the result:
#: the scheduler records a copy that does not exist.
STALE_TASK_FINISHED = "stale-task-finished"

DESCRIPTIONS = {
    ADD_KEYS_WHILE_PROCESSING: "scheduler frees a key on the worker it has computing that key "
                               "(late add-keys): the task is stuck processing",
    STALE_ADD_KEYS: "scheduler records a replica from an add-keys that crossed its free-keys",
    STALE_MISSING_DATA: "scheduler strikes off a valid copy on a late missing-data",
    STALE_TASK_FINISHED: "scheduler takes a task-finished of an earlier assignment, crossed by its "
                         "free-keys, for the result of a new one on the same worker",
}

Issue = tuple[str, str, str]
#: the simulated worker registered at an address (duck-typed: ``store``,
#: ``dropped``), or None
Peek = Callable[[str], Any]


def add_keys_issues(state: Any, address: str, nbytes: Iterable[str], peek: Peek,
                    queued_frees: Callable[[], set[str]]) -> list[Issue]:
    """Known defects an ``add-keys`` from ``address`` for ``nbytes``'s keys
    is about to trigger in the scheduler machine ``state``."""
    out: list[Issue] = []
    tasks = state.tasks
    frees: set[str] | None = None
    for key in nbytes:
        ts = tasks.get(key)
        if ts is None:
            continue
        if ts.processing_on is not None and ts.processing_on.address == address:
            out.append((ADD_KEYS_WHILE_PROCESSING, key, address))
        elif ts.state == "memory" and all(ws.address != address for ws in ts.who_has):
            worker = peek(address)
            if frees is None:
                frees = queued_frees()
            if worker is None or key not in worker.store or key in frees:
                out.append((STALE_ADD_KEYS, key, address))
    return out


def missing_data_issues(state: Any, errant: str, keys: Iterable[str], peek: Peek) -> list[Issue]:
    """Known defects a ``missing-data`` naming ``errant`` is about to trigger."""
    out: list[Issue] = []
    worker = peek(errant)
    if worker is None:
        return out
    tasks = state.tasks
    for key in keys:
        ts = tasks.get(key)
        if (ts is not None and ts.state == "memory" and any(ws.address == errant for ws in ts.who_has)
                and key in worker.store and key not in worker.dropped):
            out.append((STALE_MISSING_DATA, key, errant))
    return out


def task_finished_issues(state: Any, address: str, key: str, peek: Peek,
                         queued_frees: Callable[[], set[str]]) -> list[Issue]:
    """Known defects a ``task-finished`` from ``address`` is about to trigger:
    the scheduler will record the key on that worker, which dropped it
    already or is about to (a ``free-keys`` for it is on its way there)."""
    ts = state.tasks.get(key)
    if ts is not None and ts.processing_on is not None and ts.processing_on.address == address:
        worker = peek(address)
        if worker is not None and (key not in worker.store or key in queued_frees()):
            return [(STALE_TASK_FINISHED, key, address)]
    return []
