"""The worker's side of copies the scheduler asks for (``AcquireReplicas``).

Theory of operation
-------------------
The scheduler asks a worker for copies of keys (``Executor.replicate``,
retiring a peer) with ``acquire-replicas``.  Each key takes the worker's
ordinary fetch path (``fetch`` -> ``flight`` -> ``memory``; ``missing`` and a
``who-has`` question when no holder answers) as a record kept because the
scheduler wants the data here (``held``), queued behind the inputs of tasks
(``REPLICA_PRIORITY``).  When the data arrives it is announced with
``add-keys`` like any fetched copy, and it stays until the scheduler frees it;
a ``FreeKeys`` drops it at any point of the way.

A key already here is announced at once.  A key this worker is computing or
failed to compute itself is declined with ``released-keys``: the scheduler
then strikes this worker off and looks elsewhere.

This is part of the pure worker state machine
(:class:`~taskmill.core.worker.state.WorkerState`); it is kept in its own
module and drives the machine through its internal helpers.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from taskmill.protocol.vocabulary import (
    AcquireReplicas,
    AddKeys,
    Key,
    Priority,
    ReleasedKeys,
)
from taskmill.core.worker.records import CANCELLED, FETCH, FLIGHT, MEMORY, MISSING

if TYPE_CHECKING:
    from taskmill.core.worker.state import WorkerState

#: Copies are fetched after the inputs of every task (lower sorts first).
REPLICA_PRIORITY: Priority = (sys.maxsize,)


def acquire_replicas(state: WorkerState, ev: AcquireReplicas) -> None:
    """Handle ``ev`` on ``state`` (see the module docstring)."""
    announce: dict[Key, int] = {}
    declined: list[Key] = []
    for key, holders in ev.who_has.items():
        ts = state.tasks.get(key)
        if ts is None:
            ts = state._new(key, REPLICA_PRIORITY)
            ts.held = True
            ts.nbytes = ev.nbytes.get(key, 0)
            state._fq.add_holders(ts, holders)
            state._to_fetch_or_missing(ts)
            continue
        st = ts.state
        if st == MEMORY:
            ts.held = True
            announce[key] = ts.nbytes
        elif st in (FETCH, FLIGHT, MISSING) or (st == CANCELLED and ts.previous == FLIGHT):
            ts.held = True
            state._track_input(ts, holders, ts.priority)
        else:
            state._note(key, "ignored", f"copy requested while {st}: declined")
            declined.append(key)
    if announce:
        state._out.append(AddKeys(ev.stimulus_id, state.address, announce))
    if declined:
        state._out.append(ReleasedKeys(ev.stimulus_id, state.address, tuple(declined)))
