"""``Executor.concurrent_executor()`` behaves as a strict ``concurrent.futures.Executor``.

The cases follow what CPython's own ``Lib/test/test_concurrent_futures``
(``executor.py``: ExecutorTest; ``test_shutdown.py``: ExecutorShutdownTest)
expects of every executor: ``submit`` (also with keyword arguments named like
the executor's own parameters), ``map`` (lazy, ordered, several iterables,
``timeout`` measured from the call, the task's exception raised when its result
is reached, ``chunksize`` accepted), ``shutdown`` (``wait``,
``cancel_futures``, RuntimeError afterwards), use as a context manager, and
not holding references to arguments or results longer than needed.

Workers run in this process (``processes=False``): the task functions below
are pickled by reference and share this module's globals, so tasks can block
on ``threading.Event`` gates the tests open, and record what they ran.
"""

from __future__ import annotations

import concurrent.futures as cf
import gc
import threading
import time
import uuid
import weakref

import pytest

from taskmill import Future

from tests.client.gates import GATES as _GATES, STARTED as _STARTED, gated  # noqa: E402,F401

pytestmark = pytest.mark.timeout(60)

DEADLINE = 10.0

# --------------------------------------------------------------------------- #
# Tasks (module level: pickled by reference, run in this process)
# --------------------------------------------------------------------------- #
_RECORDED: dict[str, list] = {}
_RECORD_LOCK = threading.Lock()


def mul(x, y):
    return x * y


def capture(*args, **kwargs):
    return args, kwargs


def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


def record(tag, n):
    with _RECORD_LOCK:
        _RECORDED.setdefault(tag, []).append(n)
    return n



class MyObject:
    def my_method(self):
        return 7


class Dummy:
    """A result object the test can hold a weak reference to."""

    def __init__(self, n):
        self.n = n


def make_dummy(n):
    return Dummy(n)




@pytest.fixture
def pool(executor):
    """A fresh concurrent.futures view per test (each test may shut it down)."""
    ex = executor.concurrent_executor()
    yield ex
    ex.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- #
# submit
# --------------------------------------------------------------------------- #
def test_is_a_concurrent_futures_executor(pool):
    assert isinstance(pool, cf.Executor)


def test_submit(pool):
    future = pool.submit(pow, 2, 8)
    assert isinstance(future, cf.Future)
    assert isinstance(future, Future)
    assert future.result(DEADLINE) == 256


def test_submit_keyword(pool):
    future = pool.submit(mul, 2, y=8)
    assert future.result(DEADLINE) == 16
    with pytest.raises(TypeError):
        pool.submit(arg=1)


def test_submit_is_impure(pool):
    # Like a thread or process pool: the same call runs every time.
    tag = uuid.uuid4().hex
    fs = [pool.submit(record, tag, 1) for _ in range(3)]
    cf.wait(fs, timeout=DEADLINE)
    assert len({f.key for f in fs}) == 3
    assert _RECORDED[tag] == [1, 1, 1]


def test_submit_keyword_named_like_executor_parameters(pool):
    # CPython's test_submit_keyword: submit(capture, 1, self=2, fn=3).
    future = pool.submit(capture, 1, self=2, fn=3)
    assert future.result(DEADLINE) == ((1,), {"self": 2, "fn": 3})
    future = pool.submit(capture, key="k", pure=True, priority=5, retries=1, workers=None)
    assert future.result(DEADLINE) == (
        (), {"key": "k", "pure": True, "priority": 5, "retries": 1, "workers": None})
    with pytest.raises(TypeError):
        pool.submit(fn=capture, arg=1)  # fn is positional-only, as in the standard library


def test_submit_exception(pool):
    future = pool.submit(divmod, 1, 0)
    assert isinstance(future.exception(DEADLINE), ZeroDivisionError)
    with pytest.raises(ZeroDivisionError):
        future.result(DEADLINE)


# --------------------------------------------------------------------------- #
# map
# --------------------------------------------------------------------------- #
def test_map(pool):
    assert list(pool.map(pow, range(10), range(10))) == list(map(pow, range(10), range(10)))


def test_map_several_iterables_stops_at_shortest(pool):
    assert list(pool.map(mul, [1, 2, 3, 4], (10, 20, 30))) == [10, 40, 90]
    assert list(pool.map(capture, "ab", [1, 2], [None, True])) == [
        (("a", 1, None), {}), (("b", 2, True), {})]


def test_map_empty(pool):
    assert list(pool.map(mul, [], [])) == []


def test_map_chunksize_accepted(pool):
    assert list(pool.map(pow, range(10), range(10), chunksize=3)) == list(
        map(pow, range(10), range(10)))
    assert list(pool.map(pow, range(5), range(5), chunksize=100)) == [pow(i, i) for i in range(5)]


