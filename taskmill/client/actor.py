"""Actors: ``submit(Cls, *args, actor=True)`` makes one object on one worker.

Theory of operation
-------------------
``Executor.submit(Cls, ..., actor=True)`` submits :func:`make_actor` as an
ordinary task (impure, keyed ``Cls.__name__-<uuid>``): on its worker it builds
``Cls(*args, **kwargs)``, hands the object to the worker's
:class:`~taskmill.server.actors.ActorHost` under the task's key, and returns an
:class:`Actor` proxy, which becomes the key's value.  ``future.result()`` is
therefore the proxy, as in dask.distributed.

The proxy sends each method call (``actor-call``) and attribute read
(``actor-attribute``, see :mod:`taskmill.protocol.actors`) straight to the
worker holding the object: the scheduler is not involved.  A method call
returns an :class:`ActorFuture` at once; an attribute read returns the value
(in asynchronous mode both are awaitable).  From a blocking Executor's user
threads the calling thread does the I/O itself, over its own connection to
the actor (:mod:`taskmill.client.actor_channels`): requests go out at once,
replies come back in order, about half the round trip of going through the
Executor's event loop.  On the loop (an asynchronous Executor, or a callback
on the loop thread) the calls go through the Executor's connection pool, one
after the other, each after the previous one's reply (a per-actor
``asyncio.Lock``).  Either way the calls of one caller run in the order it
made them; the worker runs every caller's calls one at a time in the actor's
own thread.

Lifetime: the proxy a client's ``future.result()`` or ``gather`` hands out
holds a Future of the actor's key, so the object lives while that Future, the
submit's Future or any such proxy does; releasing the last one frees the key
and the worker drops the object.  The client caches the key's value, the
unpickled proxy, which holds nothing (a value holding its own key would never
be released): each ``result()`` hands out a copy that holds the key
(``_taskmill_bind``, called by ``KeyState.user_value``).  A proxy unpickled
elsewhere (in a task, ``pickle.loads``) holds nothing either: a proxy among
a call's arguments is a dependency, as a Future is (``Executor._is_dependency``),
so the key stays held until the task has run, and the task gets the proxy.  Calls use the session
of the client that handed the proxy out, else the client of the place it is
used in (in a task, its ``get_client()``).

Errors, unlike dask.distributed's (an OSError or a hang): a method that
raises re-raises its original type with the remote traceback as cause and a
note naming the actor and worker; a call to an actor whose worker died or
restarted, or that was released, raises :class:`~taskmill.errors.ActorLostError`
saying so, at the next call, within the peer connect timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from taskmill.client import registry
from taskmill.client.actor_channels import Channel, channel_for
from taskmill.client.future_pickling import hold_key
from taskmill.errors import ActorLostError, RemoteTraceback
from taskmill.protocol import exception_from_reply, serialize
from taskmill.protocol.actors import ActorAttribute, ActorCall
from taskmill.server.task_context import current_task

__all__ = ["Actor", "ActorFuture", "make_actor", "actor_key"]

#: per session, per actor key: the lock that sends one call at a time and how many calls use
#: it (used on the session's loop; dropped when no call does)
_send_locks: weakref.WeakKeyDictionary[Any, dict[str, tuple[asyncio.Lock, list[int]]]] = (
    weakref.WeakKeyDictionary())


def actor_key(cls: Callable[..., Any]) -> str:
    """A fresh key for an actor of the class ``cls`` (actors are never shared: impure)."""
    return f"{getattr(cls, '__name__', 'actor')}-{uuid.uuid4().hex}"


def make_actor(cls: type, *args: Any, **kwargs: Any) -> Actor:
    """The task behind ``submit(cls, ..., actor=True)``: build the object,
    keep it on this worker under the task's key, return its proxy."""
    thread = current_task("submit(..., actor=True)")
    worker = thread.runner.worker
    instance = cls(*args, **kwargs)
    worker.actors.add(thread.key, instance)
    return Actor(cls, worker.address, thread.key, worker.scheduler_address)


