"""The machines' part of ``forward_logging``: the worker machine passes a
captured batch on to the scheduler, and the scheduler machine relays it to
the clients that asked for its topic, forgetting those that leave."""

from __future__ import annotations

from taskmill.core.scheduler.events import ClientConnected, ClientDisconnected
from taskmill.core.worker.events import LogRecordsCaptured
from taskmill.core.worker.state import WorkerState
from taskmill.protocol.vocabulary import ForwardedLogRecords, ForwardLogging, LogRecords
from tests.core.scheduler_helpers import Sched

RECORDS = ({"name": "app", "levelno": 30, "msg": "hello"}, {"name": "app", "levelno": 40, "msg": "bye"})


def test_the_worker_machine_sends_a_captured_batch_to_the_scheduler() -> None:
    w = WorkerState("tcp://w:1", 1, validate=True)
    out = w.handle(LogRecordsCaptured("log-records", topic="forward-logging-app", records=RECORDS))
    assert out == [LogRecords("log-records", "tcp://w:1", "forward-logging-app", RECORDS)]


def batch(topic: str, worker: str = "tcp://w:1") -> LogRecords:
    return LogRecords("s", worker, topic, RECORDS)


def test_the_scheduler_relays_a_batch_to_each_client_of_its_topic_once() -> None:
    s = Sched("tcp://w:1")
    s(ClientConnected("s", client="a"), ClientConnected("s", client="b"), ClientConnected("s", client="c"))
    s(ForwardLogging("s", "b", "t1"), ForwardLogging("s", "a", "t1"), ForwardLogging("s", "a", "t1"),
      ForwardLogging("s", "c", "t2"))
    out = s(batch("t1"))
    assert out == [ForwardedLogRecords("s", "b", "tcp://w:1", "t1", RECORDS),
                   ForwardedLogRecords("s", "a", "tcp://w:1", "t1", RECORDS)]
    assert s(batch("nobody-asked")) == []


def test_a_client_that_leaves_is_forgotten_and_its_topic_with_it() -> None:
    s = Sched("tcp://w:1")
    s(ClientConnected("s", client="a"), ClientConnected("s", client="b"))
    s(ForwardLogging("s", "a", "t1"), ForwardLogging("s", "b", "t1"), ForwardLogging("s", "a", "t2"))
    s(ClientDisconnected("s", client="a"))
    assert s(batch("t1")) == [ForwardedLogRecords("s", "b", "tcp://w:1", "t1", RECORDS)]
    assert s(batch("t2")) == []
    assert s.state.log_forwarding.topics == {"t1": {"b": None}}
    s(ClientDisconnected("s", client="b"))
    assert s.state.log_forwarding.topics == {}


def test_unforwarding_forgets_the_client_and_abandons_a_topic_left_without_clients() -> None:
    from taskmill.core.scheduler.events import TopicAbandoned
    from taskmill.protocol.vocabulary import UnforwardLogging

    s = Sched("tcp://w:1")
    s(ClientConnected("s", client="a"), ClientConnected("s", client="b"))
    s(ForwardLogging("s", "a", "t1"), ForwardLogging("s", "b", "t1"))
    assert s(UnforwardLogging("s", "a", "t1")) == []  # b still wants it
    assert s(batch("t1")) == [ForwardedLogRecords("s", "b", "tcp://w:1", "t1", RECORDS)]
    assert s(UnforwardLogging("s", "a", "t1")) == []  # twice: nothing more
    assert s(UnforwardLogging("s", "b", "t1")) == [TopicAbandoned("s", "t1")]
    assert s(batch("t1")) == []
    assert s(UnforwardLogging("s", "b", "never-asked")) == []