def test_map_results_in_order_even_when_completing_out_of_order(pool):
    # Earlier items take longer, so they finish last.
    durations = [0.2, 0.1, 0.0, 0.0]
    assert list(pool.map(sleep_then, durations, range(4))) == [0, 1, 2, 3]


def test_map_returns_lazily_and_submits_eagerly(pool, gates):
    names = [gates.new() for _ in range(3)]
    start = time.monotonic()
    results = pool.map(gated, names, ["a", "b", "c"])
    # map returned an iterator without waiting for any result...
    assert time.monotonic() - start < DEADLINE / 2
    assert iter(results) is results
    assert not isinstance(results, list)
    # ...but the calls were submitted already: the first ones start without iterating.
    gates.wait_started(names[0])
    gates.wait_started(names[1])
    gates.open(names[0])
    assert next(results) == "a"
    gates.open(names[1])
    gates.open(names[2])
    assert list(results) == ["b", "c"]


def test_map_submits_without_iteration(executor):
    # CPython: "Tests verifying issue 11777": map's calls run even if the
    # returned iterator is never consumed, and shutdown(wait=True) waits for them.
    tag = uuid.uuid4().hex
    ex = executor.concurrent_executor()
    ex.map(record, [tag] * 10, range(10))
    ex.shutdown(wait=True)
    with _RECORD_LOCK:
        assert sorted(_RECORDED.get(tag, [])) == list(range(10))


def test_map_exception(pool):
    i = pool.map(divmod, [1, 1, 1, 1], [2, 3, 0, 5])
    assert next(i) == (0, 1)
    assert next(i) == (0, 1)
    with pytest.raises(ZeroDivisionError):
        next(i)


def test_map_timeout(pool):
    results = []
    start = time.monotonic()
    with pytest.raises(cf.TimeoutError):
        for r in pool.map(sleep_then, [0, 0, 2], ["x", "y", "z"], timeout=0.5):
            results.append(r)
    elapsed = time.monotonic() - start
    assert results == ["x", "y"]
    assert 0.4 <= elapsed < 1.9
    assert issubclass(cf.TimeoutError, TimeoutError)


def test_map_timeout_counts_from_the_call(pool, gates):
    # The deadline is timeout seconds after map() was called, not per item.
    name = gates.new()
    results = pool.map(gated, [name], ["late"], timeout=0.3)
    gates.wait_started(name)
    t0 = time.monotonic()
    with pytest.raises(cf.TimeoutError):
        next(results)
    assert time.monotonic() - t0 < 0.3 + DEADLINE / 4


def test_map_free_reference(pool):
    # CPython's test_free_reference: the iterator keeps no reference to a
    # result it has already yielded.
    for obj in pool.map(make_dummy, range(10)):
        wr = weakref.ref(obj)
        n = obj.n
        del obj
        gc.collect()
        assert wr() is None, f"result {n} still referenced after it was yielded"


# --------------------------------------------------------------------------- #
# References to arguments
# --------------------------------------------------------------------------- #
def test_no_stale_references(pool):
    # CPython's test_no_stale_references (issue #16284).
    my_object = MyObject()
    collected = threading.Event()
    ref = weakref.ref(my_object, lambda obj: collected.set())  # noqa: F841
    # Deliberately discarding the future.
    pool.submit(my_object.my_method)
    del my_object
    gc.collect()
    assert collected.wait(DEADLINE), "stale reference to a submitted object"


# --------------------------------------------------------------------------- #
# shutdown
# --------------------------------------------------------------------------- #
def test_submit_after_shutdown_raises(pool):
    pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit(pow, 2, 5)
    with pytest.raises(RuntimeError):
        pool.map(pow, [2], [5])


def test_shutdown_twice_is_fine(pool):
    assert pool.submit(pow, 3, 2).result(DEADLINE) == 9
    pool.shutdown()
    pool.shutdown()
    pool.shutdown(wait=False)


def test_shutdown_wait_waits_for_pending_work(pool, gates):
    name = gates.new()
    future = pool.submit(gated, name, "done")
    gates.wait_started(name)
    finished = threading.Event()

    def shut() -> None:
        pool.shutdown(wait=True)
        finished.set()

    t = threading.Thread(target=shut, daemon=True)
    t.start()
    assert not finished.wait(0.3), "shutdown(wait=True) returned while work was pending"
    assert not future.done()
    gates.open(name)
    assert finished.wait(DEADLINE)
    t.join(DEADLINE)
    assert future.done()
    assert future.result() == "done"


def test_shutdown_wait_waits_for_futures_the_caller_dropped(executor):
    tag = uuid.uuid4().hex
    ex = executor.concurrent_executor()
    for i in range(5):
        ex.submit(sleep_then, 0.01, None)  # future deliberately dropped
        ex.submit(record, tag, i)
    ex.shutdown(wait=True)
    with _RECORD_LOCK:
        assert sorted(_RECORDED.get(tag, [])) == list(range(5))


