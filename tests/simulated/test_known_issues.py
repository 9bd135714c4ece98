"""Machine defects and protocol gaps found by the simulated cluster, pinned.

Each test asserts what should happen.  Those of defects still open fail
today (``xfail``, strict: a fix makes it pass, and the test then asks for the
detector in ``taskmill/testing/known_issues.py`` and its tolerance in the
random schedules to go).  The first is written out step by step; the others
replay a random schedule that runs into the defect (``python -m
taskmill.testing.random_scenarios --seed N`` shows it, with both machines'
stimulus logs).

Fixed defects keep their schedules here as regression tests: the simulated
scheduler shell checks, on every ``add-keys``, ``task-finished`` and
``missing-data``, that the machine records no copy a worker lacks or is
about to drop and strikes off none that exists (``SimScheduler._copy_check``).
"""

from __future__ import annotations

import pytest

from taskmill.testing import SimCluster, SimTask
from taskmill.testing import known_issues as ki
from taskmill.testing.random_scenarios import run_scenario


def _xfail(code: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=f"known defect {code}: {ki.DESCRIPTIONS[code]}")


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


@pytest.mark.parametrize("seed", [
    1406,  # add-keys-while-processing: a late add-keys freed the key its worker recomputed
    6153,  # stale-task-finished: an earlier run's result taken for a new assignment's
    44,  # stale-add-keys (as met: an add-keys from a worker dying meanwhile)
    2048,  # stale-add-keys: an add-keys that crossed a free-keys of the key
    607,  # stale-missing-data: a late missing-data struck off a copy made since
])
def test_the_schedule_that_met_a_fixed_defect_runs_clean(seed: int) -> None:
    run_scenario(seed)  # raises if a crossed message is mistaken again


@pytest.mark.parametrize(("code", "seed"), [
    pytest.param(ki.STALE_WHO_HAS, 18446, marks=_xfail(ki.STALE_WHO_HAS)),
    pytest.param(ki.FUNCTION_DROPPED, 38751, marks=_xfail(ki.FUNCTION_DROPPED)),
    pytest.param(ki.SCATTER_TO_RESTARTED, 695, marks=_xfail(ki.SCATTER_TO_RESTARTED)),
    pytest.param(ki.SCATTER_ORPHANED, 1289, marks=_xfail(ki.SCATTER_ORPHANED)),
])
def test_the_schedule_that_met_the_defect_runs_clean(code: str, seed: int) -> None:
    result = run_scenario(seed)  # raises if the defect broke an invariant
    assert code not in {c for c, _, _ in result.known_issues}
