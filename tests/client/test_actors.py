"""Actors on an in-process cluster: ``submit(Cls, actor=True)`` gives a proxy
whose method calls and attribute reads go to the one object on one worker,
one at a time, in order; errors come back as the original type; the proxy
works inside tasks; releasing the last proxy and Future frees the object."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from taskmill import Actor, ActorFuture, ActorLostError, Executor, get_client, get_worker
from taskmill.client.actor import _send_locks
from taskmill.errors import RemoteTraceback
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)

DEADLINE = 10.0

#: opened by the test that holds an actor call on it (in-process workers share this module)
released = threading.Event()


class Counter:
    """The actor of these tests."""

    n: int
    label = "counter"

    def __init__(self, start: int = 0) -> None:
        self.n = start
        self.log: list[object] = []
        self.active = 0

    def increment(self, by: int = 1) -> int:
        self.n += by
        return self.n

    def record(self, item: object) -> int:
        """Append ``item``; fail if another call runs at the same time."""
        self.active += 1
        try:
            if self.active != 1:
                raise AssertionError("two calls ran at once")
            self.log.append(item)
            return len(self.log)
        finally:
            self.active -= 1

    def history(self) -> list[object]:
        return list(self.log)

    def thread_name(self) -> str:
        return threading.current_thread().name

    def wait_released(self) -> bool:
        return released.wait(DEADLINE)

    def fail(self, text: str) -> None:
        raise ValueError(text)

    def forward(self, other: Actor, by: int) -> int:
        """Call another actor from this one's method."""
        return int(other.increment(by).result(DEADLINE))

    def where(self) -> str:
        return get_worker().address

    @property
    def doubled(self) -> int:
        return 2 * self.n

    async def later(self, value: int) -> int:
        await asyncio.sleep(0)
        return value + self.n


def hosting(e: Executor, key: str) -> list[object]:
    """The in-process workers holding the actor ``key``."""
    return [w for w in e.cluster.workers if key in w.actors]


def test_calls_and_attribute_reads_reach_one_object_on_one_worker(executor: Executor) -> None:
    future = executor.submit(Counter, 5, actor=True)
    a = future.result(DEADLINE)
    assert isinstance(a, Actor) and a.key == future.key and a.key.startswith("Counter-")
    assert [w.address for w in hosting(executor, a.key)] == [a.worker]
    assert a.n == 5 and a.label == "counter" and a.doubled == 10
    call = a.increment(2)
    assert isinstance(call, ActorFuture)
    assert call.result(DEADLINE) == 7 and call.done() and a.n == 7
    assert a.later(1).result(DEADLINE) == 8  # an async method runs on the worker's loop
    assert "increment" in dir(a) and "Counter" in repr(a)


def test_a_name_the_class_does_not_declare_stays_local(executor: Executor) -> None:
    a = executor.submit(Counter, actor=True).result(DEADLINE)
    with pytest.raises(AttributeError, match="Counter declares no attribute 'nbytes'"):
        a.nbytes  # noqa: B018  (what sizeof probes: no request is sent)
    with pytest.raises(AttributeError):
        a._private  # noqa: B018


def test_calls_run_in_the_actors_own_thread_not_a_task_thread(executor: Executor) -> None:
    released.clear()
    a = executor.submit(Counter, actor=True, workers=[executor.cluster.workers[0].address]).result(DEADLINE)
    assert a.thread_name().result(DEADLINE).startswith("taskmill-actor-")
    held = a.wait_released()  # occupies the actor, not the worker's only task thread
    try:
        assert executor.submit(sum, [1, 2], workers=[a.worker], pure=False).result(DEADLINE) == 3
        assert not held.done()
    finally:
        released.set()
    assert held.result(DEADLINE) is True


def test_result_with_a_timeout_raises_timeout_error_and_the_call_goes_on(executor: Executor) -> None:
    released.clear()
    a = executor.submit(Counter, actor=True).result(DEADLINE)
    held = a.wait_released()
    try:
        with pytest.raises(TimeoutError, match=r"Counter.wait_released\(\) did not return within 0.05s"):
            held.result(timeout=0.05)
    finally:
        released.set()
    assert held.result(DEADLINE) is True and "done" in repr(held)


def test_one_callers_calls_run_in_order_without_waiting_between_them(executor: Executor) -> None:
    a = executor.submit(Counter, actor=True).result(DEADLINE)
    calls = [a.record(i) for i in range(200)]
    assert [c.result(DEADLINE) for c in calls] == list(range(1, 201))
    assert a.history().result(DEADLINE) == list(range(200))
    wait_for(lambda: a.key not in _send_locks.get(executor.session, {}), timeout=DEADLINE,
             message="the per-actor send lock was dropped once no call used it")


def test_calls_from_many_threads_run_one_at_a_time_each_threads_in_order(executor: Executor) -> None:
    a = executor.submit(Counter, actor=True).result(DEADLINE)
    errors: list[BaseException] = []

    def caller(t: int) -> None:
        try:
            futures = [a.record((t, i)) for i in range(50)]
            for f in futures:
                f.result(DEADLINE)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(DEADLINE)
    assert not errors
    log = a.history().result(DEADLINE)
    assert len(log) == 200
    for t in range(4):
        assert [i for (u, i) in log if u == t] == list(range(50))


