"""Tasks that launch tasks from real worker processes: get_client() connects a worker
process to its scheduler (with its token), fib recursions complete on one thread."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from taskmill import Executor, get_client, get_worker, rejoin, secede
from tests.conftest import wait_for
from tests.recursive_tasks import fib, fib_impure

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def one_process_one_thread() -> Iterator[Executor]:
    with Executor(n_workers=1, threads_per_worker=1, set_as_default=False) as e:
        yield e


def test_fib_20_through_get_client_on_one_worker_with_one_thread(
        one_process_one_thread: Executor) -> None:
    e = one_process_one_thread
    assert e.submit(fib, 20).result(timeout=60) == 6765


def test_impure_fib_every_call_its_own_task(one_process_one_thread: Executor) -> None:
    e = one_process_one_thread
    assert e.submit(fib_impure, 11, pure=False).result(timeout=60) == 89  # 287 tasks
    # the seceded threads ended and the children were released
    wait_for(lambda: not any(k.startswith("fib_impure") for k in e.cluster.scheduler.state.tasks),
             timeout=20, message="the scheduler forgot every fib_impure task")


def where_am_i() -> tuple[int, str, int]:
    w = get_worker()
    return os.getpid(), w.address, w.nthreads


def test_get_worker_in_a_worker_process(one_process_one_thread: Executor) -> None:
    e = one_process_one_thread
    pid, address, nthreads = e.submit(where_am_i).result(timeout=30)
    assert pid != os.getpid() and e.nthreads() == {address: nthreads}


def test_errors_outside_a_task_and_rejoin_without_secede(one_process_one_thread: Executor) -> None:
    e = one_process_one_thread
    with pytest.raises(ValueError, match=r"get_worker\(\) was called outside a task"):
        e.run(get_worker)  # run is not a task
    with pytest.raises(RuntimeError, match=r"rejoin\(\) was called by task"):
        e.submit(rejoin).result(timeout=30)


class Failed(Exception):
    pass


def child(x: int) -> int:
    return x


def submit_children_then_raise() -> None:
    e = get_client()
    futures = [e.submit(child, i, pure=False) for i in range(5)]
    secede()
    e.gather(futures[:1])  # the children are known to the scheduler
    raise Failed("after submitting children")  # while seceded: the thread ends, the count is right


def test_children_of_a_failed_task_are_forgotten(one_process_one_thread: Executor) -> None:
    e = one_process_one_thread
    f = e.submit(submit_children_then_raise, pure=False)
    with pytest.raises(Failed):
        f.result(timeout=30)
    wait_for(lambda: not any(k.startswith("child") for k in e.cluster.scheduler.state.tasks),
             timeout=20, message="the scheduler forgot the children")
    assert e.submit(child, 42).result(timeout=30) == 42  # the worker's one thread serves again


def test_get_client_uses_the_workers_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMILL_TOKEN", "tasks-in-tasks-secret")
    with Executor(n_workers=1, threads_per_worker=1, set_as_default=False) as e:
        assert e.submit(fib, 6).result(timeout=60) == 8
