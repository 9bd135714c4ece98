"""``make demo``'s example runs both interfaces and, without a terminal, does not wait."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(180)


def test_the_demo_runs_both_interfaces_and_does_not_wait_without_a_terminal() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py")],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=150,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "submit(add, submit(inc, 1), submit(inc, 100)).result() = 103" in out
    assert "dask: mean = 0.5" in out or "dask: mean = 0.4" in out
    assert "dashboard: http" in out
    assert out.rstrip().endswith("closed cleanly")
    assert "press Enter" not in out
