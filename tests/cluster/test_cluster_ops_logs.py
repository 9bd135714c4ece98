"""``run_on_scheduler``, ``get_scheduler_logs`` and ``get_worker_logs`` on an
in-process cluster (the process-worker case is in
``tests/multiprocess/test_cluster_logs.py``)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from taskmill import Executor
from taskmill.logs import LogRing
from taskmill.protocol import RemoteTraceback, SerializationError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def info_logs() -> Iterator[None]:
    """The ``taskmill`` loggers at INFO while the module runs (this process
    embeds the scheduler and the workers, and keeps what they let through)."""
    logger = logging.getLogger("taskmill")
    before = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(before)


@pytest.fixture(scope="module")
def e(info_logs: None) -> Iterator[Executor]:
    with Executor(n_workers=2, threads_per_worker=1, processes=False, set_as_default=False) as ex:
        yield ex


# ---------------------------------------------------------------- run_on_scheduler
def test_run_on_scheduler_returns_the_result_computed_in_the_scheduler_process(e: Executor) -> None:
    assert e.run_on_scheduler(os.getpid) == os.getpid()  # in-process: the scheduler is here
    assert e.run_on_scheduler(lambda x, y=0: x * 10 + y, 4, y=2) == 42


def scheduler_view(scheduler: Any) -> tuple[str, list[str]]:
    return scheduler.address, sorted(scheduler.worker_streams)


def dask_style(x: int, dask_scheduler: Any = None) -> tuple[int, str]:
    return x, type(dask_scheduler).__name__


def test_run_on_scheduler_passes_the_scheduler_to_a_function_that_asks(e: Executor) -> None:
    address, workers = e.run_on_scheduler(scheduler_view)
    assert address == e.scheduler_info()["address"]
    assert workers == sorted(e.nthreads())
    assert e.run_on_scheduler(dask_style, 3) == (3, "Scheduler")  # dask.distributed's name
    assert e.run_on_scheduler(dask_style, 3, dask_scheduler="mine") == (3, "str")  # the caller's wins


async def on_loop(x: int, scheduler: Any) -> tuple[int, bool]:
    await asyncio.sleep(0)
    return x + 1, asyncio.current_task() is not None and scheduler.status.value == "running"


def test_run_on_scheduler_awaits_a_coroutine_function_on_the_scheduler_loop(e: Executor) -> None:
    assert e.run_on_scheduler(on_loop, 1) == (2, True)


def fails_on_scheduler(scheduler: Any) -> None:
    raise KeyError(f"nothing at {scheduler.address}")


def test_run_on_scheduler_error_keeps_its_type_and_the_remote_traceback(e: Executor) -> None:
    with pytest.raises(KeyError, match="nothing at") as info:
        e.run_on_scheduler(fails_on_scheduler)
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "fails_on_scheduler" in str(cause)
    assert e.run_on_scheduler(len, "abc") == 3  # the scheduler serves on


def test_run_on_scheduler_result_that_cannot_be_pickled_is_a_clear_error(e: Executor) -> None:
    with pytest.raises(SerializationError, match=r"run_on_scheduler: the result of .*\(\) cannot be sent back.*pickle"):
        e.run_on_scheduler(threading.Lock)


# ---------------------------------------------------------------- logs
def log_markers(marker: str, scheduler: Any) -> None:
    logging.getLogger("taskmill.scheduler").warning("first %s", marker)
    logging.getLogger("taskmill.scheduler").info("second %s", marker)


def test_scheduler_logs_keep_level_names_and_lines_newest_last(e: Executor) -> None:
    marker = uuid.uuid4().hex
    e.run_on_scheduler(log_markers, marker)
    logs = e.get_scheduler_logs()
    assert all(isinstance(level, str) and isinstance(line, str) for level, line in logs)
    mine = [(level, line) for level, line in logs if marker in line]
    assert [level for level, _ in mine] == ["WARNING", "INFO"]
    assert "first" in mine[0][1] and "second" in mine[1][1] and "taskmill.scheduler" in mine[0][1]
    assert any("joined" in line and level == "INFO" for level, line in logs)  # "worker ... joined"
    last = e.get_scheduler_logs(n=2)  # (the ring is the process's: other tests' clusters may log)
    assert len(last) == 2 and all(isinstance(r, tuple) and len(r) == 2 for r in last)
    assert e.get_scheduler_logs(n=0) == []


def test_log_count_must_be_none_or_a_natural_number(e: Executor) -> None:
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match="number of most recent log records"):
            e.get_scheduler_logs(n=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="number of most recent log records"):
            e.get_worker_logs(n=bad)  # type: ignore[arg-type]


def test_worker_logs_answer_for_every_worker(e: Executor) -> None:
    logs = e.get_worker_logs()
    assert sorted(logs) == sorted(e.nthreads())
    for address, records in logs.items():
        # in-process workers share this process's ring: each sees every worker's lines
        assert any("registered with scheduler" in line for _, line in records)
        assert any(address in line and "listening" in line for _, line in records)
    assert all(len(records) == 1 for records in e.get_worker_logs(n=1).values())


def test_workers_that_do_not_answer_are_left_out_with_a_warning(
        e: Executor, caplog: pytest.LogCaptureFixture, set_options: Any) -> None:
    alive = sorted(e.nthreads())[0]
    with socket.socket() as closed:  # a port nobody listens on any more: refused
        closed.bind(("127.0.0.1", 0))
        gone = "tcp://127.0.0.1:%d" % closed.getsockname()[1]
    with socket.socket() as mute:  # connections complete in the backlog, nothing ever answers
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        silent = "tcp://127.0.0.1:%d" % mute.getsockname()[1]
        set_options({"comm.timeouts.request": 0.5})
        with caplog.at_level(logging.WARNING, logger="taskmill.client"):
            logs = e.get_worker_logs(n=3, workers=[alive, gone, silent])
    assert list(logs) == [alive] and len(logs[alive]) == 3
    warnings = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(warnings) == 2
    assert any(gone in w for w in warnings)
    assert any(silent in w and "TASKMILL_REQUEST_TIMEOUT" in w for w in warnings), warnings


def test_ring_is_bounded_and_drops_the_oldest_first() -> None:
    ring = LogRing(maxlen=3)
    log = logging.getLogger("tests.ring")
    log.propagate = False
    log.addHandler(ring)
    try:
        for i in range(5):
            log.error("record %d", i)
    finally:
        log.removeHandler(ring)
    assert [line.rsplit(" ", 1)[1] for _, line in ring.recent()] == ["2", "3", "4"]
    assert [level for level, _ in ring.recent(2)] == ["ERROR", "ERROR"]
    with pytest.raises(ValueError, match="at least one record"):
        LogRing(0)


# ---------------------------------------------------------------- async mode
def test_the_three_operations_in_async_mode(info_logs: None) -> None:
    async def main() -> None:
        async with Executor(n_workers=1, processes=False, asynchronous=True,
                            set_as_default=False) as ae:
            assert await ae.run_on_scheduler(on_loop, 5) == (6, True)
            with pytest.raises(KeyError):
                await ae.run_on_scheduler(fails_on_scheduler)
            assert any("joined" in line for _, line in await ae.get_scheduler_logs())
            logs = await ae.get_worker_logs(n=5)
            assert list(logs) == list(await ae.nthreads()) and len(next(iter(logs.values()))) == 5

    asyncio.run(main())
