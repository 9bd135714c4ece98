"""The nanny's restart delays (taskmill.server.restart_backoff), without processes."""

from __future__ import annotations

from typing import Any

import pytest

from taskmill.server.restart_backoff import RestartBackoff


def test_one_death_restarts_at_once_and_a_streak_doubles_up_to_the_cap() -> None:
    backoff = RestartBackoff(initial=0.5, max=4.0, reset_after=60.0)
    assert [backoff.died(1.0) for _ in range(7)] == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.streak == 7


def test_a_worker_that_lived_long_enough_ends_the_streak() -> None:
    backoff = RestartBackoff(initial=1.0, max=30.0, reset_after=60.0)
    assert [backoff.died(5.0) for _ in range(3)] == [0.0, 1.0, 2.0]
    assert backoff.died(60.0) == 0.0  # lived a minute: counts as the first death again
    assert backoff.died(1.0) == 1.0


def test_the_options_set_the_delays(set_options: Any) -> None:
    set_options({"worker.restart-backoff.initial": "2s", "worker.restart-backoff.max": 3,
                 "worker.restart-backoff.reset-after": "off"})
    backoff = RestartBackoff.from_config()
    assert (backoff.initial, backoff.max, backoff.reset_after) == (2.0, 3.0, 0.0)
    assert [backoff.died(0.1) for _ in range(3)] == [0.0, 0.0, 0.0]  # every death is a first


def test_inconsistent_delays_are_refused_with_the_options_to_fix() -> None:
    with pytest.raises(ValueError, match=r"initial \(5s\) <= max \(1s\).*worker.restart-backoff"):
        RestartBackoff(initial=5.0, max=1.0, reset_after=60.0)
