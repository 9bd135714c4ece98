"""Tasks that launch tasks on an in-process cluster: get_worker, get_client, secede, rejoin,
worker_client (the in-process workers share this process but not their threads)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest

from taskmill import Executor, get_client, get_worker, rejoin, secede, worker_client
from tests.conftest import wait_for
from tests.recursive_tasks import fib, fib_impure


@pytest.fixture(scope="module")
def one_thread() -> Iterator[Executor]:
    """One in-process worker with one thread."""
    with Executor(n_workers=1, threads_per_worker=1, processes=False) as e:
        yield e


def describe_worker() -> tuple[str, str, int, str]:
    w = get_worker()
    return w.address, w.name, w.nthreads, w.local_directory


def test_get_worker_inside_a_task_is_the_worker_running_it(one_thread: Executor) -> None:
    address, name, nthreads, directory = one_thread.submit(describe_worker).result(timeout=30)
    assert one_thread.nthreads() == {address: 1}
    assert nthreads == 1 and name and directory


@pytest.mark.parametrize("call, name", [(get_worker, "get_worker()"), (get_client, "get_client()"),
                                        (secede, "secede()"), (rejoin, "rejoin()")])
def test_outside_a_task_each_call_says_so(call: object, name: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"{name} was called outside a task")):
        call()  # type: ignore[operator]


def rejoin_alone() -> None:
    rejoin()


def test_rejoin_without_secede_names_the_call(one_thread: Executor) -> None:
    with pytest.raises(RuntimeError, match=r"rejoin\(\) was called by task .* which did not secede"):
        one_thread.submit(rejoin_alone).result(timeout=30)


def test_recursive_fib_completes_on_one_thread(one_thread: Executor) -> None:
    assert one_thread.submit(fib, 15).result(timeout=60) == 610


def test_impure_fib_many_seceded_threads_at_once(one_thread: Executor) -> None:
    assert one_thread.submit(fib_impure, 9, pure=False).result(timeout=60) == 34
    worker = one_thread.cluster.workers[0]
    # every seceded thread ended; the pool is back to its one serving thread
    wait_for(lambda: len(worker.runner.threads) == 1, message="one serving thread")
    assert worker.state.busy_threads == 0 and not worker.state.seceded


def client_id(_: int) -> int:
    return id(get_client())


def test_one_client_per_worker_shared_by_its_tasks(one_thread: Executor) -> None:
    ids = one_thread.gather(one_thread.map(client_id, range(4), pure=False))
    assert len(set(ids)) == 1


GATE = threading.Event()


def wait_for_gate_seceded() -> bool:
    secede()
    ok = GATE.wait(30)
    rejoin()
    return ok


def open_gate() -> bool:
    GATE.set()
    return True


def test_a_seceded_task_lets_the_next_task_run(one_thread: Executor) -> None:
    GATE.clear()
    waiting = one_thread.submit(wait_for_gate_seceded, pure=False)
    opener = one_thread.submit(open_gate, pure=False)  # needs the one thread
    assert opener.result(timeout=30) and waiting.result(timeout=30)


def test_story_shows_secede_and_rejoin(one_thread: Executor) -> None:
    f = one_thread.submit(fib, 3)
    assert f.result(timeout=30) == 2
    notes = [entry[4] for entry in one_thread.story(f)]
    assert any(n.startswith("seceded on ") for n in notes), notes
    assert any(n.startswith("rejoined on ") for n in notes), notes


class ChildrenSubmitted(Exception):
    pass


CHILD_STARTED = threading.Event()


def child_waits_for_gate() -> bool:
    CHILD_STARTED.set()
    return GATE.wait(30)


def submit_children_then_raise(n: int) -> None:
    e = get_client()
    children = [e.submit(child_waits_for_gate, pure=False) for _ in range(n)]
    secede()  # a child takes the thread: the scheduler knows them
    assert CHILD_STARTED.wait(30)
    raise ChildrenSubmitted(f"after submitting {len(children)} children")


def test_children_of_a_failed_task_are_released(one_thread: Executor) -> None:
    GATE.clear()  # the children wait until released, so they are still there when the parent fails
    CHILD_STARTED.clear()
    scheduler = one_thread.cluster.scheduler
    before = set(scheduler.state.tasks)
    f = one_thread.submit(submit_children_then_raise, 3, pure=False)
    with pytest.raises(ChildrenSubmitted):
        f.result(timeout=30)
    key = f.key
    f.release()
    try:
        wait_for(lambda: set(scheduler.state.tasks) - before <= {key}, timeout=20,
                 message="the scheduler forgot the children")
    finally:
        GATE.set()
    children = {e[0] for e in scheduler.state.transition_log if e[0].startswith("child_waits_for_gate")}
    assert len(children) == 3


def the_workers_client_status() -> str:
    return str(get_client().status)


def test_the_workers_client_is_closed_with_the_worker() -> None:
    with Executor(n_workers=1, threads_per_worker=1, processes=False) as e:
        assert e.submit(the_workers_client_status).result(timeout=30) == "running"
        worker = e.cluster.workers[0]
        client = worker.task_client
        assert client is not None
    assert worker.task_client is None and client.status == "closed"


def close_the_workers_client() -> int:
    get_client().close()
    with worker_client() as e:  # (waiting without seceding would hold the one thread)
        return int(e.submit(len, [1, 2]).result())


def test_a_task_that_closes_the_workers_client_gets_a_new_one(one_thread: Executor) -> None:
    assert one_thread.submit(close_the_workers_client, pure=False).result(timeout=30) == 2