class ActorFuture:
    """The pending result of one actor method call: ``result(timeout=None)``,
    ``done()``, and ``await`` (in asynchronous mode, or with ``asyncio`` on any loop)."""

    __slots__ = ("_future", "_what", "_channel")

    def __init__(self, future: concurrent.futures.Future[Any] | asyncio.Future[Any], what: str,
                 channel: Channel | None = None) -> None:
        self._future = future
        self._what = what
        #: the calling thread's channel whose replies settle ``_future`` (None: the event loop does)
        self._channel = channel

    def result(self, timeout: float | None = None) -> Any:
        """The call's return value (or its exception, raised), waiting up to
        ``timeout`` seconds (``TimeoutError`` after that; the call goes on)."""
        fut = self._future
        if isinstance(fut, concurrent.futures.Future):
            try:
                if self._channel is not None:
                    self._channel.wait(fut, timeout)
                return fut.result(timeout)
            except (concurrent.futures.TimeoutError, TimeoutError):
                raise TimeoutError(f"{self._what} did not return within {timeout}s "
                                   "(the call goes on; ask again or await it)") from None
        if not fut.done():
            raise RuntimeError(f"{self._what}: ActorFuture.result() would block the event loop; "
                               "use `await` in asynchronous mode")
        return fut.result()

    def done(self) -> bool:
        """Whether the call has returned or raised."""
        if self._channel is not None:
            self._channel.poll()
        return self._future.done()

    def __await__(self) -> Generator[Any, None, Any]:
        fut = self._future
        if self._channel is not None:  # someone must read the channel: a thread of the loop's
            return asyncio.get_running_loop().run_in_executor(None, self.result).__await__()
        if isinstance(fut, concurrent.futures.Future):
            return asyncio.wrap_future(fut).__await__()
        return fut.__await__()

    def __repr__(self) -> str:
        return f"<ActorFuture {self._what} {'done' if self.done() else 'pending'}>"


