"""A worker's lifetime, moved by its stagger."""

from __future__ import annotations

from taskmill.server.worker import staggered


def test_no_lifetime_means_never() -> None:
    assert staggered(None, 60.0) is None


def test_stagger_spreads_lifetimes_within_its_bounds() -> None:
    drawn = {staggered(100.0, 10.0) for _ in range(200)}
    assert all(d is not None and 90.0 <= d <= 110.0 for d in drawn)
    assert len(drawn) > 100  # workers of one job leave at different times
    assert staggered(100.0, 0.0) == 100.0


def test_a_stagger_beyond_the_lifetime_never_goes_negative() -> None:
    assert all((staggered(1.0, 5.0) or 0.0) >= 0.0 for _ in range(200))
