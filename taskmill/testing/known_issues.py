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

from collections.abc import Callable
from typing import Any

#: A worker's ``who-has`` answer that arrives after the key was freed and
#: requested again strikes off the holders learnt since and leaves the key
#: ``missing`` without asking again: the copy (or input) never arrives.
STALE_WHO_HAS = "stale-who-has"
#: A ``compute-task`` carrying a function, for a key the worker already
#: holds (or runs), is answered without keeping the function; the scheduler
#: never sends it again, so the next task of that function runs without it.
FUNCTION_DROPPED = "function-dropped"
#: ``scatter-done`` names a worker address, not a process: when the worker
#: at that address restarted between ``put-data`` and ``scatter-done``, the
#: scheduler credits the wrong process with the data.
SCATTER_TO_RESTARTED = "scatter-to-restarted-worker"
#: A client that vanishes between ``put-data`` and ``scatter-done`` leaves
#: data on workers that the scheduler never hears of (never freed).
SCATTER_ORPHANED = "scatter-orphaned"

DESCRIPTIONS = {
    STALE_WHO_HAS: "worker takes a stale who-has answer over fresher holders and leaves the key "
                   "missing without asking again",
    FUNCTION_DROPPED: "worker drops the function that came with a compute-task for a key it "
                      "already holds; a later task of that function runs without it",
    SCATTER_TO_RESTARTED: "scatter-done credits a restarted worker (same address) with data it lacks",
    SCATTER_ORPHANED: "data put by a client that vanished before scatter-done is never freed",
}

Issue = tuple[str, str, str]
#: the simulated worker registered at an address (duck-typed: ``store``,
#: ``dropped``), or None
Peek = Callable[[str], Any]


def who_has_issues(state: Any, address: str, answer: dict[str, tuple[str, ...]]) -> list[Issue]:
    """Known defects a ``who-has`` answer is about to trigger in the worker machine ``state``."""
    out: list[Issue] = []
    for key, holders in answer.items():
        rec = state.tasks.get(key)
        if (rec is not None and rec.state == "fetch" and rec.who_has
                and not rec.who_has.keys() & {h for h in holders if h != address}):
            out.append((STALE_WHO_HAS, key, address))
    return out