class Actor:
    """A proxy to one object living on one worker (``submit(Cls, actor=True)``).

    ``actor.method(*args, **kwargs)`` returns an :class:`ActorFuture`;
    ``actor.attribute`` returns the attribute's value (in asynchronous mode,
    an awaitable).  Only names the class declares are forwarded (methods,
    properties, class attributes, annotated attributes): others raise
    AttributeError here.  Calls go straight to the worker holding the object and run
    there one at a time, in order.  Picklable: pass it to tasks.
    """

    def __init__(self, cls: type, address: str, key: str, scheduler_address: str,
                 session: Any = None, future: Any = None) -> None:
        self._cls = cls
        self._address = address
        self._key = key
        self._scheduler_address = scheduler_address
        #: the client session whose connections carry the calls (None: found at the first call)
        self._session = session
        #: the Future keeping the actor's key held (None: someone else holds it)
        self._future = future

    @staticmethod
    def _taskmill_bind(cached: Actor, session: Any) -> Actor:
        """The proxy a client's ``result()``/``gather`` hands out: a copy of
        the cached one holding a Future of the key (see ``KeyState.user_value``)."""
        return Actor(cached._cls, cached._address, cached._key, cached._scheduler_address,
                     session, hold_key(session, cached._key))

    @property
    def key(self) -> str:
        """The key of the task that made the actor."""
        return self._key

    @property
    def worker(self) -> str:
        """The address of the worker the object lives on."""
        return self._address

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_actor, (self._cls, self._address, self._key, self._scheduler_address))

    def __repr__(self) -> str:
        return f"<Actor: {self._cls.__name__}, key={self._key}, worker={self._address}>"

    def __dir__(self) -> list[str]:
        return sorted(set(dir(type(self))) | {n for n in dir(self._cls) if not n.startswith("_")})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # the proxy's own and Python's protocols: never remote
            raise AttributeError(name)
        if not _declares(self._cls, name):
            raise AttributeError(
                f"{self._cls.__name__} declares no attribute {name!r}: an actor's proxy forwards "
                f"only the names its class declares (methods, properties, class attributes and "
                f"annotations), so that code probing it (e.g. sizeof's .nbytes) stays local; "
                f"declare it in the class body, e.g. `{name}: int` or `{name} = 0`")
        if callable(getattr(self._cls, name, None)):
            def call(*args: Any, **kwargs: Any) -> ActorFuture:
                payload = serialize((args, kwargs))
                return self._send(ActorCall(self._key, name, payload), f"{self._cls.__name__}.{name}()")

            call.__name__ = name
            return call
        fut = self._send(ActorAttribute(self._key, name), f"{self._cls.__name__}.{name}")
        if isinstance(fut._future, concurrent.futures.Future):
            return fut.result()
        return fut

    def _client_session(self) -> Any:
        session = self._session
        if session is None or session.status != "running":
            executor = registry.client_for(self._scheduler_address)
            if executor is None:
                raise RuntimeError(
                    f"{self!r} has no Executor to call through: open an Executor connected to "
                    f"{self._scheduler_address} in this process (or use the actor inside a task)")
            session = self._session = executor.session
        return session

    def _send(self, msg: ActorCall | ActorAttribute, what: str) -> ActorFuture:
        session = self._client_session()
        call = _Call(self._key, self._address, what)
        if session.on_loop_thread():
            return ActorFuture(asyncio.ensure_future(self._ask(session, msg, call)), what)
        if session.owner.asynchronous:
            return ActorFuture(asyncio.run_coroutine_threadsafe(self._ask(session, msg, call),
                                                                session.loop), what)
        # a blocking Executor's user thread: the I/O is its own (taskmill.client.actor_channels)
        channel = channel_for(session, self._key, self._address, call)
        return ActorFuture(channel.request(msg, call), what, channel)

    async def _ask(self, session: Any, msg: ActorCall | ActorAttribute, call: _Call) -> Any:
        locks = _send_locks.setdefault(session, {})
        lock, users = locks.setdefault(self._key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                reply = await session.worker_call(self._address, msg, timeout=None)  # user code
        except OSError as exc:  # refused, reset, closed: the worker process is gone
            raise call.lost(exc) from exc
        finally:
            users[0] -= 1
            if not users[0]:
                del locks[self._key]
        return call.unpack(reply)


@dataclass(frozen=True, slots=True)
class _Call:
    """One call on an actor: what its reply means (it holds no proxy, so a
    pending call never keeps the actor's key alive)."""

    key: str
    address: str
    what: str

    def unpack(self, reply: dict[str, Any]) -> Any:
        """The value of the call's ``reply``, or its error raised (module docstring)."""
        status = reply.get("status")
        if status == "OK":
            return reply["result"].deserialize()
        if status == "lost":
            raise ActorLostError(f"{self.what} on actor {self.key!r} failed: {reply.get('text')}; "
                                 "make a new actor with submit(..., actor=True).")
        where = f"{self.what} of actor {self.key!r} raised on worker {self.address}"
        error = exception_from_reply(reply)
        error.__cause__ = RemoteTraceback(f"\n{where}:\n\"\"\"\n{reply.get('traceback', '')}\"\"\"")
        error.add_note(where)
        raise error

    def lost(self, exc: Exception) -> ActorLostError:
        """The error of the call when its worker cannot be reached (refused, reset, closed)."""
        error = ActorLostError(
            f"{self.what} on actor {self.key!r} failed: its worker {self.address} is "
            f"unreachable ({type(exc).__name__}: {exc}). The object lived only there "
            "and is lost; make a new actor with submit(..., actor=True).")
        error.__cause__ = exc
        return error


def _declares(cls: type, name: str) -> bool:
    """Whether ``cls`` declares ``name``: defined on it or a base, or annotated."""
    return hasattr(cls, name) or any(name in getattr(c, "__annotations__", {}) for c in cls.__mro__)


def _rebuild_actor(cls: type, address: str, key: str, scheduler_address: str) -> Actor:
    """An unpickled proxy: it holds nothing (a client's ``result()`` hands out
    a copy that holds the key, see ``Actor._taskmill_bind``) and calls through
    the client of the place it is used in (in a task, its ``get_client()``)."""
    return Actor(cls, address, key, scheduler_address)
