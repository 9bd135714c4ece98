"""Log forwarding in the pure scheduler: who asked for which workers' records.

Theory of operation
-------------------
``Executor.forward_logging`` registers a worker plugin that captures the log
records of tasks under a *topic* (the plugin's name, such as
``forward-logging-<root>``), and tells the scheduler on its stream that its
client wants that topic (``ForwardLogging``).  :class:`LogForwarding` keeps,
per topic, the clients that asked (insertion-ordered, so the commands come
out in the same order in every process); asking again changes nothing.

A worker's batch (``LogRecords``) becomes one ``ForwardedLogRecords`` per
client of its topic, carrying the worker's address; a batch of a topic no
client wants (its clients left; the plugin stays on the workers, as in
dask.distributed) is dropped.  A client that disconnects is forgotten, and a
topic with no client left with it.  A client that calls
``unforward_logging`` (``UnforwardLogging``) is forgotten for that topic;
when it was the topic's last client, ``TopicAbandoned`` tells the shell to
tear the capturing plugin down, so the workers stop paying for records
nobody reads.  The records are opaque here: the
scheduler neither reads nor keeps them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskmill.core.scheduler.events import TopicAbandoned
from taskmill.core.scheduler.step import Step
from taskmill.protocol.vocabulary import (
    ForwardedLogRecords,
    ForwardLogging,
    LogRecords,
    UnforwardLogging,
)

__all__ = ["LogForwarding"]


class LogForwarding:
    """Topic -> the clients that want its records (see the module docstring)."""

    def __init__(self) -> None:
        #: topic -> {client id: None}, in the order they asked
        self.topics: dict[str, dict[str, None]] = {}

    def handlers(self) -> dict[type, Callable[[Step, Any], None]]:
        """The events this part handles, for ``SchedulerState``'s table."""
        return {ForwardLogging: self.subscribe, UnforwardLogging: self.unsubscribe,
                LogRecords: self.relay}

    def subscribe(self, step: Step, ev: ForwardLogging) -> None:
        """``ev.client`` wants the records of ``ev.topic`` (idempotent)."""
        self.topics.setdefault(ev.topic, {})[ev.client] = None

    def unsubscribe(self, step: Step, ev: UnforwardLogging) -> None:
        """``ev.client`` no longer wants ``ev.topic``; its last client's leaving
        abandons the topic (``TopicAbandoned``).  Unknown pairs change nothing."""
        clients = self.topics.get(ev.topic)
        if clients is None or ev.client not in clients:
            return
        del clients[ev.client]
        if not clients:
            del self.topics[ev.topic]
            step.cmds.append(TopicAbandoned(step.stimulus_id, ev.topic))

    def relay(self, step: Step, ev: LogRecords) -> None:
        """A worker's batch goes to each client of its topic."""
        for client in self.topics.get(ev.topic, ()):
            step.cmds.append(ForwardedLogRecords(step.stimulus_id, client, ev.worker, ev.topic,
                                                 ev.records))

    def client_gone(self, client: str) -> None:
        """``client`` disconnected: it is forgotten, and topics left without a client."""
        for topic in [t for t, clients in self.topics.items() if client in clients]:
            clients = self.topics[topic]
            del clients[client]
            if not clients:
                del self.topics[topic]
