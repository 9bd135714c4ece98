"""``joblib.Parallel`` on the backend "taskmill": results, order, errors,
scattering of large arguments and what is left on the cluster afterwards."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

joblib = pytest.importorskip("joblib")
np = pytest.importorskip("numpy")

import taskmill.joblib  # noqa: E402,F401  (registers the backend)
from joblib import Parallel, delayed  # noqa: E402
from taskmill import Executor  # noqa: E402
from taskmill.client import registry  # noqa: E402
from taskmill.joblib import SCATTER_THRESHOLD, ScatterMemory, TaskmillBackend  # noqa: E402
from tests.client.conftest import gates  # noqa: E402,F401  (the fixture)
from tests.client.gates import Gates, gated  # noqa: E402
from tests.conftest import wait_for  # noqa: E402


def square_plus(x: int, offset: int = 0) -> int:
    return x * x + offset


def scaled_sum(values: Any, factor: float, i: int) -> float:
    return float(values.sum()) * factor + i


def scheduler_forgets_everything(executor: Executor) -> None:
    wait_for(lambda: not executor.cluster.scheduler.state.tasks, timeout=10,
             message="the scheduler holds no task of the Parallel call")


@pytest.mark.parametrize("batch_size", ["auto", 1, 7])
def test_results_equal_the_sequential_ones_in_order(inprocess_executor: Executor,
                                                    batch_size: Any) -> None:
    expected = [square_plus(i, offset=3) for i in range(300)]
    with joblib.parallel_config(backend="taskmill"):
        got = Parallel(n_jobs=-1, batch_size=batch_size)(delayed(square_plus)(i, offset=3)
                                                         for i in range(300))
    assert got == expected
    scheduler_forgets_everything(inprocess_executor)


def test_the_backend_named_in_parallel_itself(inprocess_executor: Executor) -> None:
    assert Parallel(n_jobs=-1, backend="taskmill")(delayed(square_plus)(i) for i in range(20)) == [
        i * i for i in range(20)]
    scheduler_forgets_everything(inprocess_executor)


def test_generators_of_results_leave_nothing_behind(inprocess_executor: Executor) -> None:
    with joblib.parallel_config(backend="taskmill"):
        results = Parallel(n_jobs=2, return_as="generator")(delayed(square_plus)(i) for i in range(50))
        assert list(results) == [i * i for i in range(50)]
        unordered = Parallel(n_jobs=2, return_as="generator_unordered")(
            delayed(square_plus)(i) for i in range(50))
        assert sorted(unordered) == [i * i for i in range(50)]
    scheduler_forgets_everything(inprocess_executor)


def test_shared_memory_calls_fall_back_to_threads(inprocess_executor: Executor) -> None:
    """``require="sharedmem"`` needs this process's memory: joblib falls back to its
    threading backend (a task would append to a copy of the list)."""
    found: list[int] = []
    with joblib.parallel_config(backend="taskmill"):
        Parallel(n_jobs=2, require="sharedmem")(delayed(found.append)(i) for i in range(10))
    assert sorted(found) == list(range(10))


def test_n_jobs_counts_the_threads_of_the_cluster(inprocess_executor: Executor) -> None:
    with joblib.parallel_config(backend="taskmill"):
        assert joblib.effective_n_jobs(-1) == 2  # two workers with one thread each
        assert joblib.effective_n_jobs(-2) == 1
        assert joblib.effective_n_jobs(-5) == 1
        assert joblib.effective_n_jobs(None) == 2  # the backend's default is the whole cluster
        assert joblib.effective_n_jobs(5) == 5
        with pytest.raises(ValueError, match="n_jobs == 0"):
            joblib.effective_n_jobs(0)


STARTED: list[int] = []
_started_lock = threading.Lock()


def first_fails() -> None:
    raise ValueError("the first call fails")


def wait_at_gate(i: int, gate: str) -> int:
    with _started_lock:
        STARTED.append(i)
    return int(gated(gate, i))


def test_an_exception_propagates_with_its_traceback_and_cancels_the_rest(
        inprocess_executor: Executor, gates: Gates) -> None:
    STARTED.clear()
    gate = gates.new()
    calls = [delayed(first_fails)()] + [delayed(wait_at_gate)(i, gate) for i in range(1, 21)]
    with joblib.parallel_config(backend="taskmill"):
        with pytest.raises(ValueError, match="the first call fails") as info:
            Parallel(n_jobs=2, batch_size=1, pre_dispatch="all")(calls)
    remote = str(info.value.__cause__)
    assert "first_fails" in remote and "raise ValueError" in remote  # the task's own traceback
    # the calls still queued were cancelled: the scheduler forgets them while two are still blocked
    scheduler_forgets_everything(inprocess_executor)
    gates.open(gate)
    wait_for(lambda: not inprocess_executor.running_keys(), message="the blocked calls ended")
    assert len(STARTED) <= 2, f"calls started after the failure: {STARTED}"


def test_a_large_argument_shared_by_many_calls_is_scattered_once(
        inprocess_executor: Executor, monkeypatch: pytest.MonkeyPatch) -> None:
    big = np.ones(200_000)  # 1.6 MB
    small = np.ones(10)
    assert big.nbytes > SCATTER_THRESHOLD
    scattered: list[Any] = []
    task_arg_bytes: list[int] = []
    real_scatter, real_submit = inprocess_executor.scatter, inprocess_executor.session.submit_tasks

    def counting_scatter(data: Any, **options: Any) -> Any:
        scattered.extend(data)
        return real_scatter(data, **options)

    def measuring_submit(tasks: Any, funcs: Any, wanted: Any = None) -> Any:
        task_arg_bytes.extend(t.args.nbytes for t in tasks)
        return real_submit(tasks, funcs, wanted)

    monkeypatch.setattr(inprocess_executor, "scatter", counting_scatter)
    monkeypatch.setattr(inprocess_executor.session, "submit_tasks", measuring_submit)
    with joblib.parallel_config(backend="taskmill"):
        got = Parallel(n_jobs=2, batch_size=1)(delayed(scaled_sum)(big, factor=2.0, i=i)
                                               for i in range(40))
        assert got == [2.0 * big.size + i for i in range(40)]
        assert len(scattered) == 1 and scattered[0] is big
        assert len(task_arg_bytes) == 40 and max(task_arg_bytes) < 2_000  # never the array itself
        assert Parallel(n_jobs=2)(delayed(scaled_sum)(small, 1.0, i) for i in range(5)) == [
            10.0 + i for i in range(5)]
        assert len(scattered) == 1  # a small argument travels with its batch

        # the memory is per call: an array changed in place is sent again by the next call
        scheduler_forgets_everything(inprocess_executor)
        big[:] = 2.0
        assert Parallel(n_jobs=2)(delayed(scaled_sum)(big, 1.0, i) for i in range(3)) == [
            2.0 * big.size + i for i in range(3)]
        assert len(scattered) == 2
    scheduler_forgets_everything(inprocess_executor)


def test_scatter_option_puts_objects_on_the_cluster_once_for_the_backend(
        inprocess_executor: Executor, monkeypatch: pytest.MonkeyPatch) -> None:
    big = np.ones(100_000)
    calls_of_scatter: list[Any] = []
    real_scatter = inprocess_executor.scatter

    def counting_scatter(data: Any, **options: Any) -> Any:
        calls_of_scatter.append(options)
        return real_scatter(data, **options)

    big_list = list(range(50_000))  # takes no weak reference: only scatter= keeps it out of batches
    task_arg_bytes: list[int] = []
    real_submit = inprocess_executor.session.submit_tasks

    def measuring_submit(tasks: Any, funcs: Any, wanted: Any = None) -> Any:
        task_arg_bytes.extend(t.args.nbytes for t in tasks)
        return real_submit(tasks, funcs, wanted)

    monkeypatch.setattr(inprocess_executor, "scatter", counting_scatter)
    monkeypatch.setattr(inprocess_executor.session, "submit_tasks", measuring_submit)
    with joblib.parallel_config(backend="taskmill", scatter=[big, big_list]):
        for _ in range(3):
            assert Parallel(n_jobs=2)(delayed(scaled_sum)(big, 1.0, i) for i in range(4)) == [
                1.0 * big.size + i for i in range(4)]
            assert Parallel(n_jobs=2)(delayed(len)(big_list) for _ in range(4)) == [50_000] * 4
    assert len(calls_of_scatter) == 1 and calls_of_scatter[0]["broadcast"] is True
    assert max(task_arg_bytes) < 2_000


def inner_backend_and_sum(n: int) -> tuple[str, int]:
    backend, _ = joblib.parallel.get_active_backend()
    return type(backend).__name__, sum(Parallel(n_jobs=-1)(delayed(abs)(-i) for i in range(n)))


def test_a_nested_parallel_call_runs_sequentially_inside_its_task(
        inprocess_executor: Executor) -> None:
    with joblib.parallel_config(backend="taskmill"):
        got = Parallel(n_jobs=2)(delayed(inner_backend_and_sum)(n) for n in range(1, 5))
    assert got == [("SequentialBackend", n * (n - 1) // 2) for n in range(1, 5)]


def test_an_executor_passed_explicitly_is_used(inprocess_executor: Executor) -> None:
    with Executor(n_workers=1, threads_per_worker=3, processes=False, set_as_default=False) as other:
        with joblib.parallel_config(backend="taskmill", executor=other):
            assert joblib.effective_n_jobs(-1) == 3
            assert Parallel()(delayed(square_plus)(i) for i in range(5)) == [0, 1, 4, 9, 16]


def test_without_an_open_executor_the_error_says_how_to_open_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_defaults", [])  # whatever other tests left open
    with Executor(n_workers=1, processes=False):
        pass  # opened and closed: not a candidate any more
    with joblib.parallel_config(backend="taskmill"):
        with pytest.raises(RuntimeError, match=r"(?s)no open Executor.*Executor\(\)") as info:
            Parallel(n_jobs=-1)(delayed(square_plus)(i) for i in range(3))
    assert "parallel_config(backend='taskmill', executor=" in str(info.value)


def test_an_asynchronous_executor_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_defaults", [])

    async def main() -> None:
        async with Executor(asynchronous=True, n_workers=1, processes=False):
            with joblib.parallel_config(backend="taskmill"):
                with pytest.raises(RuntimeError, match="needs a blocking Executor"):
                    Parallel(n_jobs=2)(delayed(square_plus)(i) for i in range(3))

    asyncio.run(main())


def test_the_data_of_a_scattered_argument_that_dies_is_freed(inprocess_executor: Executor) -> None:
    memory = ScatterMemory()
    array = np.ones(100_000)
    future = inprocess_executor.scatter([array], hash=False)[0]
    key = future.key
    memory.put(array, future)
    assert memory.get(array) is future and memory.get(np.ones(3)) is None
    del future, array  # the memory's weak reference drops its entry, and the Future with it
    wait_for(lambda: key not in inprocess_executor.who_has(),
             message="the dead argument's data was freed")


@pytest.mark.parametrize("options, error, match", [
    ({"executor": "tcp://127.0.0.1:8786"}, TypeError, "executor= takes a taskmill Executor, not str"),
    ({"scatter": np.ones(3)}, TypeError, "scatter= takes a list or tuple"),
    ({"wait_for_workers_timeout": -1}, ValueError, "wait_for_workers_timeout="),
    ({"pure": True}, TypeError, r"unknown options \['pure'\]"),
])
def test_bad_options_are_refused_by_name(options: dict[str, Any], error: type[Exception],
                                         match: str) -> None:
    with pytest.raises(error, match=match):
        TaskmillBackend(**options)


def test_submit_options_reach_every_batch(inprocess_executor: Executor) -> None:
    target = next(iter(inprocess_executor.nthreads()))
    with joblib.parallel_config(backend="taskmill", workers=[target]):
        assert Parallel(n_jobs=2, batch_size=1)(delayed(placed)(i) for i in range(6)) == list(range(6))
    records = [r for r in inprocess_executor.get_task_stream()
               if r["key"].startswith("joblib-placed-")]
    assert len(records) == 6 and {r["worker"] for r in records} == {target}


def placed(i: int) -> int:
    return i


def test_a_cluster_without_workers_is_waited_for_then_named() -> None:
    with Executor(n_workers=1, processes=False, set_as_default=False) as empty:
        assert empty.retire_workers(n=1)
        wait_for(lambda: not empty.nthreads(), message="the only worker left")
        with joblib.parallel_config(backend="taskmill", executor=empty, wait_for_workers_timeout=0.3):
            with pytest.raises(TimeoutError, match=r"has had no worker for 0.3 s.*taskmill-worker"):
                Parallel()(delayed(square_plus)(i) for i in range(3))
        wait_for(lambda: not empty.cluster.scheduler.state.tasks, message="the probe was cancelled")


def test_importing_taskmill_joblib_registers_the_backend() -> None:
    assert joblib.parallel.BACKENDS["taskmill"] is TaskmillBackend
