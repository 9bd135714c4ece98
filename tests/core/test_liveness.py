"""The time-to-live failure detector (taskmill.core.liveness), with a clock in hand."""

from __future__ import annotations

import pytest

from taskmill.core.liveness import Liveness


def test_a_peer_is_expired_only_once_silent_past_the_ttl() -> None:
    live: Liveness[str] = Liveness(10.0, interval=1.0)
    live.heard("a", 0.0)
    live.heard("b", 0.0)
    for now in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0):
        live.heard("b", now)  # b keeps talking
        assert live.expired(now) == []
    assert live.expired(10.5) == ["a"]
    assert live.silent_for("a", 10.5) == 10.5
    live.forget("a")
    assert live.expired(11.0) == []


def test_any_sign_of_life_resets_the_silence() -> None:
    live: Liveness[str] = Liveness(3.0, interval=1.0)
    live.heard("a", 0.0)
    for now in (1.0, 2.0, 2.9):
        assert live.expired(now) == []
    live.heard("a", 2.9)
    for now in (4.0, 5.0, 5.8):
        assert live.expired(now) == []
    assert live.expired(6.0) == ["a"]


def test_a_watcher_that_stalled_blames_nobody_for_its_own_silence() -> None:
    live: Liveness[str] = Liveness(10.0, interval=1.0)
    live.heard("a", 0.0)
    assert live.expired(1.0) == []
    # the watcher's loop was blocked (or its process stopped) for 20 s: the peers'
    # messages are waiting unread, so their silence says nothing
    assert live.expired(21.0) == []
    assert live.silent_for("a", 21.0) == 0.0
    # checked regularly again, a peer that stays silent is expired a TTL later
    for now in range(22, 32):
        assert live.expired(float(now)) == []
    assert live.expired(31.5) == ["a"]


def test_a_first_check_that_comes_late_is_a_stall_too() -> None:
    live: Liveness[str] = Liveness(2.0, interval=0.5)
    live.heard("a", 10.0)  # the watcher stops before it ever checked
    assert live.expired(14.0) == []
    assert live.silent_for("a", 14.0) == 0.0


def test_checks_a_little_late_still_expire() -> None:
    live: Liveness[str] = Liveness(6.0, interval=1.0)
    live.heard("a", 0.0)
    for now in (2.9, 5.8):  # each check 1.9 s late: under half the TTL (3 s)
        assert live.expired(now) == []
    assert live.expired(7.5) == ["a"]


@pytest.mark.parametrize("ttl", [0, -1.0])
def test_a_ttl_must_be_positive(ttl: float) -> None:
    with pytest.raises(ValueError, match="scheduler.worker-ttl"):
        Liveness(ttl)
