"""``Queue``, ``Variable`` and datasets on an in-process cluster: across two
clients, from tasks, and the data of Futures they hold kept alive."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from typing import Any

import pytest

from taskmill import Executor, FutureLostError, Queue, Variable, get_client
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def e() -> Iterator[Executor]:
    with Executor(n_workers=2, threads_per_worker=2, processes=False, set_as_default=False) as ex:
        yield ex


@pytest.fixture
def e2(e: Executor) -> Iterator[Executor]:
    with Executor(e.scheduler_address, set_as_default=False) as ex:
        yield ex


def scheduler(e: Executor) -> Any:
    return e.cluster.scheduler  # type: ignore[union-attr]


def task_state(e: Executor, key: str) -> str | None:
    return scheduler(e).state.task_state(key)  # type: ignore[no-any-return]


def wanted_only_by_holders(e: Executor, key: str) -> bool:
    ts = scheduler(e).state.tasks.get(key)
    return ts is not None and set(ts.who_wants) == {"shared-values"}


def inc(x: int) -> int:
    return x + 1


# ---------------------------------------------------------------- Queue
def test_queue_across_two_clients_in_order(e: Executor, e2: Executor) -> None:
    q1, q2 = Queue("across", client=e), Queue("across", client=e2)
    for i in range(3):
        q1.put({"i": i})
    assert q2.qsize() == 3
    assert [q2.get(timeout=5) for _ in range(3)] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert q1.qsize() == 0


def test_get_of_an_empty_queue_past_its_timeout_raises_naming_the_queue(e: Executor) -> None:
    q = Queue("empty-one", client=e)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="Queue 'empty-one'"):
        q.get(timeout=0.2)
    assert 0.15 < time.monotonic() - start < 5


def test_a_waiting_get_is_answered_by_a_put_from_another_client(e: Executor, e2: Executor) -> None:
    q = Queue("waiting", client=e)
    getting = e.submit(lambda: Queue("waiting").get(timeout=20), pure=False)
    wait_for(lambda: bool(scheduler(e).shared_values.machine.queues["waiting"].getters)
             if "waiting" in scheduler(e).shared_values.machine.queues else False,
             message="the task's get to wait")
    Queue("waiting", client=e2).put("hello")
    assert getting.result(timeout=10) == "hello"
    assert q.qsize() == 0


def test_batches_and_maxsize(e: Executor) -> None:
    q = Queue("bounded", client=e, maxsize=2)
    q.put(1)
    q.put(2)
    with pytest.raises(TimeoutError, match="Queue 'bounded': put"):
        q.put(3, timeout=0.1)
    assert q.get(batch=True) == [1, 2]
    assert q.get(batch=True) == []
    q.put(4)
    q.put(5)
    assert q.get(batch=2) == [4, 5]


def producer(n: int) -> int:
    client = get_client()
    q = Queue("work")
    for i in range(n):
        q.put(client.submit(inc, i, pure=False))
    return n


def test_producer_task_puts_futures_the_client_consumes(e: Executor) -> None:
    assert e.submit(producer, 5).result(timeout=20) == 5
    q = Queue("work", client=e)
    futures = [q.get(timeout=10) for _ in range(5)]
    assert [f.result(timeout=10) for f in futures] == [1, 2, 3, 4, 5]


def test_future_in_a_queue_stays_alive_until_taken(e: Executor, e2: Executor) -> None:
    fut = e.submit(inc, 41, pure=False)
    fut.result(timeout=10)
    key = fut.key
    Queue("keeper", client=e).put(fut)
    del fut
    gc.collect()
    wait_for(lambda: wanted_only_by_holders(e, key), message="only the queue to hold the key")
    assert e.who_has()[key]  # the data is still on a worker
    got = Queue("keeper", client=e2).get(timeout=5)
    assert got.key == key and got.result(timeout=10) == 42
    wait_for(lambda: set(scheduler(e).state.tasks[key].who_wants) == {e2.session.id},
             message="the receiving client alone to hold the key")
    del got
    gc.collect()
    wait_for(lambda: task_state(e, key) is None, message="the key to be forgotten")


# ---------------------------------------------------------------- Variable
def search(limit: int) -> int:
    stop = Variable("stop-search")
    n = 0
    while not stop.get(timeout=5) and n < limit:
        n += 1
        time.sleep(0.001)  # a step of the search (work, not synchronisation)
    return n


def test_variable_stops_a_search_loop_in_tasks(e: Executor, e2: Executor) -> None:
    stop = Variable("stop-search", client=e)
    stop.set(False)
    futures = [e.submit(search, 1_000_000, pure=False) for _ in range(2)]
    wait_for(lambda: all(f.running() for f in futures), message="both searches to run")
    Variable("stop-search", client=e2).set(True)
    counts = [f.result(timeout=20) for f in futures]
    assert all(0 <= c < 1_000_000 for c in counts)  # stopped, long before the limit
    stop.delete()


def test_variable_read_before_any_set_times_out_naming_it(e: Executor) -> None:
    with pytest.raises(TimeoutError, match="Variable 'never-set'"):
        Variable("never-set", client=e).get(timeout=0.1)


def test_variable_holds_a_future_until_replaced_or_deleted(e: Executor, e2: Executor) -> None:
    v = Variable("held", client=e)
    fut = e.submit(inc, 1, pure=False)
    key = fut.key
    v.set(fut)
    del fut
    gc.collect()
    wait_for(lambda: wanted_only_by_holders(e, key), message="only the variable to hold the key")
    got = Variable("held", client=e2).get(timeout=5)
    assert got.result(timeout=10) == 2
    del got
    gc.collect()
    wait_for(lambda: wanted_only_by_holders(e, key), message="the reader to let go")
    v.set("plain")
    wait_for(lambda: task_state(e, key) is None, message="the replaced future's key to be forgotten")
    assert Variable("held", client=e2).get() == "plain"
    v.delete()
    with pytest.raises(TimeoutError):
        v.get(timeout=0.05)


def test_a_name_used_by_another_kind_of_primitive_is_a_clear_error(e: Executor) -> None:
    Queue("kinds", client=e).put(1)
    with pytest.raises(TypeError, match="'kinds' is already used by a Queue"):
        Variable("kinds", client=e).set(1)


# ---------------------------------------------------------------- datasets
def test_dataset_published_futures_outlive_the_publishing_client(e: Executor) -> None:
    with Executor(e.scheduler_address, set_as_default=False) as publisher:
        fut = publisher.submit(inc, 9, pure=False)
        key = fut.key
        publisher.publish_dataset(fut, name="ten")
        publisher.publish_dataset(pair=[fut, "label"])
        del fut
    wait_for(lambda: wanted_only_by_holders(e, key), message="only the dataset to hold the key")
    with Executor(e.scheduler_address, set_as_default=False) as reader:
        assert reader.list_datasets() == ["pair", "ten"]
        assert reader.get_dataset("ten").result(timeout=10) == 10
        pair = reader.datasets["pair"]
        assert pair[1] == "label" and pair[0].result(timeout=10) == 10
        assert "ten" in reader.datasets and len(reader.datasets) == 2
        del pair
        reader.unpublish_dataset("ten")
        del reader.datasets["pair"]
        assert reader.list_datasets() == []
    wait_for(lambda: task_state(e, key) is None, message="the unpublished key to be forgotten")


def test_dataset_errors(e: Executor) -> None:
    with pytest.raises(KeyError, match="'nope' is not published"):
        e.get_dataset("nope")
    assert e.get_dataset("nope", default=None) is None
    e.publish_dataset(once=1)
    with pytest.raises(KeyError, match="'once' is already published"):
        e.publish_dataset(once=2)
    e.publish_dataset(once=3, override=True)
    assert e.get_dataset("once") == 3
    with pytest.raises(ValueError, match="needs a name"):
        e.publish_dataset(5)
    e.unpublish_dataset("once")
    with pytest.raises(KeyError, match="'once' is not published"):
        e.unpublish_dataset("once")


# ---------------------------------------------------------------- asynchronous mode
def test_asynchronous_mode_is_awaitable(e: Executor) -> None:
    async def main() -> tuple[Any, ...]:
        async with Executor(e.scheduler_address, asynchronous=True, set_as_default=False) as ae:
            q = Queue("async-q", client=ae)
            await q.put("x")
            size = await q.qsize()
            got = await q.get(timeout=5)
            await Variable("async-v", client=ae).set(7)
            value = await Variable("async-v", client=ae).get()
            await ae.publish_dataset(a=1)
            names = await ae.list_datasets()
            a = await ae.get_dataset("a")
            await ae.unpublish_dataset("a")
            return size, got, value, names, a

    assert asyncio.run(main()) == (1, "x", 7, ["a"], 1)


def queue_getters(e: Executor, name: str) -> int:
    queue = scheduler(e).shared_values.machine.queues.get(name)
    return 0 if queue is None else len(queue.getters)


def test_a_get_given_up_by_its_client_takes_no_value(e: Executor) -> None:
    """dask.distributed hands the next value to a get whose client is gone (it
    is lost); here the scheduler cancels the get when its connection closes."""
    async def give_up() -> None:
        async with Executor(e.scheduler_address, asynchronous=True, set_as_default=False) as ae:
            getting = asyncio.ensure_future(Queue("given-up", client=ae).get())
            # wait (the embedded scheduler is in this process) for the get to be waiting
            await asyncio.to_thread(wait_for, lambda: queue_getters(e, "given-up") == 1,
                                    message="the get to wait")
            getting.cancel()
            await asyncio.gather(getting, return_exceptions=True)

    asyncio.run(give_up())
    wait_for(lambda: queue_getters(e, "given-up") == 0, message="the abandoned get to be cancelled")
    q = Queue("given-up", client=e)
    q.put("kept")
    assert q.qsize() == 1 and q.get(timeout=5) == "kept"


def test_after_a_restart_values_stay_and_their_futures_say_they_are_lost() -> None:
    with Executor(n_workers=1, threads_per_worker=1, processes=False, set_as_default=False) as e:
        fut = e.submit(inc, 4, pure=False)
        fut.result(timeout=10)
        q = Queue("restarted", client=e)
        q.put(fut)
        q.put("plain")
        del fut
        e.restart()
        lost = q.get(timeout=5)
        with pytest.raises(FutureLostError, match="not known to the scheduler"):
            lost.result(timeout=10)
        assert q.get(timeout=5) == "plain"
