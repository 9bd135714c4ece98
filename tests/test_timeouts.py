"""taskmill.timeouts: values from the environment, clear errors for bad ones."""

from __future__ import annotations

import pytest

from taskmill import timeouts


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKMILL_RETIRE_TIMEOUT", raising=False)
    assert timeouts.RETIRE.get() == 30.0
    monkeypatch.setenv("TASKMILL_RETIRE_TIMEOUT", "2.5")
    assert timeouts.RETIRE.get() == 2.5
    assert timeouts.seconds(timeouts.RETIRE) == (2.5, " (set TASKMILL_RETIRE_TIMEOUT to change it)")
    assert timeouts.seconds(4.0) == (4.0, "")


@pytest.mark.parametrize("bad", ["soon", "0", "-3", "nan"])
def test_bad_values_say_what_is_wrong(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("TASKMILL_DATA_TIMEOUT", bad)
    with pytest.raises(ValueError, match=r"TASKMILL_DATA_TIMEOUT=.* number of seconds > 0 .*get-data"):
        timeouts.DATA.get()
