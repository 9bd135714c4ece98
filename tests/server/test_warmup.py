"""Worker processes import heavy libraries in the background before their first task."""

from __future__ import annotations

import fractions
import logging
import pickle
import sys
import threading
from typing import Any

import cloudpickle
import pytest

from taskmill import Executor
from taskmill.server.warmup import ImportGate, modules_to_preload, start_warm_imports
from tests.server.worker_options import worker_process_with_env


def test_defaults_then_user_modules(set_environment: Any) -> None:
    set_environment({"TASKMILL_PRELOAD": " json , numpy,,"})  # the old variable: a comma-separated list
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


def _load_in_thread(gate: ImportGate, payload: bytes) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(gate.loads(payload)), daemon=True)
    thread.start()
    return thread, out


@pytest.mark.parametrize("payload", [
    pickle.dumps(fractions.Fraction(1, 3)),  # names a class of the module
    cloudpickle.dumps(lambda: fractions.Fraction(1, 3)),  # by value: cloudpickle's subimport
], ids=["class", "by-value function"])
def test_a_payload_needing_a_module_waits_for_the_warm_up_s_turn(payload: bytes) -> None:
    gate = ImportGate()
    gate.settled = gate.settled - {"fractions"}  # as if the warm-up had not imported it yet
    with gate.turn:  # the warm-up is importing a module
        thread, out = _load_in_thread(gate, payload)
        thread.join(timeout=0.2)
        assert thread.is_alive() and not out  # held back while the warm-up imports
    thread.join(timeout=10)  # its turn: the warm-up goes on with its next module afterwards
    value = out[0]
    assert (value() if callable(value) else value) == fractions.Fraction(1, 3)


def test_a_payload_needing_a_module_does_not_wait_for_the_whole_warm_up() -> None:
    gate = ImportGate()  # never opened: the warm-up has not started, or is between modules
    gate.settled = gate.settled - {"fractions"}
    thread, out = _load_in_thread(gate, pickle.dumps(fractions.Fraction(1, 3)))
    thread.join(timeout=10)
    assert out == [fractions.Fraction(1, 3)]


def test_the_warm_up_waits_its_delay_and_for_a_payload_s_turn() -> None:
    sys.modules.pop("colorsys", None)
    thread = start_warm_imports(["colorsys"], delay=0.2)
    assert thread is not None
    gate = sys.modules["taskmill.protocol.serialize"]._loads.__self__  # the gate it installed
    with gate.turn:  # a payload is importing
        thread.join(timeout=0.5)
        assert thread.is_alive() and "colorsys" not in sys.modules
    thread.join(timeout=30)
    assert "colorsys" in sys.modules and gate.done.is_set()


def test_a_payload_of_settled_modules_does_not_wait() -> None:
    gate = ImportGate()  # never opened
    thread, out = _load_in_thread(gate, cloudpickle.dumps((lambda x: x + 1, [1, "a", b"b"])))
    thread.join(timeout=10)
    fn, rest = out[0]  # type: ignore[misc]
    assert fn(1) == 2 and rest == [1, "a", b"b"]


def test_warm_up_restores_plain_unpickling() -> None:
    serialize_module = sys.modules["taskmill.protocol.serialize"]
    thread = start_warm_imports(["colorsys"])
    assert thread is not None
    thread.join(timeout=30)
    assert serialize_module._loads is pickle.loads


def test_first_scatter_of_an_array_in_fresh_workers() -> None:
    """Regression: the warm-up's numpy import raced the unpickling of the first
    scattered array ("partially initialized module 'numpy._core.numeric'") in
    about one fresh worker of two."""
    np = pytest.importorskip("numpy")
    for _ in range(3):
        with Executor(n_workers=2) as e:
            [x] = e.scatter([np.arange(10)], broadcast=True)
            assert e.submit(lambda a: int(np.sum(a)), x).result(timeout=30) == 45


def test_a_bad_warmup_option_stops_the_worker_process_before_it_registers() -> None:
    """Read at start, not after registering: a worker that took tasks and then
    died on its options would be retried until its tasks erred KilledWorker."""
    proc = worker_process_with_env(TASKMILL_WORKER__WARMUP_DELAY="soon")
    assert proc.returncode == 1
    assert "option worker.warmup-delay = 'soon' from the environment variable" in proc.stderr
    assert "give a number of seconds >= 0 (0: at once)" in proc.stderr
