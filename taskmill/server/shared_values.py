"""The scheduler side of ``Queue``, ``Variable`` and datasets: a thin shell.

Theory of operation
-------------------
:class:`SharedValuesShell` answers the requests of
:mod:`taskmill.protocol.shared` for the scheduler: it turns each into a call
of the pure :class:`~taskmill.core.shared_values.SharedValues` and carries
out the commands it returns.  A request that may wait gets a waiter id and an
asyncio future, answered by a later ``Reply``/``Fail``; its deadline is the
event loop's clock plus its ``timeout``, and one timer, armed for the
machine's ``next_deadline()``, calls ``expire``.  A waiting request whose
connection goes away is cancelled in the machine (a waiting ``put`` drops its
value), so no value is handed to a requester that is gone.  ``Pin``,
``Unpin`` and ``Handover`` become the scheduler machine's ``PinKeys`` /
``UnpinKeys`` events, all of one request in one ``_handle`` call, handovers
first: a key taken out of a queue is held for the taking client before the
queue lets it go.  A value sent with keys waits for its ``mark`` to come
through the sender's stream (``StreamMarked``, see
:mod:`taskmill.protocol.shared`), at most ``TASKMILL_REQUEST_TIMEOUT``
seconds, then fails naming the client.  A mark that comes through with no
request waiting for it is kept as long, for a request still on its way, and
every mark of a client goes when the client does.  Payloads are never
unpickled here.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping
from typing import Any

from taskmill import timeouts
from taskmill.core.scheduler.events import PinKeys, SchedulerInput, StreamMarked, UnpinKeys
from taskmill.core.shared_values import (
    SHARED_HOLDER,
    Command,
    Fail,
    Given,
    Handover,
    Item,
    Pin,
    Reply,
    SharedValues,
    Unpin,
    handover_holder,
)
from taskmill.protocol.vocabulary import (
    DatasetGet,
    DatasetList,
    DatasetPublish,
    DatasetUnpublish,
    QueueGet,
    QueuePut,
    QueueSize,
    VariableDelete,
    VariableGet,
    VariableSet,
)


def _wire(value: Any) -> Any:
    """The reply for what the machine answered: a value given as ``{"value",
    "keys", "token"}`` (a list of those for a batch), None as is."""
    if isinstance(value, Given):
        return {"value": value.item.payload, "keys": list(value.item.keys), "token": value.token}
    if isinstance(value, list):
        return [_wire(item) for item in value]
    return value


class SharedValuesShell:
    """Serves the shared-value requests of one scheduler."""

    def __init__(self, serve: Callable[[Mapping[type[Any], Any]], None],
                 handle: Callable[..., None], stimulus_id: Callable[[str], str]) -> None:
        """``serve``, ``handle`` and ``stimulus_id``: the scheduler's
        ``Node.serve``, its ``_handle`` (events to its machine) and ``_sid``."""
        self._handle = handle
        self._sid = stimulus_id
        self.machine = SharedValues()
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._timer: asyncio.TimerHandle | None = None
        #: (client, mark) -> set when the mark came through the client's stream
        self._marks: dict[tuple[str, str], asyncio.Event] = {}
        serve({
            QueuePut: self._queue_put,
            QueueGet: self._queue_get,
            QueueSize: lambda msg, comm: self.machine.queue_size(msg.name, msg.maxsize),
            VariableSet: self._variable_set,
            VariableGet: self._variable_get,
            VariableDelete: lambda msg, comm: self._apply(self.machine.variable_delete(msg.name)),
            DatasetPublish: self._publish,
            DatasetGet: self._dataset_get,
            DatasetUnpublish: lambda msg, comm: self._apply(self.machine.unpublish(msg.name)),
            DatasetList: lambda msg, comm: sorted(self.machine.datasets),
        })

    # ------------------------------------------------------------------ #
    # Commands
    # ------------------------------------------------------------------ #
    def _apply(self, commands: list[Command]) -> None:
        sid = self._sid("shared-values")
        handovers: list[SchedulerInput] = []
        others: list[SchedulerInput] = []
        for cmd in commands:
            match cmd:
                case Handover():
                    handovers.append(PinKeys(sid, handover_holder(cmd.client, cmd.token), cmd.keys))
                case Pin():
                    others.append(PinKeys(sid, SHARED_HOLDER, cmd.keys))
                case Unpin():
                    others.append(UnpinKeys(sid, SHARED_HOLDER, cmd.keys))
                case Reply():
                    self._settle(cmd.waiter, _wire(cmd.value), None)
                case Fail():
                    self._settle(cmd.waiter, None, cmd.error)
        self._handle(*handovers, *others)
        self._arm_timer()

    def _settle(self, waiter: int, value: Any, error: Exception | None) -> None:
        fut = self._waiting.pop(waiter, None)
        if fut is None or fut.done():
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.machine.next_deadline()
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        self._apply(self.machine.expire(asyncio.get_running_loop().time()))

    async def _wait(self, start: Any, timeout: float | None, comm: Any) -> Any:
        """Run ``start(waiter, deadline)`` (a machine call) and wait for its
        answer, or for ``comm`` to close (the requester gave up or is gone:
        its request is cancelled in the machine)."""
        loop = asyncio.get_running_loop()
        waiter = next(self._ids)
        fut = self._waiting[waiter] = loop.create_future()
        deadline = None if timeout is None else loop.time() + max(timeout, 0.0)
        try:
            self._apply(start(waiter, deadline))
        except BaseException:
            self._waiting.pop(waiter, None)
            raise
        # a requester sends nothing more on this connection before the reply,
        # so a read ends only when the connection closes
        watch = asyncio.ensure_future(comm.read()) if comm is not None and not fut.done() else None
        try:
            if watch is not None:
                await asyncio.wait((fut, watch), return_when=asyncio.FIRST_COMPLETED)
            if not fut.done():
                raise ConnectionError("the requester's connection closed while it waited")
            return fut.result()
        finally:
            if watch is not None:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
            if waiter in self._waiting:  # cancelled, or its connection went away
                del self._waiting[waiter]
                self._apply(self.machine.cancel(waiter))

    # ------------------------------------------------------------------ #
    # Stream marks
    # ------------------------------------------------------------------ #
    def _mark_event(self, client: str, mark: str) -> asyncio.Event:
        event = self._marks.get((client, mark))
        if event is None:
            event = self._marks[client, mark] = asyncio.Event()
        return event

    def marked(self, cmd: StreamMarked) -> None:
        """The ``mark`` of ``client`` came through its stream.  Kept for its
        request for at most the request timeout (it may never come: its
        client died, or gave up first)."""
        key = (cmd.client, cmd.mark)
        waited = key in self._marks
        self._mark_event(cmd.client, cmd.mark).set()
        if not waited:
            asyncio.get_running_loop().call_later(timeouts.REQUEST.get(), self._drop_mark, key)

    def _drop_mark(self, key: tuple[str, str]) -> None:
        event = self._marks.get(key)
        if event is not None and event.is_set():  # nobody took it up in time
            del self._marks[key]

    def client_left(self, client: str) -> None:
        """``client`` disconnected: its marks go."""
        for key in [k for k in self._marks if k[0] == client]:
            del self._marks[key]

    async def _after_mark(self, client: str, mark: str) -> None:
        """Wait until ``mark`` came through ``client``'s stream (nothing to wait for without one)."""
        if not mark:
            return
        event = self._mark_event(client, mark)
        limit = timeouts.REQUEST.get()
        try:
            await asyncio.wait_for(event.wait(), limit)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"client {client}'s stream did not deliver its stream-mark {mark!r} within "
                f"{limit}s (TASKMILL_REQUEST_TIMEOUT): is its connection to the scheduler up? "
                "The value was not stored") from None
        finally:
            self._marks.pop((client, mark), None)

    # ------------------------------------------------------------------ #
    # Requests
    # ------------------------------------------------------------------ #
    async def _queue_put(self, msg: QueuePut, comm: Any) -> None:
        item = Item(msg.value, msg.keys)
        await self._after_mark(msg.client, msg.mark)
        await self._wait(lambda w, d: self.machine.queue_put(
            msg.name, msg.maxsize, item, msg.client, w, d), msg.timeout, comm)

    async def _queue_get(self, msg: QueueGet, comm: Any) -> Any:
        return await self._wait(lambda w, d: self.machine.queue_get(
            msg.name, msg.maxsize, msg.client, w, d, msg.batch), msg.timeout, comm)

    async def _variable_set(self, msg: VariableSet, comm: Any) -> None:
        await self._after_mark(msg.client, msg.mark)
        self._apply(self.machine.variable_set(msg.name, Item(msg.value, msg.keys)))

    async def _variable_get(self, msg: VariableGet, comm: Any) -> Any:
        return await self._wait(lambda w, d: self.machine.variable_get(
            msg.name, msg.client, w, d), msg.timeout, comm)

    async def _publish(self, msg: DatasetPublish, comm: Any) -> None:
        if not len(msg.names) == len(msg.values) == len(msg.keys):
            raise ValueError("dataset-publish: names, values and keys differ in length")
        await self._after_mark(msg.client, msg.mark)
        items = {name: Item(value, keys) for name, value, keys in zip(msg.names, msg.values, msg.keys)}
        self._apply(self.machine.publish(items, msg.override))

    def _dataset_get(self, msg: DatasetGet, comm: Any) -> Any:
        item, commands = self.machine.dataset_get(msg.name, msg.client)
        self._apply(commands)
        return _wire(item)
