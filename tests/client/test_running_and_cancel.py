"""``Future.running()``, ``Future.cancel()`` and ``Executor.cancel(force=)``
on an embedded cluster whose workers run in this process, so a task can block
on a gate (a ``threading.Event``) that the test opens: "running" and "stuck"
are deterministic, and every wait has a deadline."""

from __future__ import annotations

import concurrent.futures as cf

import pytest

from taskmill import Executor
from tests.client.gates import GATES, STARTED, gated  # noqa: F401 (tasks look them up here)
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)

DEADLINE = 10.0


def inc(x: int) -> int:
    return x + 1


def test_a_future_runs_while_its_call_runs_and_then_cannot_be_cancelled(executor, gates):
    name = gates.new()
    f = executor.submit(gated, name, 7, pure=False)
    gates.wait_started(name)
    wait_for(f.running, DEADLINE, message="Future.running()")
    assert not f.done() and f.status == "pending"
    assert f.cancel() is False  # the standard library's answer for a call that runs
    assert not f.cancelled() and f.running()
    same_key = executor.submit(gated, name, 7, key=f.key)  # another Future of that key runs too
    assert same_key.running()
    gates.open(name)
    assert f.result(DEADLINE) == 7 and same_key.result(DEADLINE) == 7
    assert not f.running() and f.done()


def test_a_future_whose_call_has_not_started_is_not_running_and_cancels(executor, gates):
    names = [gates.new() for _ in range(2)]
    busy = [executor.submit(gated, n, pure=False) for n in names]  # both threads
    for n in names:
        gates.wait_started(n)
    queued = executor.submit(inc, 1, pure=False)
    assert not queued.running()
    assert queued.cancel() is True and queued.cancelled()
    for n in names:
        gates.open(n)
    assert [f.result(DEADLINE) for f in busy] == [None, None]


def test_executor_cancel_cancels_a_running_call_dask_style(executor, gates):
    name = gates.new()
    f = executor.submit(gated, name, pure=False)
    wait_for(f.running, DEADLINE, message="Future.running()")
    executor.cancel(f)
    assert f.cancelled() and f.status == "cancelled" and not f.running()
    with pytest.raises(cf.CancelledError):
        f.result(DEADLINE)
    gates.open(name)  # the call ends on its thread; its outcome is dropped
    assert executor.submit(inc, 41, pure=False).result(DEADLINE) == 42


def test_a_forced_cancel_frees_the_thread_of_a_call_still_blocked(gates):
    with Executor(n_workers=1, threads_per_worker=1, processes=False, dashboard_port=None) as e:
        plain, forced = gates.new(), gates.new()
        stuck = e.submit(gated, plain, pure=False)
        gates.wait_started(plain)
        e.cancel(stuck)  # dask's cancel: released, but the call keeps its thread
        after_plain = e.submit(inc, 1, pure=False)
        with pytest.raises(TimeoutError):
            after_plain.result(0.5)
        gates.open(plain)
        assert after_plain.result(DEADLINE) == 2

        stuck = e.submit(gated, forced, pure=False)
        gates.wait_started(forced)
        e.cancel(stuck, force=True)  # the worker abandons the call and frees its slot
        assert stuck.cancelled()
        assert e.submit(inc, 2, pure=False).result(DEADLINE) == 3
        assert not GATES[forced].is_set() and STARTED[forced].is_set()  # still blocked
        assert e.map(inc, range(5), pure=False) and e.gather(e.map(inc, range(5))) == [1, 2, 3, 4, 5]
        gates.open(forced)