def test_a_method_that_raises_gives_the_original_type_and_the_remote_traceback(executor: Executor) -> None:
    a = executor.submit(Counter, actor=True).result(DEADLINE)
    with pytest.raises(ValueError, match="bad input") as info:
        a.fail("bad input").result(DEADLINE)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "in fail" in str(info.value.__cause__)
    assert any("Counter.fail() of actor" in note and a.worker in note for note in info.value.__notes__)
    assert a.increment().result(DEADLINE) == 1  # the actor lives on


def test_a_constructor_that_raises_fails_the_future(executor: Executor) -> None:
    with pytest.raises(TypeError):
        executor.submit(Counter, "not", "an int", actor=True).result(DEADLINE)


def use(a: Actor, times: int) -> int:
    for _ in range(times):
        a.increment().result(DEADLINE)
    return int(a.n)


def make_and_use() -> tuple[int, int]:
    b = get_client().submit(Counter, 10, actor=True).result(DEADLINE)
    return b.increment(5).result(DEADLINE), b.n


def test_actors_are_usable_from_tasks(executor: Executor) -> None:
    a = executor.submit(Counter, actor=True).result(DEADLINE)
    assert executor.submit(use, a, 3, pure=False).result(DEADLINE) == 3
    seen = executor.gather(executor.map(use, [a, a], [2, 2], pure=False))  # two tasks at once
    assert max(seen) == 7 and min(seen) >= 5
    assert a.n == 7
    assert executor.submit(make_and_use, pure=False).result(DEADLINE) == (15, 15)


def use_when_released(a: Actor) -> int:
    assert released.wait(DEADLINE)
    return int(a.increment().result(DEADLINE))


def test_a_proxy_passed_to_a_task_holds_the_actor_until_the_task_ran(executor: Executor) -> None:
    released.clear()
    a = executor.submit(Counter, actor=True).result(DEADLINE)
    key = a.key
    task = executor.submit(use_when_released, a, pure=False)
    tasks = executor.cluster.scheduler.state.tasks
    wait_for(lambda: task.key in tasks and [d.key for d in tasks[task.key].dependencies] == [key],
             timeout=DEADLINE, message="the task depends on the actor's key")
    del a  # the client holds the actor no more: the task does, as a dependency
    gc.collect()
    released.set()
    assert task.result(DEADLINE) == 1
    del task
    gc.collect()
    wait_for(lambda: not hosting(executor, key), timeout=DEADLINE, message="the actor was freed")


def test_the_actors_future_as_a_dependency_gives_the_task_the_proxy(executor: Executor) -> None:
    future = executor.submit(Counter, 1, actor=True)
    assert executor.submit(use, future, 2, pure=False).result(DEADLINE) == 3
    assert future.result(DEADLINE).n == 3


def test_an_actors_method_calls_other_actors_and_knows_its_worker(executor: Executor) -> None:
    first, second = executor.cluster.workers
    a = executor.submit(Counter, actor=True, workers=[first.address]).result(DEADLINE)
    b = executor.submit(Counter, 100, actor=True, workers=[second.address]).result(DEADLINE)
    assert a.where().result(DEADLINE) == first.address
    assert a.forward(b, 5).result(DEADLINE) == 105 and b.n == 105


def test_rebalance_leaves_an_actors_key_with_its_object(executor: Executor) -> None:
    first, second = (w.address for w in executor.cluster.workers)
    actors = executor.gather(executor.map(Counter, range(4), actor=True, workers=[first]))
    data = executor.scatter([bytes([i]) * 100_000 for i in range(10)], workers=[first])
    executor.rebalance()
    who_has = executor.who_has()
    assert any(second in who_has[f.key] for f in data)  # data moved, and
    assert all(who_has[a.key] == [first] for a in actors)  # the actors' keys stayed
    assert [a.increment().result(DEADLINE) for a in actors] == [1, 2, 3, 4]


def test_map_makes_one_actor_per_element(executor: Executor) -> None:
    actors = executor.gather(executor.map(Counter, [1, 2, 3], actor=True))
    assert len({a.key for a in actors}) == 3
    assert [a.increment().result(DEADLINE) for a in actors] == [2, 3, 4]


def test_releasing_the_last_proxy_and_future_frees_the_object(executor: Executor) -> None:
    future = executor.submit(Counter, actor=True)
    a = future.result(DEADLINE)
    key, worker = a.key, a.worker
    copy = Actor(Counter, worker, key, executor.scheduler_address)  # holds no Future
    del future
    gc.collect()
    assert a.increment().result(DEADLINE) == 1  # the proxy holds the key
    assert hosting(executor, key)
    del a
    gc.collect()
    wait_for(lambda: not hosting(executor, key), timeout=DEADLINE, message="the actor was freed")
    with pytest.raises(ActorLostError, match=f"no actor '{key}' lives on worker {worker}"):
        copy.increment().result(DEADLINE)


def test_asynchronous_mode_awaits_calls_and_attributes() -> None:
    async def main() -> None:
        async with Executor(asynchronous=True, n_workers=1, processes=False, dashboard_port=None) as e:
            a = await e.submit(Counter, 1, actor=True)
            assert await a.increment(2) == 3
            assert await a.n == 3
            call = a.increment()
            with pytest.raises(RuntimeError, match="would block the event loop"):
                call.result()
            assert await call == 4

    asyncio.run(main())