def test_shutdown_no_wait_returns_and_work_completes(pool, gates):
    name = gates.new()
    future = pool.submit(gated, name, 5)
    pool.shutdown(wait=False)
    assert not future.done()
    gates.open(name)
    assert future.result(DEADLINE) == 5
    with pytest.raises(RuntimeError):
        pool.submit(pow, 2, 2)


def test_shutdown_cancel_futures_cancels_queued(pool, gates):
    # CPython's ExecutorShutdownTest.test_cancel_futures: with few workers most
    # queued calls are cancelled, and the ones that were not cancelled finish.
    names = [gates.new() for _ in range(2)]  # two workers, one thread each
    running = [pool.submit(gated, n, i) for i, n in enumerate(names)]
    for n in names:
        gates.wait_started(n)
    queued = [pool.submit(pow, 2, i) for i in range(20)]
    pool.shutdown(wait=False, cancel_futures=True)
    cancelled = [f for f in queued if f.cancelled()]
    assert len(cancelled) > 10
    for f in cancelled:
        with pytest.raises(cf.CancelledError):
            f.result(DEADLINE)
    with pytest.raises(RuntimeError):
        pool.submit(pow, 2, 2)
    gates.open_all()
    others = [f for f in queued + running if not f.cancelled()]
    done, not_done = cf.wait(others, timeout=DEADLINE)
    assert not_done == set()
    assert all(f.exception() is None for f in others)


def _wait_until_assigned(executor, futures, timeout=2.0):
    """Best effort: give the scheduler time to hand queued calls to workers.

    Uses ``Executor.task_states`` when present; returns when any call is
    "processing" or after ``timeout`` (the test's assertions hold either way).
    """
    task_states = getattr(executor, "task_states", None)
    if task_states is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "processing" in task_states(futures).values():
            return
        threading.Event().wait(0.01)


def test_shutdown_cancel_futures_cancels_every_call_not_started(executor, pool, gates):
    # "cancel all pending futures that the executor has not started running":
    # calls the scheduler already handed to a busy worker have not started either.
    names = [gates.new() for _ in range(2)]  # occupy both worker threads
    running = [pool.submit(gated, n, i) for i, n in enumerate(names)]
    for n in names:
        gates.wait_started(n)
    queued = [pool.submit(pow, 2, i) for i in range(6)]
    _wait_until_assigned(executor, queued)
    pool.shutdown(wait=False, cancel_futures=True)
    not_cancelled = [f.key for f in queued if not f.cancelled()]
    gates.open_all()
    assert not_cancelled == [], "calls that never started were not cancelled"
    assert [f.result(DEADLINE) for f in running] == [0, 1]


def test_shutdown_cancel_futures_lets_running_calls_finish(pool, gates):
    names = [gates.new() for _ in range(2)]
    running = [pool.submit(gated, n, i) for i, n in enumerate(names)]
    for n in names:
        gates.wait_started(n)
    queued = [pool.submit(pow, 2, i) for i in range(20)]
    pool.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    gates.open_all()
    assert not any(f.cancelled() for f in running)
    assert [f.result(DEADLINE) for f in running] == [0, 1]


def test_shutdown_cancel_futures_with_wait_returns(pool, gates):
    names = [gates.new() for _ in range(2)]
    running = [pool.submit(gated, n, i) for i, n in enumerate(names)]
    for n in names:
        gates.wait_started(n)
    queued = [pool.submit(pow, 2, i) for i in range(5)]
    finished = threading.Event()

    def shut() -> None:
        pool.shutdown(wait=True, cancel_futures=True)
        finished.set()

    t = threading.Thread(target=shut, daemon=True)
    t.start()
    gates.open_all()
    assert finished.wait(3.0), "shutdown(wait=True, cancel_futures=True) never returned"
    t.join(DEADLINE)
    assert all(f.done() for f in queued + running)


# --------------------------------------------------------------------------- #
# Context manager
# --------------------------------------------------------------------------- #
def test_context_manager(executor):
    with executor.concurrent_executor() as ex:
        futures = [ex.submit(sleep_then, 0.01 * (i % 3), i) for i in range(6)]
        mapped = ex.map(mul, range(4), range(4))
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == list(range(6))
    assert list(mapped) == [0, 1, 4, 9]
    with pytest.raises(RuntimeError):
        ex.submit(pow, 2, 2)


def test_context_manager_returns_the_executor(executor):
    ex = executor.concurrent_executor()
    with ex as entered:
        assert entered is ex
        assert entered.submit(pow, 2, 3).result(DEADLINE) == 8


def test_views_are_independent(executor):
    # Shutting one view down does not stop another view or the Executor.
    a = executor.concurrent_executor()
    b = executor.concurrent_executor()
    a.shutdown()
    assert b.submit(pow, 2, 4).result(DEADLINE) == 16
    b.shutdown()
    assert executor.submit(pow, 2, 5).result(DEADLINE) == 32
