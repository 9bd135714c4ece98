"""Machine defects and protocol gaps found by the simulated cluster, pinned.

Each test asserts what should happen and fails today (``xfail``, strict: a
fix makes it pass, and the test then asks for the detector in
``taskmill/testing/known_issues.py`` and its tolerance in the random
schedules to go).  The first is written out step by step; the others replay
a random schedule that runs into the defect (``python -m
taskmill.testing.random_scenarios --seed N`` shows it, with both machines'
stimulus logs).
"""

from __future__ import annotations

import pytest

from taskmill.testing import SimCluster, SimTask
from taskmill.testing import known_issues as ki
from taskmill.testing.random_scenarios import run_scenario


def _xfail(code: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=f"known defect {code}: {ki.DESCRIPTIONS[code]}")


@_xfail(ki.ADD_KEYS_WHILE_PROCESSING)
def test_a_late_add_keys_does_not_cancel_the_recomputation_it_crossed() -> None:
    cluster = SimCluster(2, seed=3)
    client = cluster.client()
    client.submit(SimTask("a-1"))
    cluster.run_until_idle()
    (holder,) = cluster.who_has("a-1")
    (other,) = [a for a in cluster.addresses if a != holder]
    copier = cluster.worker(other)
    cluster.replicate(["a-1"])
    cluster.run_until(lambda: "a-1" in copier.store)  # the copy landed; its add-keys is on its way
    dead = cluster.worker(holder).name
    cluster.kill(holder)
    cluster.deliver(dead)  # the scheduler sees the holder go first: "a-1" is recomputed on `other`
    assert cluster.state.tasks["a-1"].processing_on is not None
    cluster.run_until_idle(check=False)  # then the add-keys arrives, answered with free-keys
    assert cluster.problems() == []
    assert client.result("a-1") == cluster.expected("a-1")


@pytest.mark.parametrize(("code", "seed"), [
    pytest.param(ki.ADD_KEYS_WHILE_PROCESSING, 1406, marks=_xfail(ki.ADD_KEYS_WHILE_PROCESSING)),
    pytest.param(ki.STALE_TASK_FINISHED, 3111, marks=_xfail(ki.STALE_TASK_FINISHED)),
    pytest.param(ki.STALE_ADD_KEYS, 44, marks=_xfail(ki.STALE_ADD_KEYS)),
    pytest.param(ki.STALE_MISSING_DATA, 607, marks=_xfail(ki.STALE_MISSING_DATA)),
    pytest.param("stale-who-has", 18446),
    pytest.param("function-dropped", 38751),
    pytest.param("scatter-to-restarted-worker", 695),
    pytest.param("scatter-orphaned", 1289),
])
def test_the_schedule_that_met_the_defect_runs_clean(code: str, seed: int) -> None:
    result = run_scenario(seed)  # raises if the defect broke an invariant
    assert code not in {c for c, _, _ in result.known_issues}
