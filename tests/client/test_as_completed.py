"""``as_completed`` as dask.distributed has it, and ``Executor.wait_for_workers``.

API.md ("Module functions"): ``as_completed(futures, with_results=False)``
with ``.add(f)``, ``.update(fs)``, ``.batches()`` and ``async for`` with an
asynchronous Executor; ("Cluster operations") ``e.wait_for_workers(n,
timeout=None)``.  The workers run in this process, so gated tasks
(tests/client/gates.py) decide the order in which futures finish.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import threading

import pytest

from taskmill import Executor, as_completed, wait
from taskmill.server.worker import Worker

from tests.client.gates import DEADLINE, gated
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)


def inc(x):
    return x + 1


def fail(x):
    raise ZeroDivisionError(f"no {x}")


def done_futures(executor, *values):
    """Futures already finished (and seen as finished by as_completed at once)."""
    fs = executor.map(inc, values, pure=False)
    wait(fs, timeout=DEADLINE)
    assert all(f.done() for f in fs)
    return fs


# --------------------------------------------------------------------------- #
# Iterating
# --------------------------------------------------------------------------- #
def test_yields_in_the_order_the_futures_finish(executor, gates):
    a, b = gates.new(), gates.new()
    fa = executor.submit(gated, a, "a", pure=False)
    fb = executor.submit(gated, b, "b", pure=False)
    ac = as_completed([fa, fb])
    gates.open(b)
    assert next(ac) is fb
    gates.open(a)
    assert next(ac) is fa
    with pytest.raises(StopIteration):
        next(ac)


def test_futures_added_while_iterating_are_yielded_too(executor):
    first = executor.submit(inc, 1, pure=False)
    ac = as_completed([first])
    seen = []
    for f in ac:
        seen.append(f.result(DEADLINE))
        if len(seen) < 4:
            ac.add(executor.submit(inc, seen[-1], pure=False))
    assert seen == [2, 3, 4, 5]
    assert ac.is_empty()


def test_update_adds_many_and_a_future_added_twice_comes_twice(executor, gates):
    g = gates.new()
    slow = executor.submit(gated, g, 1, pure=False)
    ac = as_completed()
    assert ac.is_empty() and list(ac) == []
    fs = executor.map(inc, range(5), pure=False)
    ac.update(fs)
    ac.update(iter([slow, slow]))
    assert ac.count() == len(ac) == 7
    gates.open(g)
    got = list(ac)
    assert sorted(map(id, got)) == sorted(map(id, [*fs, slow, slow]))
    assert sum(f is slow for f in got) == 2
    assert len(ac) == 0


def test_count_is_empty_and_has_ready(executor, gates):
    g = gates.new()
    slow = executor.submit(gated, g, "x", pure=False)
    [ready] = done_futures(executor, 1)
    ac = as_completed([ready, slow])
    assert ac.count() == 2 and not ac.is_empty() and ac.has_ready()
    assert "waiting=1 done=1" in repr(ac)
    assert next(ac) is ready
    assert ac.count() == 1 and not ac.has_ready()
    assert ac.next_batch(block=False) == []
    gates.open(g)
    wait_for(ac.has_ready, DEADLINE, message="the finished future is ready to be yielded")
    assert ac.count() == 1
    assert next(ac) is slow
    assert ac.count() == 0 and ac.is_empty() and not ac.has_ready()


def test_batches_yield_everything_done_so_far(executor, gates):
    g = gates.new()
    first_two = done_futures(executor, 1, 2)
    slow = executor.submit(gated, g, "late", pure=False)
    ac = as_completed([*first_two, slow])
    batches = ac.batches()
    assert set(map(id, next(batches))) == set(map(id, first_two))
    gates.open(g)
    assert next(batches) == [slow]
    with pytest.raises(StopIteration):
        next(batches)


def test_batches_take_futures_added_meanwhile(executor):
    ac = as_completed(done_futures(executor, 1))
    seen = []
    for batch in ac.batches():
        assert batch, "a batch has at least one future"
        if not seen:
            ac.update(executor.map(inc, [10, 11], pure=False))
        seen += [f.result(DEADLINE) for f in batch]
    assert sorted(seen) == [2, 11, 12]


def test_clear_ends_the_iteration(executor, gates):
    g = gates.new()
    ac = as_completed([executor.submit(gated, g, 1, pure=False)])
    ac.clear()
    assert ac.is_empty()
    assert list(ac) == []
    gates.open(g)


# --------------------------------------------------------------------------- #
# Results and errors
# --------------------------------------------------------------------------- #
def test_with_results_yields_pairs(executor):
    fs = executor.map(inc, range(4), pure=False)
    pairs = list(as_completed(fs, with_results=True))
    assert sorted(r for _, r in pairs) == [1, 2, 3, 4]
    assert all(f.result() == r for f, r in pairs)


def test_with_results_raises_a_failed_tasks_exception(executor):
    bad = executor.submit(fail, 1, pure=False)
    with pytest.raises(ZeroDivisionError, match="no 1"):
        list(as_completed([bad], with_results=True))


def test_raise_errors_false_gives_the_exception_as_the_result(executor, gates):
    bad = executor.submit(fail, 2, pure=False)
    good = executor.submit(inc, 2, pure=False)
    g = gates.new()
    cancelled = executor.submit(gated, g, None, pure=False)
    executor.cancel(cancelled)
    results = dict(as_completed([bad, good, cancelled], with_results=True, raise_errors=False))
    assert results[good] == 3
    assert isinstance(results[bad], ZeroDivisionError) and "no 2" in str(results[bad])
    assert isinstance(results[cancelled], cf.CancelledError)


def test_batches_with_results_are_pairs(executor):
    fs = done_futures(executor, 5, 6)
    [batch] = list(as_completed(fs, with_results=True).batches())
    assert sorted(r for _, r in batch) == [6, 7]


def test_only_futures_are_taken(executor):
    with pytest.raises(TypeError, match="as_completed takes taskmill Futures, got int"):
        as_completed([1])
    ac = as_completed()
    f = executor.submit(inc, 1, pure=False)
    with pytest.raises(TypeError, match="use add"):
        ac.update(f)
    with pytest.raises(TypeError, match="got str"):
        ac.add("x")
    assert ac.is_empty()


def test_timeout_bounds_the_wait(executor, gates):
    g = gates.new()
    slow = executor.submit(gated, g, 1, pure=False)
    ac = as_completed([slow], timeout=0.05)
    with pytest.raises(TimeoutError, match="1 future was not done within timeout=0.05 s"):
        next(ac)
    gates.open(g)
    with pytest.raises(ValueError, match="timeout"):
        as_completed([slow], timeout=-1)


# --------------------------------------------------------------------------- #
# async for
# --------------------------------------------------------------------------- #
def test_async_for_with_an_asynchronous_executor(gates) -> None:
    g = gates.new()

    async def main() -> None:
        async with Executor(asynchronous=True, n_workers=1, processes=False,
                            dashboard_port=None) as e:
            slow = e.submit(gated, g, "slow", pure=False)
            ac = as_completed([slow, e.submit(inc, 1, pure=False)])
            seen = []
            async for f in ac:
                seen.append(await f)
                if seen == [2]:
                    ac.add(e.submit(inc, 2, pure=False))
                elif seen == [2, 3]:
                    gates.open(g)
            assert seen == [2, 3, "slow"]

            pairs = [p async for p in as_completed(e.map(inc, [5, 6], pure=False),
                                                   with_results=True)]
            assert sorted(r for _, r in pairs) == [6, 7]

            bad = e.submit(fail, 3, pure=False)
            with pytest.raises(ZeroDivisionError, match="no 3"):
                async for _ in as_completed([bad], with_results=True):
                    pass
            results = [r async for _, r in as_completed([bad], with_results=True,
                                                         raise_errors=False)]
            assert isinstance(results[0], ZeroDivisionError)

            g2 = gates.new()
            blocked = e.submit(gated, g2, 1, pure=False)
            with pytest.raises(RuntimeError, match="async for"):
                next(as_completed([blocked]))
            with pytest.raises(TimeoutError, match="timeout=0.05"):
                async for _ in as_completed([blocked], timeout=0.05):
                    pass
            gates.open(g2)
            assert [f async for f in as_completed([blocked])] == [blocked]

    asyncio.run(main())


def big(x):
    return bytes(100_000) + bytes([x])  # too big to ride along: fetched from the worker


def test_async_for_over_futures_of_a_blocking_executor(executor, gates):
    fs = executor.map(big, [1, 2], pure=False)
    g = gates.new()
    cancelled = executor.submit(gated, g, None, pure=False)
    executor.cancel(cancelled)

    async def main() -> list:
        return [p async for p in as_completed([*fs, cancelled], with_results=True)]

    results = dict(asyncio.run(main()))
    assert sorted(results[f][-1] for f in fs) == [1, 2]
    assert isinstance(results[cancelled], cf.CancelledError)


# --------------------------------------------------------------------------- #
# wait_for_workers
# --------------------------------------------------------------------------- #
def test_wait_for_workers_returns_when_there_are_enough(executor):
    assert executor.wait_for_workers(2) is None
    assert executor.wait_for_workers(1, timeout=DEADLINE) is None


def test_wait_for_workers_times_out_naming_the_counts(executor):
    with pytest.raises(TimeoutError, match="has 2 running workers, 3 were awaited"):
        executor.wait_for_workers(3, timeout=0.1)


@pytest.mark.parametrize("n, error, match", [
    (0, ValueError, ">= 1, not 0"),
    (-2, ValueError, ">= 1, not -2"),
    (1.5, TypeError, "whole number of workers, not float"),
    ("2", TypeError, "not str"),
    (True, TypeError, "not bool"),
])
def test_wait_for_workers_refuses_a_bad_number(executor, n, error, match):
    with pytest.raises(error, match=match):
        executor.wait_for_workers(n)


def test_wait_for_workers_refuses_a_bad_timeout(executor):
    with pytest.raises(ValueError, match="timeout="):
        executor.wait_for_workers(1, timeout=-1)


def test_wait_for_workers_sees_a_worker_that_joins_later() -> None:
    with Executor(n_workers=1, threads_per_worker=1, processes=False, dashboard_port=None) as e:
        outcome: list[object] = []
        waiter = threading.Thread(target=lambda: outcome.append(e.wait_for_workers(2, DEADLINE)))
        waiter.start()

        async def start_worker() -> Worker:
            return await Worker(e.scheduler_address, nthreads=1).start()

        worker = e.session.sync(start_worker())
        try:
            waiter.join(DEADLINE)
            assert not waiter.is_alive() and outcome == [None]
            assert len(e.scheduler_info()["workers"]) == 2
        finally:
            e.session.sync(worker.close())


def test_wait_for_workers_in_asynchronous_mode() -> None:
    async def main() -> None:
        async with Executor(asynchronous=True, n_workers=1, processes=False,
                            dashboard_port=None) as e:
            await e.wait_for_workers(1)
            waiting = asyncio.ensure_future(e.wait_for_workers(2, timeout=DEADLINE))
            worker = await Worker(e.scheduler_address, nthreads=1).start()
            try:
                await asyncio.wait_for(waiting, DEADLINE)
            finally:
                await worker.close()
            with pytest.raises(TimeoutError, match="has 1 running worker, 2 were awaited"):
                await e.wait_for_workers(2, timeout=0.05)

    asyncio.run(main())
