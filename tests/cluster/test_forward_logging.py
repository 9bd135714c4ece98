"""``Executor.forward_logging`` on an in-process cluster: records that tasks
log on the workers are re-emitted in the client's ``logging`` with the
worker's address; the process-worker case is in
``tests/multiprocess/test_forward_logging.py``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from taskmill import Executor
from taskmill.server.worker import Worker
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)


class Collect(logging.Handler):
    """Keeps the forwarded records (those with a ``worker``) a logger handles here."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []
        self.threads: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "worker"):
            self.records.append(record)
            self.threads.add(threading.current_thread().name)

    def messages(self, name: str | None = None) -> list[str]:
        return [str(r.msg) for r in list(self.records) if name is None or r.name == name]

    def arrived(self, message: str) -> bool:
        return message in self.messages()


@pytest.fixture
def e() -> Iterator[Executor]:
    with Executor(n_workers=2, threads_per_worker=1, processes=False, set_as_default=False) as ex:
        yield ex


@pytest.fixture
def collect() -> Iterator[Collect]:
    handler = Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def log(name: str, level: int, msg: str, *args: Any) -> str:
    logging.getLogger(name).log(level, msg, *args, extra={"custom": [1, 2]})
    return msg % args if args else msg


def log_error_with_traceback(name: str) -> None:
    try:
        1 / 0
    except ZeroDivisionError:
        logging.getLogger(name).exception("it failed")


def test_a_task_record_reaches_the_clients_logging_with_the_worker(e: Executor,
                                                                   collect: Collect) -> None:
    workers = set(e.nthreads())
    replies = e.forward_logging("tm.fwd.app")
    assert replies == {w: "OK" for w in workers}
    future = e.submit(log, "tm.fwd.app.sub", logging.WARNING, "hello %s from %d", "task", 7)
    assert future.result() == "hello task from 7"
    wait_for(lambda: collect.arrived("hello task from 7"), message="the record was forwarded")
    [record] = collect.records
    assert record.name == "tm.fwd.app.sub" and record.levelno == logging.WARNING
    assert record.levelname == "WARNING" and record.args is None
    assert record.worker in workers  # type: ignore[attr-defined]
    assert record.custom == "[1, 2]"  # type: ignore[attr-defined]  # not plain: its repr
    assert record.getMessage() == "hello task from 7"
    # re-emitted on the client's loop thread, not on the caller's
    assert threading.current_thread().name not in collect.threads
    # the client's own records on that logger are not forwarded (nor looped back)
    logging.getLogger("tm.fwd.app").warning("from the client itself")
    e.submit(log, "tm.fwd.app", logging.WARNING, "sentinel").result()
    wait_for(lambda: collect.arrived("sentinel"), message="the sentinel was forwarded")
    assert collect.messages() == ["hello task from 7", "sentinel"]


def test_level_logger_name_and_taskmill_loggers_filter_what_is_forwarded(
        e: Executor, collect: Collect) -> None:
    e.forward_logging("tm.fwd.lvl", level=logging.ERROR)

    def emit_all() -> None:
        log("tm.fwd.lvl", logging.WARNING, "too low")
        log("tm.fwd.other", logging.ERROR, "another logger")
        log("taskmill.fwd", logging.ERROR, "taskmill's own")
        log("tm.fwd.lvl", logging.ERROR, "error one")

    e.submit(emit_all).result()
    wait_for(lambda: collect.arrived("error one"), message="the error was forwarded")
    assert collect.messages() == ["error one"]


def test_forwarding_the_root_logger_and_calling_twice_forwards_each_record_once(
        e: Executor, collect: Collect) -> None:
    e.forward_logging()
    e.forward_logging()  # idempotent: the plugin is replaced, the subscription kept
    e.submit(log, "tm.fwd.root", logging.WARNING, "once").result()
    e.submit(log, "taskmill.fwd", logging.WARNING, "not taskmill's").result()
    e.submit(log_error_with_traceback, "tm.fwd.root").result()
    wait_for(lambda: collect.arrived("it failed"), message="the exception record was forwarded")
    assert collect.messages() == ["once", "it failed"]
    erred = collect.records[-1]
    assert erred.exc_info is None and "ZeroDivisionError" in str(erred.exc_text)
    assert erred.levelno == logging.ERROR


def test_a_worker_joining_later_forwards_too(e: Executor, collect: Collect) -> None:
    e.forward_logging("tm.fwd.late")
    late = e.session.sync(Worker(e.scheduler_address, nthreads=1).start())
    try:
        wait_for(lambda: late.address in e.nthreads(), message="the late worker joined")
        e.submit(log, "tm.fwd.late", logging.WARNING, "from the newcomer",
                 workers=[late.address]).result()
        wait_for(lambda: collect.arrived("from the newcomer"), message="forwarded")
        assert [r.worker for r in collect.records] == [late.address]  # type: ignore[attr-defined]
    finally:
        e.session.sync(late.close())


def test_a_bad_level_or_logger_name_fails_before_anything_is_registered(e: Executor) -> None:
    with pytest.raises(ValueError):
        e.forward_logging("tm.fwd.bad", level="LOUD")
    with pytest.raises(TypeError, match="logger's name"):
        e.forward_logging(42)  # type: ignore[arg-type]


def test_unforward_logging_stops_the_records_and_the_capture(e: Executor, collect: Collect) -> None:
    e.forward_logging("tm.fwd.off")
    e.forward_logging("tm.fwd.on")
    assert e.submit(log, "tm.fwd.off", logging.WARNING, "before").result() == "before"
    wait_for(lambda: collect.arrived("before"), message="forwarded while asked for")
    assert e.unforward_logging("tm.fwd.off") is None
    assert e.cluster is not None
    wait_for(lambda: all("forward-logging-tm.fwd.off" not in w.plugins.plugins
                         for w in e.cluster.workers),
             message="the last client's unforward tore the capturing plugin down")
    assert all("forward-logging-tm.fwd.on" in w.plugins.plugins for w in e.cluster.workers)
    e.submit(log, "tm.fwd.off", logging.WARNING, "after").result()
    e.submit(log, "tm.fwd.on", logging.WARNING, "sentinel").result()
    wait_for(lambda: collect.arrived("sentinel"), message="the other logger is still forwarded")
    assert "after" not in collect.messages()
    with pytest.raises(TypeError, match="logger's name"):
        e.unforward_logging(3)  # type: ignore[arg-type]
