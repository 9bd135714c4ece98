"""Lock, Semaphore and Event on an in-process cluster: across two clients,
from tasks, with timeouts, disconnects and lease expiry (the killed-worker
case is in ``tests/multiprocess/test_locks_kill.py``)."""

from __future__ import annotations

import asyncio
import datetime
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskmill import Event, Executor, Lock, SchedulerGoneError, Semaphore
from taskmill.client import registry
from taskmill.protocol.vocabulary import LockAcquire
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def e() -> Iterator[Executor]:
    with Executor(n_workers=2, threads_per_worker=3, processes=False, set_as_default=False) as ex:
        yield ex


@pytest.fixture
def e2(e: Executor) -> Iterator[Executor]:
    """A second client of the same scheduler."""
    with Executor(e.scheduler_address, set_as_default=False) as ex:
        yield ex


class Occupancy:
    """How many tasks are inside a section at once, and the most ever."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.inside = 0
        self.most = 0

    def enter(self) -> None:
        with self.cond:
            self.inside += 1
            self.most = max(self.most, self.inside)
            self.cond.notify_all()

    def leave(self) -> None:
        with self.cond:
            self.inside -= 1

    def wait_for_company(self, n: int, timeout: float = 5.0) -> None:
        """Stay until ``n`` have been inside together (or ``timeout`` passes)."""
        with self.cond:
            self.cond.wait_for(lambda: self.most >= n, timeout)


OCCUPANCY: dict[str, Occupancy] = {}


def increment_under_lock(lock: Lock, path: str, tag: str) -> int:
    """Read, add one, write: a lost update without the lock."""
    with lock:
        OCCUPANCY[tag].enter()
        try:
            value = int(Path(path).read_text()) + 1
            Path(path).write_text(str(value))
        finally:
            OCCUPANCY[tag].leave()
    return value


def test_a_lock_protects_a_counter_incremented_by_many_tasks(e: Executor, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    OCCUPANCY["lock"] = Occupancy()
    lock = Lock("counter-lock", client=e)
    futures = e.map(increment_under_lock, [lock] * 60, [str(counter)] * 60, ["lock"] * 60, pure=False)
    assert sorted(e.gather(futures)) == list(range(1, 61))
    assert counter.read_text() == "60"
    assert OCCUPANCY["lock"].most == 1
    assert not lock.locked()


def inside_semaphore(sem: Semaphore, tag: str) -> int:
    with sem:
        OCCUPANCY[tag].enter()
        try:
            OCCUPANCY[tag].wait_for_company(2)  # the first holds on until the second lease is taken
            return sem.get_value()
        finally:
            OCCUPANCY[tag].leave()


def test_a_semaphore_of_two_lets_exactly_two_tasks_in_at_once(e: Executor) -> None:
    OCCUPANCY["sem"] = Occupancy()
    sem = Semaphore(max_leases=2, name="two-at-once", client=e)
    values = e.gather(e.map(inside_semaphore, [sem] * 12, ["sem"] * 12, pure=False))  # 6 threads
    assert OCCUPANCY["sem"].most == 2
    assert 2 in values and set(values) <= {1, 2}
    assert sem.get_value() == 0


def test_a_lock_held_by_one_client_makes_the_other_wait_until_released(e: Executor, e2: Executor) -> None:
    mine, theirs = Lock("shared", client=e), Lock("shared", client=e2)
    assert mine.acquire()
    assert theirs.locked()
    assert theirs.acquire(blocking=False) is False
    started = time.monotonic()
    assert theirs.acquire(timeout="300ms") is False
    assert time.monotonic() - started >= 0.3
    assert theirs.acquire(timeout=datetime.timedelta(milliseconds=50)) is False
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(theirs.acquire(timeout=20)))
    waiter.start()
    wait_for(lambda: waiting(e, "shared") == 1, message="the second client waits on the scheduler")
    mine.release()
    waiter.join(20)
    assert got == [True]
    theirs.release()
    assert not mine.locked()


def waiting(e: Executor, name: str) -> int:
    entry = e.cluster.scheduler.locks.machine.names.get(name)
    return 0 if entry is None else len(entry.waiting)


def test_a_disconnecting_client_frees_its_lock_at_once(e: Executor) -> None:
    other = Executor(e.scheduler_address, set_as_default=False)
    assert Lock("left-behind", client=other).acquire()
    result: list[bool] = []
    mine = Lock("left-behind", client=e)
    waiter = threading.Thread(target=lambda: result.append(mine.acquire(timeout=20)))
    waiter.start()
    wait_for(lambda: waiting(e, "left-behind") == 1, message="the waiter queued")
    started = time.monotonic()
    other.close()
    waiter.join(20)
    assert result == [True]
    assert time.monotonic() - started < 5
    with pytest.raises(RuntimeError, match="holds no lease"):  # another object of the name
        Lock("left-behind", client=e).release()
    mine.release()


def test_errors_name_the_primitive(e: Executor) -> None:
    lock = Lock("errors", client=e)
    with pytest.raises(RuntimeError, match=r"<Lock: errors> was released more often than it was acquired"):
        lock.release()
    with lock:
        with pytest.raises(ValueError, match="'errors' is in use by a Lock; a Semaphore cannot use it"):
            Semaphore(name="errors", client=e).acquire()
        with pytest.raises(ValueError, match="in use by a Lock; a Event cannot use it"):
            Event("errors", client=e).set()
    with pytest.raises(ValueError, match="max_leases must be an int >= 1"):
        Semaphore(max_leases=0)
    for bad in (-1, "soon", "3 parsecs", True):
        with pytest.raises(ValueError, match="timeout must be seconds >= 0"):
            lock.acquire(timeout=bad)
    with pytest.raises(ValueError, match="give a timeout only with blocking=True"):
        lock.acquire(blocking=False, timeout=1)
    with pytest.raises(TypeError, match="name must be a non-empty str"):
        Lock(name=3)  # type: ignore[arg-type]


def test_without_an_executor_the_error_says_to_make_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "open_executors", lambda: [])
    with pytest.raises(ValueError, match=r"<Lock: lonely> needs an Executor: create one first"):
        Lock("lonely").acquire()


def take_and_count(sem: Semaphore) -> tuple[bool, int, bool]:
    """A task's own Semaphore object (unpickled by name) takes a lease and gives it back."""
    got = sem.acquire(timeout=10)
    value = sem.get_value()
    return got, value, sem.release()


