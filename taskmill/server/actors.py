"""The actors living on one worker: objects made by ``submit(Cls, actor=True)``.

Theory of operation
-------------------
An actor is made by an ordinary task (:func:`taskmill.client.actor.make_actor`)
running on a worker thread: it builds the object, hands it to this worker's
:class:`ActorHost` under the task's key, and returns the proxy
(:class:`taskmill.client.actor.Actor`), which is the key's value.  From then on
the object is reached only through ``actor-call`` and ``actor-attribute``
requests (:mod:`taskmill.protocol.actors`), sent by proxies straight to this
worker.

One at a time, in order: each actor has its own thread (fed by a queue,
first in first out), apart from the task threads, so a long method neither
takes a task slot nor is overtaken by the next call; the requests are queued
on that thread in the order the worker's loop reads them.  A caller that
issues several calls waits for each before sending the next (the proxy's
per-actor lock), so one caller's calls run in the order it made them.  A
method defined with ``async def`` is run on the worker's loop from the actor's
thread, which waits for it, so it too runs alone.  An actor's thread knows its
worker (:func:`actor_thread_worker`), so a method can call other actors and
submit tasks through the worker's client, as a task does with ``get_client()``.

The object lives while its key is held: when the scheduler frees the key on
this worker (``DeleteData``, the last Future and proxy released) the worker
calls :meth:`ActorHost.discard`; a re-registration (the scheduler forgot this
worker's data) and closing drop every actor.  The scheduler knows the key
is an actor's (``TaskSpec.actor``), so ``rebalance`` never moves it off this
worker, which would free the object.  A request for a key with no
actor here (released, or a worker restarted at the same address) gets the
``lost`` outcome, which the proxy raises as :class:`~taskmill.errors.ActorLostError`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import traceback
from collections.abc import Callable, Mapping
from queue import SimpleQueue
from typing import Any

from taskmill.protocol import error_reply, serialize
from taskmill.protocol.actors import ActorAttribute, ActorCall
from taskmill.protocol.vocabulary import Message

logger = logging.getLogger("taskmill.actors")


_local = threading.local()


def actor_thread_worker() -> Any:
    """The worker whose actor runs in the calling thread (None: not an actor's thread)."""
    return getattr(_local, "worker", None)


#: one call queued for an actor's thread: what to run, and where its outcome goes
_Job = tuple[Callable[[], Any], "asyncio.Future[dict[str, Any]]", asyncio.AbstractEventLoop]


class _Hosted:
    """One actor: the object and the thread its calls run in, first in first
    out (a plain queue and thread: cheaper per call than an executor's futures)."""

    __slots__ = ("instance", "_queue", "_closed")

    def __init__(self, key: str, instance: Any, worker: Any) -> None:
        self.instance = instance
        self._queue: SimpleQueue[_Job | None] = SimpleQueue()
        self._closed = False
        threading.Thread(target=self._serve, args=(worker,), name=f"taskmill-actor-{key}",
                         daemon=True).start()

    def submit(self, fn: Callable[[], Any]) -> asyncio.Future[dict[str, Any]]:
        """(On the loop.)  Queue ``fn``; the future gets its outcome.  After
        ``close``: RuntimeError."""
        if self._closed:
            raise RuntimeError("actor released")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._queue.put((fn, future, loop))
        return future

    def close(self) -> None:
        """Take no more calls; the thread ends after those queued."""
        self._closed = True
        self._queue.put(None)

    def _serve(self, worker: Any) -> None:
        _local.worker = worker
        while (job := self._queue.get()) is not None:
            fn, future, loop = job
            outcome = _outcome(fn)
            try:
                loop.call_soon_threadsafe(_settle, future, outcome)
            except RuntimeError:  # the worker's loop is closed: nobody waits any more
                return


class ActorHost:
    """The actors of one worker, by key, and the handlers of their requests."""

    def __init__(self, worker: Any) -> None:
        #: the worker (its ``address``, and the client an actor's method calls through)
        self.worker = worker
        self._actors: dict[str, _Hosted] = {}

    def handlers(self) -> Mapping[type[Message], Callable[[Any, Any], Any]]:
        """The request handlers to ``serve`` on the worker."""
        return {ActorCall: self._call, ActorAttribute: self._attribute}

    def __contains__(self, key: str) -> bool:
        return key in self._actors

    def add(self, key: str, instance: Any) -> None:
        """Keep ``instance`` as the actor ``key`` (from the task thread that made it)."""
        old = self._actors.get(key)
        self._actors[key] = _Hosted(key, instance, self.worker)
        if old is not None:  # the task ran again (e.g. retried): the newest object wins
            old.close()

    def discard(self, key: str) -> None:
        """Drop the actor ``key`` if it lives here (its calls already queued still run)."""
        hosted = self._actors.pop(key, None)
        if hosted is not None:
            hosted.close()
            logger.debug("actor %s released", key)

    def clear(self) -> None:
        """Drop every actor (the worker re-registers or closes)."""
        for key in list(self._actors):
            self.discard(key)

    async def _call(self, msg: ActorCall, comm: Any) -> dict[str, Any]:
        hosted = self._actors.get(msg.key)
        if hosted is None:
            return self._lost(msg.key)
        args, kwargs = msg.call.deserialize()
        loop = asyncio.get_running_loop()

        def run() -> Any:
            result = getattr(hosted.instance, msg.name)(*args, **kwargs)
            if inspect.isawaitable(result):  # an async method: on the loop, still alone
                return asyncio.run_coroutine_threadsafe(_awaited(result), loop).result()
            return result

        return await self._run(hosted, run)

    async def _attribute(self, msg: ActorAttribute, comm: Any) -> dict[str, Any]:
        hosted = self._actors.get(msg.key)
        if hosted is None:
            return self._lost(msg.key)
        return await self._run(hosted, lambda: getattr(hosted.instance, msg.name))

    @staticmethod
    async def _run(hosted: _Hosted, fn: Callable[[], Any]) -> dict[str, Any]:
        try:
            outcome = hosted.submit(fn)
        except RuntimeError:  # released meanwhile: its thread takes no more calls
            return {"status": "lost", "text": "it was released while the call was on its way"}
        return await outcome

    def _lost(self, key: str) -> dict[str, Any]:
        return {"status": "lost",
                "text": f"no actor {key!r} lives on worker {self.worker.address} (it was released, or "
                        "its worker restarted and lost it)"}


def _outcome(fn: Callable[[], Any]) -> dict[str, Any]:
    """(In the actor's thread.)  Run ``fn``: its pickled value, or what it
    raised with the traceback from the user's code down."""
    try:
        return {"status": "OK", "result": serialize(fn())}
    except Exception as exc:  # the user's method raised: the caller re-raises it
        reply = error_reply(exc)
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        reply["traceback"] = "".join(traceback.format_exception(type(exc), exc, tb))
        return reply


def _settle(future: asyncio.Future[dict[str, Any]], outcome: dict[str, Any]) -> None:
    if not future.done():  # (a request whose connection closed was cancelled)
        future.set_result(outcome)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
