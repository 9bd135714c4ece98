"""Worker processes import heavy libraries in the background before their first task."""

from __future__ import annotations

import logging
import sys

import pytest

from taskmill.server.warmup import modules_to_preload, start_warm_imports


def test_defaults_then_user_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMILL_PRELOAD", " json , numpy,,")
    modules = modules_to_preload()
    assert modules[:2] == ["numpy", "dask"]  # both installed in the test environment
    assert modules[2:] == ["json"]  # numpy is not repeated


def test_imports_in_a_thread_and_reports_failures(caplog: pytest.LogCaptureFixture) -> None:
    sys.modules.pop("colorsys", None)
    with caplog.at_level(logging.WARNING, logger="taskmill.worker"):
        thread = start_warm_imports(["no_such_module_for_taskmill", "colorsys"])
        assert thread is not None
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert "colorsys" in sys.modules  # a failing module does not stop the rest
    assert "could not preload module 'no_such_module_for_taskmill'" in caplog.text
    assert start_warm_imports([]) is None
