"""Durations as the command line and the options write them."""

from __future__ import annotations

import pytest

from taskmill import config_checks
from taskmill.units import parse_seconds


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("5m", 300), ("1h", 3600), ("1.5h", 5400),
                                           ("250ms", 0.25), ("2", 2), (3, 3), ("1 d", 86400)])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5 fortnights", "-1s", "1h30m"])
def test_bad_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="write e.g. '90s', '5m', '1h'"):
        parse_seconds(text)


@pytest.mark.parametrize("value, seconds", [(None, None), ("off", None), (False, None), ("", None),
                                            ("1h", 3600), (0, 0), ("2.5", 2.5)])
def test_duration_options(value: object, seconds: float | None) -> None:
    assert config_checks.duration(value) == seconds


@pytest.mark.parametrize("value", [-1, "soon"])
def test_bad_duration_options(value: object) -> None:
    with pytest.raises(ValueError, match="90s"):
        config_checks.duration(value)


@pytest.mark.parametrize("value, seconds", [(0, 0.0), ("0", 0.0), (1, 1.0), ("0.25", 0.25)])
def test_delays_may_be_zero(value: object, seconds: float) -> None:
    """A delay of 0 means at once (``worker.warmup-delay``); a duration check would refuse it."""
    assert config_checks.delay(value) == seconds


@pytest.mark.parametrize("value", [-1, "soon", True, None])
def test_bad_delays_say_what_is_expected(value: object) -> None:
    with pytest.raises(ValueError, match=r"seconds >= 0 \(0: at once\)"):
        config_checks.delay(value)
