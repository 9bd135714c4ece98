"""taskmill.timeouts: values from the configuration, clear errors for bad ones."""

from __future__ import annotations

from typing import Any

import pytest

from taskmill import timeouts


def test_defaults_options_and_old_variables(set_environment: Any, set_options: Any) -> None:
    set_environment({"TASKMILL_RETIRE_TIMEOUT": None, "TASKMILL_COMM__TIMEOUTS__RETIRE": None})
    assert timeouts.RETIRE.get() == 30.0
    set_environment({"TASKMILL_RETIRE_TIMEOUT": "2.5"})  # the old name still works
    assert timeouts.RETIRE.get() == 2.5
    assert timeouts.seconds(timeouts.RETIRE) == (
        2.5, " (set TASKMILL_RETIRE_TIMEOUT or the option comm.timeouts.retire to change it)")
    set_options({"comm.timeouts.retire": 4})  # read at use: a set applies at once
    assert timeouts.RETIRE.get() == 4.0
    assert timeouts.seconds(4.0) == (4.0, "")


@pytest.mark.parametrize("bad", ["soon", "0", "-3", "nan"])
def test_bad_values_say_what_is_wrong(set_environment: Any, bad: str) -> None:
    set_environment({"TASKMILL_DATA_TIMEOUT": bad})
    with pytest.raises(ValueError, match=r"option comm.timeouts.data = .* from the environment variable "
                                         r"TASKMILL_DATA_TIMEOUT .*number of seconds > 0 .*get-data"):
        timeouts.DATA.get()
