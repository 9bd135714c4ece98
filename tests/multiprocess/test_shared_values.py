"""Queue and Variable from tasks in real worker processes: the tasks reach the
scheduler through their worker's ``get_client()``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskmill import Executor, Queue, Variable, get_client

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def e() -> Iterator[Executor]:
    with Executor(n_workers=2, threads_per_worker=1, set_as_default=False) as ex:
        yield ex


def square(x: int) -> int:
    return x * x


def produce(n: int, queue: Queue) -> int:
    client = get_client()
    for i in range(n):
        queue.put(client.submit(square, i, pure=False))
    return n


def consume(n: int, queue: Queue) -> int:
    return sum(queue.get(timeout=30).result() for _ in range(n))


def test_a_producer_process_feeds_futures_to_a_consumer_process_and_the_client(e: Executor) -> None:
    q = Queue("mp-work", client=e)
    assert e.submit(produce, 6, q).result(timeout=60) == 6
    consumed = e.submit(consume, 3, q)  # the oldest three, in another task
    assert consumed.result(timeout=60) == 0 + 1 + 4
    assert [q.get(timeout=10).result(timeout=30) for _ in range(3)] == [9, 16, 25]


def wait_for_go(flag: Variable) -> str:
    return str(flag.get(timeout=60))


def test_a_task_waits_for_a_variable_the_client_sets(e: Executor) -> None:
    flag = Variable("mp-go", client=e)
    waiting = e.submit(wait_for_go, flag)
    flag.set("go")
    assert waiting.result(timeout=60) == "go"
