"""The scheduler's side of ``Lock``, ``Semaphore`` and ``Event``: requests in,
the pure :class:`~taskmill.core.locks.Coordination` decides, replies out.

Theory of operation
-------------------
:class:`LockServer` answers the requests of :mod:`taskmill.protocol.locks`
for the scheduler (``Scheduler.serve(lock_server.handlers())``).  Each
request becomes one call of the state machine with ``time.monotonic()`` as
its time.  A request that must wait (an acquire of a held lock, a wait on a
clear event) parks its handler on an asyncio future under its request id;
the :class:`~taskmill.core.locks.Answer` s the machine returns, from this or
any later call, resolve those futures, and each handler then writes its
reply on its own connection.  So an acquire is answered the moment a release
(or a holder's departure) grants it, and never polled for.

One timer, armed for the machine's ``next_deadline()``, ends waits whose
timeout passed and leases whose holder stopped refreshing them
(``$TASKMILL_LEASE_TIMEOUT``, default 30 s as dask.distributed's: a holder
refreshes every third of it, so two missed refreshes in a row are forgiven,
e.g. a long GC pause or a busy event loop; a holder that disconnects does
not wait for it).  The scheduler calls :meth:`LockServer.client_left` when a
client's session closes: that client's leases go to the next waiters at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from taskmill.core.locks import Answer, Coordination
from taskmill.protocol.vocabulary import (
    EventClear,
    EventIsSet,
    EventSet,
    EventWait,
    LockAcquire,
    LockRefresh,
    LockRelease,
    LockClose,
    LockValue,
    Message,
)


class LockServer:
    """Serve the waiting primitives; ``is_client(id)`` tells whether a client
    of that id is connected (a lease is refused to one that is not: nothing
    would free it)."""

    def __init__(self, is_client: Callable[[str], bool], lease_timeout: float | None) -> None:
        self.machine = Coordination(lease_timeout)
        self._is_client = is_client
        self._waiting: dict[str, asyncio.Future[bool]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def handlers(self) -> Mapping[type[Message], Callable[[Any, Any], Any]]:
        """The request handlers, for ``Node.serve``."""
        machine = self.machine
        return {
            LockAcquire: self._acquire,
            LockRelease: self._release,
            LockValue: lambda msg, comm: machine.value(msg.primitive, msg.name),
            LockClose: self._close,
            LockRefresh: lambda msg, comm: machine.refresh(msg.client, time.monotonic()),
            EventSet: self._set_event,
            EventClear: self._clear_event,
            EventIsSet: lambda msg, comm: machine.is_set(msg.name),
            EventWait: self._wait_event,
        }

    def client_left(self, client: str) -> None:
        """``client``'s session closed: free its leases, drop its waits."""
        self._apply(self.machine.client_left(client, time.monotonic()))

    def close(self) -> None:
        """Stop the timer (the scheduler is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _acquire(self, msg: LockAcquire, comm: Any) -> dict[str, Any]:
        self._check_client(msg.client, f"{msg.primitive} {msg.name!r}")
        answers = self.machine.acquire(msg.primitive, msg.name, msg.lease, msg.client,
                                       max_leases=msg.max_leases, now=time.monotonic(),
                                       timeout=msg.timeout)
        granted = await self._answer_of(msg.lease, answers)
        return {"granted": granted, "lease_timeout": self.machine.lease_timeout}

    def _release(self, msg: LockRelease, comm: Any) -> str:
        self._apply(self.machine.release(msg.primitive, msg.name, msg.lease, time.monotonic()))
        return "OK"

    def _close(self, msg: LockClose, comm: Any) -> int:
        answers, held = self.machine.close(msg.primitive, msg.name)
        self._apply(answers)
        return held

    def _set_event(self, msg: EventSet, comm: Any) -> str:
        self._apply(self.machine.set_event(msg.name))
        return "OK"

    def _clear_event(self, msg: EventClear, comm: Any) -> str:
        self.machine.clear_event(msg.name)
        return "OK"

    async def _wait_event(self, msg: EventWait, comm: Any) -> bool:
        self._check_client(msg.client, f"Event {msg.name!r}")
        answers = self.machine.wait_event(msg.name, msg.request, msg.client,
                                          now=time.monotonic(), timeout=msg.timeout)
        return await self._answer_of(msg.request, answers)

    def _check_client(self, client: str, what: str) -> None:
        if not self._is_client(client):
            raise RuntimeError(f"{what}: client {client!r} is not connected to this scheduler, "
                               "so nothing would release what it acquires; use an open Executor")

    async def _answer_of(self, request: str, answers: list[Answer]) -> bool:
        """Wait for the answer to ``request`` (perhaps among ``answers``)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[request] = future
        try:
            self._apply(answers)
            return await future
        finally:
            self._waiting.pop(request, None)

    def _apply(self, answers: list[Answer]) -> None:
        """Resolve the waiting handlers ``answers`` name; arm the timer for
        the machine's next deadline."""
        for answer in answers:
            future = self._waiting.get(answer.request)
            if future is not None and not future.done():
                future.set_result(answer.granted)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.machine.next_deadline()
        if deadline is not None:
            delay = max(0.0, deadline - time.monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._apply(self.machine.tick(time.monotonic()))
