"""Runs task calls in a thread pool and posts each outcome back to the loop.

The thread does the per-task work that can leave the event loop: loading
the (cached) function, unpickling the arguments, putting dependency values
in place of their TaskRefs, calling, and describing a failure.  The outcome
reaches the loop with one ``call_soon_threadsafe``.  Outcomes of tasks
submitted before ``discard_all`` (the worker started afresh) are dropped.

The pool is ``nthreads`` daemon threads reading calls from one
``SimpleQueue``, started together at the first call.  It has no per-call
``concurrent.futures.Future`` or idle-thread bookkeeping: handing a call
to a thread is one ``put``.  ``shutdown`` drops the calls not yet started
and lets each thread end after its current call.

Seats.  Each thread sits in a :class:`_Seat`, which counts against
``nthreads`` until ``_release_seat``: then another thread starts serving the
queue at once and the released one ends when its current call returns.  A
thread of Python cannot be stopped, so this is how a call leaves the pool's
count while it still runs: the one operation for it (a task that secedes
makes the same move and keeps its outcome).  ``abandon(key)`` (a forced
cancel) releases the seat of the call running ``key`` and drops its outcome
whenever it comes; a call abandoned before a thread took it is skipped.  The loop and the
threads share a call's flags without a lock, in an order that makes every
interleaving safe: the thread sets ``call.seat`` before it reads
``call.abandoned`` and sets ``call.finished`` before it reads
``seat.leaving``; ``abandon`` sets ``call.abandoned`` before it reads
``call.seat`` and ``call.finished``.  At worst a released thread serves one
more call before it ends (the pool briefly has a thread more, never one
less), and the loop drops an abandoned call's outcome if it arrives anyway.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from taskmill.core.taskref import substitute_refs
from taskmill.errors import RemoteTaskError
from taskmill.protocol import Serialized, serialize
from taskmill.protocol.messages import INLINE_LIMIT
from taskmill.server.sizeof import sizeof

OnDone = Callable[[str, bool, Any, str, float, float, "Serialized | None"], None]

#: results up to this size travel with ``task-finished`` to the clients that
#: want them (see ``small_result``); it keeps them inside the message header
SMALL_RESULT_BYTES = INLINE_LIMIT

_STOP = None  # tells a thread to end


class _Seat:
    """One of the pool's places for a thread; ``leaving``: its thread ends
    after its current call (another thread took its place)."""

    __slots__ = ("leaving",)

    def __init__(self) -> None:
        self.leaving = False


class _Call:
    """One task call, from ``submit`` until its outcome is delivered."""

    __slots__ = ("loop", "generation", "key", "func_token", "func", "args", "inputs", "report_value",
                 "seat", "finished", "abandoned")

    def __init__(self, loop: asyncio.AbstractEventLoop, generation: int, key: str, func_token: str,
                 func: Serialized | None, args: Serialized, inputs: dict[str, Any],
                 report_value: bool) -> None:
        self.loop = loop
        self.generation = generation
        self.key = key
        self.func_token = func_token
        self.func = func
        self.args = args
        self.inputs = inputs
        self.report_value = report_value
        #: the seat of the thread that took it (None while queued)
        self.seat: _Seat | None = None
        self.finished = False
        #: its outcome is dropped (``abandon``)
        self.abandoned = False


class TaskRunner:
    """A pool of ``nthreads`` threads running task calls."""

    def __init__(self, nthreads: int, on_done: OnDone) -> None:
        self.nthreads = nthreads
        self.on_done = on_done
        self.generation = 0
        #: the threads alive now (serving the queue, or ending an abandoned call)
        self.threads: list[threading.Thread] = []
        self._started = 0  # threads started so far (names them)
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        #: key -> its call, from ``submit`` until the loop takes its outcome
        self._active: dict[str, _Call] = {}
        self._functions: dict[str, Callable[..., Any]] = {}
        #: token -> the serialized function, as it came with the first task of
        #: that token (the state machine sends each only once): a later task
        #: of the token may reach a thread before the first one unpickled it
        self._payloads: dict[str, Serialized] = {}
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, key: str, func_token: str, func: Serialized | None, args: Serialized,
               inputs: dict[str, Any], report_value: bool = False) -> None:
        """Run the call in a thread; with ``report_value`` a small result is
        also handed back serialized (see ``small_result``)."""
        if self._closed:
            raise RuntimeError("the task runner is shut down")
        if not self.threads:
            for _ in range(self.nthreads):
                self._start_thread()
        if func is not None:
            self._payloads[func_token] = func
        call = _Call(asyncio.get_running_loop(), self.generation, key, func_token, func, args, inputs,
                     report_value)
        self._active[key] = call
        self._calls.put(call)

    def abandon(self, key: str) -> None:
        """Drop the outcome of the call of ``key`` (on the loop): a call not
        started is skipped; a running one keeps its thread until it returns,
        but that thread no longer counts (``_release_seat``)."""
        call = self._active.pop(key, None)
        if call is None:
            return
        call.abandoned = True
        seat = call.seat
        if seat is not None and not call.finished:
            self._release_seat(seat)

    def discard_all(self) -> None:
        """Forget every task in flight: their outcomes will be dropped."""
        self.generation += 1
        self._active.clear()

    def shutdown(self) -> None:
        """Drop the calls not started; each thread ends after its current call."""
        self.discard_all()
        self._closed = True
        try:
            while True:
                self._calls.get_nowait()
        except queue.Empty:
            pass
        for _ in self.threads:
            self._calls.put(_STOP)

    def _release_seat(self, seat: _Seat) -> None:
        """The thread in ``seat`` no longer counts against ``nthreads``: a new
        thread serves the queue from now on, and this one ends when its
        current call returns (a thread cannot be stopped mid-call).  A seat
        released already stays so: its place was taken once."""
        if seat.leaving:
            return
        seat.leaving = True
        if not self._closed:
            self._start_thread()

    def _start_thread(self) -> None:
        with self._lock:
            thread = threading.Thread(target=self._serve, args=(_Seat(),),
                                      name=f"taskmill-task_{self._started}", daemon=True)
            self._started += 1
            self.threads.append(thread)
        thread.start()

    def _serve(self, seat: _Seat) -> None:
        calls = self._calls
        while not seat.leaving:
            call = calls.get()
            if call is _STOP:
                break
            call.seat = seat  # before reading ``abandoned`` (see the module docstring)
            if not call.abandoned:
                self._run(call)
            call.finished = True
        with self._lock:
            if not self._closed:  # after shutdown the list stays, to join them
                self.threads.remove(threading.current_thread())

    def _load_function(self, token: str, payload: Serialized | None) -> Callable[..., Any]:
        fn = self._functions.get(token)
        if fn is None:
            if payload is None:
                payload = self._payloads.get(token)
            if payload is None:
                raise RuntimeError(f"the function of this task (token {token}) never reached this worker")
            fn = payload.deserialize()
            with self._lock:
                self._functions[token] = fn
        return fn

    def _run(self, call: _Call) -> None:
        start = time.time()
        small: Serialized | None = None
        try:
            fn = self._load_function(call.func_token, call.func)
            call_args, call_kwargs = call.args.deserialize()
            inputs = call.inputs
            if inputs:
                call_args = substitute_refs(call_args, inputs)
                call_kwargs = substitute_refs(call_kwargs, inputs)
            value: Any = fn(*call_args, **call_kwargs)
            ok, tb = True, ""
            if call.report_value:
                small = small_result(value)
        except BaseException as exc:  # a task may raise anything, even SystemExit
            ok = False
            value, tb = describe_failure(exc)
        stop = time.time()
        if call.generation != self.generation or call.abandoned:
            return
        try:
            call.loop.call_soon_threadsafe(self._deliver, call, ok, value, tb, start, stop, small)
        except RuntimeError:  # loop closed while the task ran
            pass

    def _deliver(self, call: _Call, ok: bool, value: Any, tb: str, start: float, stop: float,
                 small: Serialized | None) -> None:
        """On the loop: hand the outcome on, unless the call was abandoned meanwhile."""
        if call.abandoned or call.generation != self.generation:
            return
        key = call.key
        if self._active.get(key) is call:
            del self._active[key]
        self.on_done(key, ok, value, tb, start, stop, small)


_SCALARS = frozenset({int, float, bool, complex, str, bytes, type(None)})
_CONTAINERS = frozenset({list, tuple, set, frozenset})


def _size_is_known(value: Any, depth: int = 0) -> bool:
    """Whether ``sizeof(value)`` can be trusted: builtin scalars, short builtin
    containers of them, numpy and pandas objects without Python objects inside.
    Anything else might hide a large payload behind a small ``getsizeof``."""
    typ = type(value)
    if typ in _SCALARS:
        return True
    if depth < 3 and typ in _CONTAINERS and len(value) <= 64:
        return all(_size_is_known(v, depth + 1) for v in value)
    if depth < 3 and typ is dict and len(value) <= 64:
        return all(_size_is_known(k, depth + 1) and _size_is_known(v, depth + 1)
                   for k, v in value.items())
    module = typ.__module__
    if module.startswith("numpy"):
        dtype = getattr(value, "dtype", None)
        return dtype is not None and not dtype.hasobject
    return module.startswith("pandas")


def small_result(value: Any) -> Serialized | None:
    """``value`` serialized when it is small enough to ride along with the
    ``task-finished`` message (sparing the client a fetch), else None.  Values
    that cannot be pickled are left for the regular fetch to report."""
    if not _size_is_known(value) or sizeof(value) > SMALL_RESULT_BYTES:
        return None
    try:
        payload = serialize(value)
    except Exception:
        return None
    if len(payload.frames) != 1 or payload.nbytes > SMALL_RESULT_BYTES:
        return None
    return payload


def describe_failure(exc: BaseException) -> tuple[tuple[Serialized, str], str]:
    """``((pickled exception, "Type: message"), traceback text)``; an exception
    that would not survive the trip is replaced by a RemoteTaskError with its text."""
    text = f"{type(exc).__name__}: {exc}"
    tb_obj = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
    tb = "".join(traceback.format_exception(type(exc), exc, tb_obj))
    try:
        payload = serialize(exc)
        payload.deserialize()  # exceptions with unusual __init__ fail here, not on the client
    except Exception:
        payload = serialize(RemoteTaskError(text))
    return (payload, text), tb
