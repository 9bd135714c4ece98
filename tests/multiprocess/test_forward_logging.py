"""``Executor.forward_logging`` with a worker process: a record a task logs
in the worker process arrives in the client's ``logging``."""

from __future__ import annotations

import logging
import os

import pytest

from taskmill import Executor
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(120)


def log_from_the_worker_process() -> int:
    logging.getLogger("tm.fwd.proc").warning("from pid %d", os.getpid())
    return os.getpid()


def test_a_record_from_a_task_in_a_worker_process_reaches_the_client() -> None:
    received: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            received.append(record)

    target = logging.getLogger("tm.fwd.proc")
    handler = Keep()
    target.addHandler(handler)
    try:
        with Executor(n_workers=1, threads_per_worker=1, processes=True, dashboard_port=None,
                      set_as_default=False) as e:
            [worker] = e.nthreads()
            assert e.forward_logging("tm.fwd.proc") == {worker: "OK"}
            pid = e.submit(log_from_the_worker_process, pure=False).result()
            assert pid != os.getpid()
            wait_for(lambda: len(received) >= 1, timeout=30, message="the record was forwarded")
            [record] = received
            assert record.getMessage() == f"from pid {pid}"
            assert record.process == pid and record.levelno == logging.WARNING
            assert record.worker == worker  # type: ignore[attr-defined]
    finally:
        target.removeHandler(handler)