def test_a_semaphore_passed_to_a_task_is_the_same_primitive_there(e: Executor) -> None:
    sem = Semaphore(2, name="passed", client=e)
    assert sem.acquire()
    assert e.submit(take_and_count, sem).result() == (True, 2, True)
    assert sem.get_value() == 1
    with pytest.raises(ValueError, match="in use with max_leases=2; it cannot be acquired with max_leases=5"):
        e.submit(take_and_count, Semaphore(5, name="passed")).result()
    sem.release()


def test_unnamed_primitives_are_unique_and_a_name_makes_one_primitive(e: Executor) -> None:
    assert Lock().name != Lock().name
    a, b = Semaphore(3, name="same", client=e), Semaphore(3, name="same", client=e)
    assert a.acquire() and b.acquire()
    assert a.get_value() == b.get_value() == 2
    assert a.release() is True
    assert b.release() is True
    with pytest.raises(RuntimeError, match="Semaphore: same> was released more often"):
        b.release()


def wait_for_event(event: Event, timeout: float | None) -> bool:
    return event.wait(timeout)


def set_event(event: Event) -> bool:
    event.set()
    return event.is_set()


def test_event_set_by_one_client_wakes_tasks_and_other_clients(e: Executor, e2: Executor) -> None:
    event = Event("go", client=e)
    assert not event.is_set()
    assert event.wait(timeout=0.1) is False
    waiters = e.map(wait_for_event, [event] * 3, [20] * 3, pure=False)
    other: list[bool] = []
    thread = threading.Thread(target=lambda: other.append(Event("go", client=e2).wait(20)))
    thread.start()
    wait_for(lambda: waiting(e, "go") == 4, message="three tasks and a client wait")
    Event("go", client=e2).set()
    assert e.gather(waiters) == [True] * 3
    thread.join(20)
    assert other == [True]
    assert event.wait(0) is True
    event.clear()
    assert not Event("go", client=e2).is_set()


def test_an_event_set_from_a_task_wakes_the_client(e: Executor) -> None:
    event = Event(client=e)
    assert e.submit(set_event, event).result() is True
    assert event.wait(timeout=5)
    assert event.is_set()


