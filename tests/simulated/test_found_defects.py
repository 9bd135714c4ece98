"""Regression tests: the machine defects and protocol gaps the simulated cluster found.

Random schedules on the simulated cluster found each of these; each is fixed,
and its schedule stays here (``python -m taskmill.testing.random_scenarios
--seed N`` runs one, with both machines' stimulus logs on a failure).  The
simulated scheduler shell checks, on every ``add-keys``, ``task-finished``
and ``missing-data``, that the machine records no copy a worker lacks or is
about to drop and strikes off none that exists (``SimScheduler._copy_check``),
so a regression fails these schedules.  The first case is written out step
by step.
"""

from __future__ import annotations

import pytest

from taskmill.testing import SimCluster, SimTask
from taskmill.testing.random_scenarios import run_scenario


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
    cluster.run_until_idle(check=False)  # then the late add-keys arrives
    assert cluster.problems() == []
    assert client.result("a-1") == cluster.expected("a-1")


@pytest.mark.parametrize("seed", [
    1406,   # add-keys-while-processing: a late add-keys freed the key its worker recomputed
    3111,   # stale-task-finished: an earlier run's result taken for a new assignment's
    6153,   # stale-task-finished, as first met
    44,     # stale-add-keys, as met: an add-keys from a worker dying meanwhile
    2048,   # stale-add-keys: an add-keys that crossed a free-keys of the key
    607,    # stale-missing-data: a late missing-data struck off a copy made since
    18446,  # stale-who-has: an old who-has answer struck off holders learnt since
    38751,  # function-dropped: a compute-task's function lost when the key was already here
    695,    # scatter-to-restarted-worker: a restarted worker credited with data it lacks
    1289,   # scatter-orphaned: data put by a client that vanished before scatter-done
])
def test_the_schedule_that_met_a_defect_runs_clean(seed: int) -> None:
    run_scenario(seed)  # raises, naming the broken invariant, if the defect is back
