"""The common shell of every taskmill server: listeners, request handlers,
a connection pool, a status, and the background tasks it owns.

A node's ``security`` (the token and TLS files of its cluster, see
:mod:`taskmill.security`; by default the environment's, read once when the
node is made) is what its listeners demand and its connections prove.

Structured concurrency: every background loop is started with ``spawn``; an
exception escaping one is logged with the node's name and recorded in
``self.errors`` (so tests and the user can see it) and never silently dropped.
"""

from __future__ import annotations

import asyncio
import inspect
import enum
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar

from taskmill import config, config_checks, timeouts
from taskmill.comm import ConnectionPool, handle_comm, listen
from taskmill.logs import install_log_ring
from taskmill.protocol.vocabulary import Message, Ping
from taskmill.security import Security

M = TypeVar("M", bound=Message)
#: serves one request: the checked message and the comm it came on -> the result
Handler = Callable[[Any, Any], Any]

logger = logging.getLogger("taskmill.node")


class Status(enum.Enum):
    created = "created"
    running = "running"
    closing = "closing"
    closed = "closed"


class Node:
    """A server: subclasses fill ``handlers`` and call ``listen``."""

    def __init__(self, name: str, security: Security | None = None) -> None:
        self.name = name
        #: what peers must prove and what this node proves (None given: the environment's)
        self.security = security if security is not None else Security.from_environment()
        self.status = Status.created
        self.handlers: dict[str, Callable[..., Any]] = {}
        self.serve({Ping: self._ping})
        # A refused connection to a peer almost always means it died: give up
        # quickly (the scheduler learns of deaths on its own) instead of
        # retrying for the default ten seconds while work waits.
        self.pool = ConnectionPool(timeout=timeouts.PEER_CONNECT, security=self.security)
        self.listeners: list[Any] = []
        self.address = ""  # the first listener's: where peers on other processes reach us
        self.errors: list[BaseException] = []
        #: an exception from a state machine closes the node instead of being
        #: logged and served on (option ``debug.strict``; the test suite sets it)
        self.strict = config.read("debug.strict", config_checks.boolean)
        self._background: set[asyncio.Task[Any]] = set()
        self.closed_event = asyncio.Event()
        #: this process's recent log records (shared by the nodes of one process)
        self.log_ring = install_log_ring()

    def serve(self, handlers: Mapping[type[Message], Handler]) -> None:
        """Answer the requests of these vocabulary classes: each request is
        checked and decoded (``from_wire``) before its handler sees it, and a
        malformed one gets an error reply naming the field."""
        for cls, handler in handlers.items():
            self.handlers[cls.op] = _typed(cls, handler)

    @staticmethod
    def _ping(msg: Ping, comm: Any) -> str:
        return "pong"

    async def listen(self, address: str) -> str:
        """Accept connections at ``address`` (more than one listener is fine);
        returns the address actually bound."""
        listener = await listen(address, self._handle_comm, security=self.security)
        self.listeners.append(listener)
        if not self.address:
            self.address = listener.address
        return str(listener.address)

    async def _handle_comm(self, comm: Any) -> None:
        await handle_comm(comm, self.handlers)

    def machine_failed(self, exc: Exception, events: Iterable[object]) -> None:
        """The node's state machine raised on ``events``: a bug.  Keep the
        evidence (logged with the file its stimulus log was written to, and
        in ``errors``); under ``strict`` (the tests) stop serving rather than
        go on with half-applied state."""
        logger.error("%s: state machine failed on %s", self.name, [type(e).__name__ for e in events],
                     exc_info=exc)
        self.errors.append(exc)
        if self.strict:
            self.spawn(self.close(), "close-after-machine-failure")

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; its failure is logged and kept."""
        task = asyncio.create_task(coro, name=f"{self.name}:{name}")
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self.status is Status.running:
            self.errors.append(exc)
            logger.error("%s: background task %s failed", self.name, task.get_name(), exc_info=exc)

    async def close(self) -> None:
        """Stop listening, cancel background tasks, close connections."""
        if self.status in (Status.closing, Status.closed):
            await self.closed_event.wait()
            return
        self.status = Status.closing
        await self._on_close()
        current = asyncio.current_task()
        tasks = [t for t in self._background if t is not current]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for listener in self.listeners:
            await listener.stop()
        await self.pool.close()
        self.status = Status.closed
        self.closed_event.set()

    async def close_gracefully(self) -> None:
        """Close when asked to stop (SIGTERM): subclasses first hand over
        what they hold (a worker its data); by default the same as ``close``."""
        await self.close()

    async def _on_close(self) -> None:
        """Hook for subclasses: say goodbye before connections close."""

    async def finished(self) -> None:
        await self.closed_event.wait()


def _typed(cls: type[Message], handler: Handler) -> Callable[..., Any]:
    def serve(comm: Any = None, **fields: Any) -> Any:
        return handler(cls.from_wire(fields), comm)

    serve.__name__ = f"serve_{cls.__name__}"
    return serve


async def call_with_node(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], node: Node,
                         names: tuple[str, ...]) -> Any:
    """Call a user's ``fn(*args, **kwargs)`` on the node's loop, passing
    ``node`` as each of ``names`` that ``fn`` declares as a keyword parameter
    (unless the caller gave it), as dask.distributed passes
    ``dask_scheduler=``; a coroutine function is awaited here."""
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature: nothing to pass
        params = {}
    for name in names:
        param = params.get(name)
        if param is not None and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            if name not in kwargs:
                kwargs = {**kwargs, name: node}
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result