def test_the_async_api_awaits_every_method(e: Executor) -> None:
    async def main() -> list[Any]:
        async with Executor(e.scheduler_address, asynchronous=True, set_as_default=False) as ae:
            lock = await Lock("async", client=ae)
            async with lock:
                held = await lock.locked()
                blocked = await Lock("async", client=ae).acquire(timeout=0.05)
            sem = Semaphore(2, name="async-sem", client=ae)
            assert await sem.acquire()
            value = await sem.get_value()
            await sem.release()
            event = Event(client=ae)
            waiter = asyncio.ensure_future(event.wait(10))
            await event.set()
            return [held, blocked, await lock.locked(), value, await waiter, await event.is_set()]

    assert asyncio.run(main()) == [True, False, False, 1, True, True]


def test_a_cancelled_async_acquire_leaves_no_lease_behind(e: Executor) -> None:
    holder = Lock("cancelled", client=e)
    assert holder.acquire()

    async def main() -> None:
        async with Executor(e.scheduler_address, asynchronous=True, set_as_default=False) as ae:
            attempt = asyncio.ensure_future(Lock("cancelled", client=ae).acquire())
            await asyncio.to_thread(wait_for, lambda: waiting(e, "cancelled") == 1)
            attempt.cancel()
            with pytest.raises(asyncio.CancelledError):
                await attempt
            await asyncio.to_thread(wait_for, lambda: waiting(e, "cancelled") == 0,
                                    message="the cancelled acquire was withdrawn")

    asyncio.run(main())
    holder.release()
    assert not holder.locked()


def test_leases_of_a_silent_holder_expire_and_live_ones_are_refreshed(set_options: Any) -> None:
    set_options({"scheduler.lease-timeout": 0.6})
    with Executor(n_workers=1, processes=False, set_as_default=False) as ex, \
            Executor(ex.scheduler_address, set_as_default=False) as silent:
        kept = Lock("refreshed", client=ex)
        assert kept.acquire()
        session = silent.session
        # a connected holder that never refreshes: the request sent by hand, without a Lock object
        reply = silent._call(session.scheduler_call(LockAcquire("Lock", "silent", "lease-1", session.id)))
        assert reply == {"granted": True, "lease_timeout": 0.6}
        started = time.monotonic()
        assert Lock("silent", client=ex).acquire(timeout=10)
        assert 0.4 < time.monotonic() - started < 5
        time.sleep(2.0)  # more than three lease timeouts pass: the refresher keeps the lease
        assert kept.locked()
        assert Lock("refreshed", client=ex).acquire(timeout=0) is False
        kept.release()


def test_a_wait_ends_with_a_clear_error_when_the_scheduler_goes() -> None:
    with Executor(n_workers=1, processes=False, set_as_default=False) as owner, \
            Executor(owner.scheduler_address, set_as_default=False) as other:
        outcome: list[BaseException] = []

        def wait() -> None:
            try:
                Event("forever", client=other).wait()
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=wait)
        thread.start()
        wait_for(lambda: waiting(owner, "forever") == 1, message="the client waits")
        owner.close()
        thread.join(20)
        [error] = outcome
        assert isinstance(error, SchedulerGoneError)
        assert "<Event: forever>: the scheduler at" in str(error)


def test_a_lock_and_a_queue_cannot_share_a_name(e: Executor) -> None:
    from taskmill import Queue

    q = Queue("shared-name-lock-queue", client=e)
    q.put(1)
    with pytest.raises(ValueError, match="in use by a Queue; a Lock cannot use it"):
        Lock("shared-name-lock-queue", client=e).acquire(timeout=1)
    assert q.get(timeout=5) == 1


def test_closing_a_semaphore_frees_its_waiters_and_warns_about_held_leases(
        e: Executor, e2: Executor) -> None:
    held, other = Semaphore(1, name="to-close", client=e), Semaphore(1, name="to-close", client=e2)
    assert held.acquire()
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(other.acquire(timeout=30)))
    waiter.start()
    wait_for(lambda: waiting(e, "to-close") == 1, message="the other client waits")
    closer = Semaphore(1, name="to-close", client=e)
    with pytest.warns(RuntimeWarning, match="1 lease"):
        closer.close()
    waiter.join(20)
    assert got == [False]  # the waiter is answered, not left hanging
    with pytest.raises(RuntimeError, match="was closed"):
        closer.acquire()
    with pytest.raises(RuntimeError, match="no such lease"):
        held.release()  # its lease vanished with the close
    fresh = Semaphore(1, name="to-close", client=e)
    assert fresh.acquire(timeout=5) and fresh.get_value() == 1
    fresh.close()  # closing one's own held lease: forgotten with the object, no warning
