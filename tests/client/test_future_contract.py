"""taskmill.Future honours the ``concurrent.futures.Future`` contract.

API.md: a Future is a subclass of ``concurrent.futures.Future``, so the
standard library's ``wait`` and ``as_completed`` accept it; a task that raised
re-raises the same exception type from ``result()`` with the remote traceback
attached (DESIGN.md principle 5: as ``__cause__``, as
``concurrent.futures.process`` does) and a message naming the task and worker.

The cluster's workers run in this process (``processes=False``), so the task
functions below are pickled by reference and share this module's globals: a
task can block on a ``threading.Event`` ("gate") that the test opens, which
makes "slow" and "still pending" deterministic without sleeping.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time

import pytest

import taskmill
from taskmill import Executor, Future

from tests.client.gates import GATES as _GATES, STARTED as _STARTED, gated  # noqa: E402,F401

pytestmark = pytest.mark.timeout(60)

DEADLINE = 10.0  # generous upper bound for anything that should happen "soon"

# --------------------------------------------------------------------------- #
# Tasks (module level: pickled by reference, run in this process)
# --------------------------------------------------------------------------- #


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def total(xs):
    return sum(xs)


def dict_total(d):
    return sum(d.values())


def identity(x):
    return x


def gates_id():
    return id(_GATES)


def raise_value_error_in_task(x):
    raise ValueError(f"bad value {x}")





@pytest.fixture
def blocked(executor, gates):
    """A future whose task does not finish until the test opens its gate."""

    def make(value=None):
        name = gates.new()
        fut = executor.submit(gated, name, value, pure=False)
        return fut, (lambda: gates.open(name))

    return make


@pytest.fixture
def occupied(executor, gates):
    """Both worker threads busy with gated tasks (so new tasks stay queued)."""
    names = [gates.new() for _ in range(2)]
    futs = [executor.submit(gated, n, i, pure=False) for i, n in enumerate(names)]
    for n in names:
        gates.wait_started(n)
    yield futs
    gates.open_all()


def test_tasks_share_this_module(executor):
    # The gate mechanism relies on in-process workers importing this module.
    assert executor.submit(gates_id, pure=False).result(DEADLINE) == id(_GATES)


# --------------------------------------------------------------------------- #
# Type
# --------------------------------------------------------------------------- #
def test_future_is_a_concurrent_futures_future(executor):
    assert issubclass(Future, cf.Future)
    f = executor.submit(inc, 1)
    assert isinstance(f, cf.Future)
    assert isinstance(f, taskmill.Future)
    assert f.result(DEADLINE) == 2
    assert f.done()
    assert not f.cancelled()
    assert f.status == "finished"


# --------------------------------------------------------------------------- #
# concurrent.futures.wait
# --------------------------------------------------------------------------- #
def test_stdlib_wait_all_completed(executor):
    fs = [executor.submit(inc, i) for i in range(10)]
    done, not_done = cf.wait(fs, timeout=DEADLINE, return_when=cf.ALL_COMPLETED)
    assert done == set(fs)
    assert not_done == set()
    assert [f.result() for f in fs] == list(range(1, 11))


def test_stdlib_wait_all_completed_times_out(executor, blocked):
    quick = executor.submit(inc, 100)
    slow, release = blocked()
    start = time.monotonic()
    done, not_done = cf.wait([quick, slow], timeout=1.0, return_when=cf.ALL_COMPLETED)
    elapsed = time.monotonic() - start
    assert done == {quick}
    assert not_done == {slow}
    assert 0.9 <= elapsed < DEADLINE
    release()
    done, not_done = cf.wait([quick, slow], timeout=DEADLINE)
    assert not_done == set()


def test_stdlib_wait_first_completed(executor, blocked):
    slow, release = blocked("slow")
    quick = executor.submit(inc, 200)
    done, not_done = cf.wait([slow, quick], timeout=DEADLINE, return_when=cf.FIRST_COMPLETED)
    assert done == {quick}
    assert not_done == {slow}
    release()
    done, not_done = cf.wait([slow], timeout=DEADLINE, return_when=cf.FIRST_COMPLETED)
    assert done == {slow}
    assert slow.result() == "slow"


def test_stdlib_wait_first_completed_times_out(blocked):
    slow, release = blocked()
    done, not_done = cf.wait([slow], timeout=0.2, return_when=cf.FIRST_COMPLETED)
    assert done == set()
    assert not_done == {slow}
    release()


def test_stdlib_wait_first_exception(executor, blocked):
    slow, release = blocked()
    bad = executor.submit(raise_value_error_in_task, 1)
    done, not_done = cf.wait([slow, bad], timeout=DEADLINE, return_when=cf.FIRST_EXCEPTION)
    assert done == {bad}
    assert not_done == {slow}
    assert isinstance(bad.exception(), ValueError)
    release()


def test_stdlib_wait_first_exception_without_errors_waits_for_all(executor):
    fs = [executor.submit(inc, i) for i in range(300, 305)]
    done, not_done = cf.wait(fs, timeout=DEADLINE, return_when=cf.FIRST_EXCEPTION)
    assert done == set(fs)
    assert not_done == set()


def test_stdlib_wait_on_already_done_futures(executor):
    f = executor.submit(inc, 400)
    assert f.result(DEADLINE) == 401
    done, not_done = cf.wait([f], timeout=0)
    assert done == {f} and not_done == set()


# --------------------------------------------------------------------------- #
# concurrent.futures.as_completed
# --------------------------------------------------------------------------- #
def test_stdlib_as_completed_yields_every_future(executor):
    fs = [executor.submit(inc, i) for i in range(500, 510)]
    seen = list(cf.as_completed(fs, timeout=DEADLINE))
    assert sorted(seen, key=id) == sorted(fs, key=id)
    assert sorted(f.result() for f in seen) == list(range(501, 511))


def test_stdlib_as_completed_in_completion_order(executor, blocked):
    slow, release = blocked("slow")
    quick = executor.submit(inc, 600)
    it = cf.as_completed([slow, quick], timeout=DEADLINE)
    assert next(it) is quick
    release()
    assert next(it) is slow
    with pytest.raises(StopIteration):
        next(it)


def test_stdlib_as_completed_timeout_raises(executor, blocked):
    slow, release = blocked()
    quick = executor.submit(inc, 700)
    got = []
    with pytest.raises(cf.TimeoutError):
        for f in cf.as_completed([quick, slow], timeout=1.0):
            got.append(f)
    assert got == [quick]
    assert issubclass(cf.TimeoutError, TimeoutError)
    release()


def test_stdlib_as_completed_includes_failed_futures(executor):
    good = executor.submit(inc, 800)
    bad = executor.submit(raise_value_error_in_task, 800)
    seen = set(cf.as_completed([good, bad], timeout=DEADLINE))
    assert seen == {good, bad}
    assert isinstance(bad.exception(), ValueError)


# --------------------------------------------------------------------------- #
# result / exception / done / status
# --------------------------------------------------------------------------- #
def test_result_timeout_raises_timeout_error_and_future_stays_usable(blocked):
    slow, release = blocked(42)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        slow.result(timeout=0.2)
    assert time.monotonic() - start >= 0.15
    assert not slow.done()
    assert slow.status == "pending"
    release()
    assert slow.result(timeout=DEADLINE) == 42


def test_result_timeout_zero_on_pending_future(blocked):
    slow, release = blocked()
    with pytest.raises(cf.TimeoutError):
        slow.result(timeout=0)
    release()


def test_exception_returns_the_error_or_none(executor, blocked):
    good = executor.submit(inc, 900)
    bad = executor.submit(raise_value_error_in_task, 900)
    assert good.exception(timeout=DEADLINE) is None
    exc = bad.exception(timeout=DEADLINE)
    assert isinstance(exc, ValueError)
    assert "bad value 900" in str(exc)
    slow, release = blocked()
    with pytest.raises(TimeoutError):
        slow.exception(timeout=0.1)
    release()
    assert slow.exception(timeout=DEADLINE) is None


def test_done_and_cancelled_flags(executor, blocked):
    slow, release = blocked()
    assert not slow.done()
    assert not slow.cancelled()
    release()
    slow.result(DEADLINE)
    assert slow.done()
    assert not slow.cancelled()


def test_status_values(executor, blocked):
    pending, release = blocked()
    assert pending.status == "pending"
    good = executor.submit(inc, 1001)
    bad = executor.submit(raise_value_error_in_task, 1001)
    cf.wait([good, bad], timeout=DEADLINE)
    assert good.status == "finished"
    assert bad.status == "error"
    assert pending.status == "pending"
    assert pending.cancel() is True
    assert pending.status == "cancelled"
    release()


def test_error_status_reported_by_done_future(executor):
    bad = executor.submit(raise_value_error_in_task, 1100)
    cf.wait([bad], timeout=DEADLINE)
    assert bad.done()
    assert not bad.cancelled()
    assert bad.status == "error"


# --------------------------------------------------------------------------- #
# cancel
# --------------------------------------------------------------------------- #
def test_cancel_pending_task(executor, occupied):
    queued = executor.submit(inc, 1200, pure=False)
    assert queued.cancel() is True
    assert queued.cancelled()
    assert queued.done()
    assert queued.status == "cancelled"
    with pytest.raises(cf.CancelledError):
        queued.result(timeout=DEADLINE)
    with pytest.raises(cf.CancelledError):
        queued.exception(timeout=DEADLINE)
    assert queued.cancel() is True  # cancelling twice is fine and still True


def test_stdlib_wait_sees_cancelled_future(executor, occupied):
    queued = executor.submit(inc, 1250, pure=False)
    assert queued.cancel()
    done, not_done = cf.wait([queued], timeout=1.0)
    assert done == {queued}
    assert not_done == set()


def test_taskmill_wait_sees_cancelled_future(executor, occupied):
    queued = executor.submit(inc, 1260, pure=False)
    assert queued.cancel()
    done, not_done = taskmill.wait([queued], timeout=1.0)
    assert done == {queued}


def test_stdlib_as_completed_yields_cancelled_future(executor, occupied):
    queued = executor.submit(inc, 1270, pure=False)
    assert queued.cancel()
    assert list(cf.as_completed([queued], timeout=1.0)) == [queued]


def test_taskmill_as_completed_yields_cancelled_future(executor, occupied):
    queued = executor.submit(inc, 1280, pure=False)
    assert queued.cancel()
    it = taskmill.as_completed([queued])
    assert next(it) is queued


def test_cancel_runs_done_callbacks(executor, occupied):
    queued = executor.submit(inc, 1300, pure=False)
    called = threading.Event()
    seen = []
    queued.add_done_callback(lambda f: (seen.append(f.cancelled()), called.set()))
    assert queued.cancel()
    assert called.wait(DEADLINE)
    assert seen == [True]


def test_cancel_finished_task_returns_false(executor):
    f = executor.submit(inc, 1400)
    assert f.result(DEADLINE) == 1401
    assert f.cancel() is False
    assert not f.cancelled()
    assert f.status == "finished"
    assert f.result() == 1401


def test_cancelled_task_does_not_block_the_cluster(executor, occupied, gates):
    queued = [executor.submit(inc, i, pure=False) for i in range(1500, 1505)]
    for f in queued:
        assert f.cancel()
    gates.open_all()
    after = executor.submit(inc, 1600, pure=False)
    assert after.result(DEADLINE) == 1601
    assert [f.result(DEADLINE) for f in occupied] == [0, 1]


# --------------------------------------------------------------------------- #
# add_done_callback
# --------------------------------------------------------------------------- #
def test_done_callback_called_once_with_the_future(executor, blocked):
    slow, release = blocked("v")
    calls = []
    called = threading.Event()

    def cb(f):
        calls.append(f)
        called.set()

    slow.add_done_callback(cb)
    assert calls == []
    release()
    assert called.wait(DEADLINE)
    # A later round trip through the cluster: a second call would have come by now.
    assert executor.submit(inc, 1700, pure=False).result(DEADLINE) == 1701
    cf.wait([slow], timeout=DEADLINE)
    assert calls == [slow]


def test_done_callback_on_done_future_called_immediately(executor):
    f = executor.submit(inc, 1800)
    assert f.result(DEADLINE) == 1801
    calls = []
    f.add_done_callback(calls.append)
    # The standard library calls it synchronously, before add_done_callback returns.
    assert calls == [f]


def test_done_callback_may_call_result_without_deadlock(executor, blocked):
    slow, release = blocked({"x": 1})
    results = []
    called = threading.Event()

    def cb(f):
        try:
            results.append(f.result(timeout=DEADLINE))
        except BaseException as exc:  # pragma: no cover - reported below
            results.append(exc)
        called.set()

    slow.add_done_callback(cb)
    release()
    assert called.wait(DEADLINE), "callback calling result() never completed (deadlock?)"
    assert results == [{"x": 1}]


def test_done_callback_may_call_result_on_an_error(executor):
    bad = executor.submit(raise_value_error_in_task, 1900, pure=False)
    results = []
    called = threading.Event()

    def cb(f):
        try:
            f.result(timeout=DEADLINE)
        except BaseException as exc:
            results.append(exc)
        called.set()

    bad.add_done_callback(cb)
    assert called.wait(DEADLINE)
    assert len(results) == 1 and isinstance(results[0], ValueError)


def test_several_done_callbacks_all_called(executor, blocked):
    slow, release = blocked()
    seen = []
    lock = threading.Lock()
    all_called = threading.Event()

    def make(i):
        def cb(f):
            with lock:
                seen.append(i)
                if len(seen) == 3:
                    all_called.set()

        return cb

    for i in range(3):
        slow.add_done_callback(make(i))
    release()
    assert all_called.wait(DEADLINE)
    assert sorted(seen) == [0, 1, 2]


def test_failing_callback_does_not_stop_the_others(executor, blocked):
    slow, release = blocked()
    called = threading.Event()

    def bad_cb(f):
        raise RuntimeError("callback failure (expected in this test)")

    slow.add_done_callback(bad_cb)
    slow.add_done_callback(lambda f: called.set())
    release()
    assert called.wait(DEADLINE)
    assert slow.result(DEADLINE) is None


# --------------------------------------------------------------------------- #
# Remote exceptions
# --------------------------------------------------------------------------- #
def test_remote_exception_same_type_with_remote_traceback_as_cause(executor):
    bad = executor.submit(raise_value_error_in_task, 2000)
    with pytest.raises(ValueError, match="bad value 2000") as info:
        bad.result(DEADLINE)
    exc = info.value
    assert type(exc) is ValueError
    cause = exc.__cause__
    assert cause is not None
    assert "raise_value_error_in_task" in str(cause)
    assert "Traceback" in str(cause)


def test_remote_exception_names_key_and_worker(executor):
    bad = executor.submit(raise_value_error_in_task, 2100)
    with pytest.raises(ValueError) as info:
        bad.result(DEADLINE)
    exc = info.value
    text = "\n".join([str(exc), *getattr(exc, "__notes__", []), str(exc.__cause__)])
    assert bad.key in text
    workers = set(executor.scheduler_info()["workers"])
    assert workers
    assert any(w in text for w in workers), f"no worker address from {workers} in {text!r}"


def test_traceback_text(executor):
    bad = executor.submit(raise_value_error_in_task, 2200)
    tb = bad.traceback(timeout=DEADLINE)
    assert isinstance(tb, str)
    assert "raise_value_error_in_task" in tb
    good = executor.submit(inc, 2200)
    assert good.traceback(timeout=DEADLINE) is None


def test_remote_exception_raised_again_on_second_result_call(executor):
    bad = executor.submit(raise_value_error_in_task, 2300)
    for _ in range(2):
        with pytest.raises(ValueError):
            bad.result(DEADLINE)


# --------------------------------------------------------------------------- #
# taskmill.wait / taskmill.as_completed
# --------------------------------------------------------------------------- #
def test_taskmill_wait(executor, blocked):
    fs = [executor.submit(inc, i) for i in range(2400, 2405)]
    done, not_done = taskmill.wait(fs, timeout=DEADLINE)
    assert done == set(fs) and not_done == set()
    single = executor.submit(inc, 2500)
    done, not_done = taskmill.wait(single, timeout=DEADLINE)
    assert done == {single}
    slow, release = blocked()
    done, not_done = taskmill.wait([slow, single], timeout=DEADLINE, return_when="FIRST_COMPLETED")
    assert done == {single} and not_done == {slow}
    done, not_done = taskmill.wait([slow], timeout=0.1)
    assert done == set() and not_done == {slow}
    release()


def test_taskmill_as_completed_with_results(executor):
    fs = [executor.submit(inc, i) for i in range(2600, 2610)]
    pairs = list(taskmill.as_completed(fs, with_results=True))
    assert len(pairs) == 10
    assert {f for f, _ in pairs} == set(fs)
    for f, r in pairs:
        assert r == f.result()
    assert sorted(r for _, r in pairs) == list(range(2601, 2611))


def test_taskmill_as_completed_order_and_plain_futures(executor, blocked):
    slow, release = blocked("slow")
    quick = executor.submit(inc, 2700)
    it = iter(taskmill.as_completed([slow, quick]))
    assert next(it) is quick
    release()
    assert next(it) is slow
    with pytest.raises(StopIteration):
        next(it)


def test_taskmill_as_completed_with_results_raises_task_error(executor):
    bad = executor.submit(raise_value_error_in_task, 2800)
    with pytest.raises(ValueError):
        list(taskmill.as_completed([bad], with_results=True))


# --------------------------------------------------------------------------- #
# gather and nested dependencies
# --------------------------------------------------------------------------- #
def test_gather_nested_structures(executor):
    a, b, c = (executor.submit(inc, i) for i in (1, 2, 3))
    data = {"list": [a, b], "tuple": (c, 10), "dict": {"x": a, "y": [b, (c,)]}, "plain": "s"}
    out = executor.gather(data)
    assert out == {"list": [2, 3], "tuple": (4, 10), "dict": {"x": 2, "y": [3, (4,)]}, "plain": "s"}
    assert isinstance(out["tuple"], tuple)
    assert isinstance(out["dict"]["y"][1], tuple)
    assert executor.gather([a, b, c]) == [2, 3, 4]
    assert executor.gather(a) == 2


def test_gather_raises_task_error(executor):
    good = executor.submit(inc, 2900)
    bad = executor.submit(raise_value_error_in_task, 2900)
    with pytest.raises(ValueError):
        executor.gather([good, bad])


def test_futures_as_dependencies_inside_containers(executor):
    a = executor.submit(inc, 10)
    b = executor.submit(inc, 20)
    assert executor.submit(total, [a, b, 100]).result(DEADLINE) == 11 + 21 + 100
    assert executor.submit(total, (a, b)).result(DEADLINE) == 32
    assert executor.submit(dict_total, {"a": a, "b": b}).result(DEADLINE) == 32
    assert executor.submit(identity, {"nested": [a, {"deep": (b,)}]}).result(DEADLINE) == {
        "nested": [11, {"deep": (21,)}]
    }
    assert executor.submit(add, a, y=b).result(DEADLINE) == 32
    chained = executor.submit(inc, executor.submit(inc, executor.submit(inc, 0)))
    assert chained.result(DEADLINE) == 3


def test_dependency_on_failed_task_propagates_error(executor):
    bad = executor.submit(raise_value_error_in_task, 3000)
    downstream = executor.submit(total, [bad, 1])
    with pytest.raises(ValueError):
        downstream.result(DEADLINE)


# --------------------------------------------------------------------------- #
# Lifecycle and argument errors
# --------------------------------------------------------------------------- #
def test_submit_after_close_raises_runtime_error():
    e = Executor(n_workers=1, threads_per_worker=1, processes=False)
    try:
        assert e.submit(inc, 1).result(DEADLINE) == 2
    finally:
        e.close()
    with pytest.raises(RuntimeError):
        e.submit(inc, 1)
    with pytest.raises(RuntimeError):
        e.map(inc, [1, 2])
    e.close()  # twice is fine


def test_unpicklable_argument_fails_at_submit_naming_the_type(executor):
    lock = threading.Lock()
    with pytest.raises(Exception) as info:
        executor.submit(identity, lock)
    assert type(lock).__name__ in str(info.value)  # "lock" (as in '_thread.lock')
    assert "_thread.lock" in str(info.value)
    with pytest.raises(Exception) as info:
        executor.submit(identity, x=lock)
    assert "_thread.lock" in str(info.value)
    # The Executor is still usable afterwards.
    assert executor.submit(inc, 3100).result(DEADLINE) == 3101
