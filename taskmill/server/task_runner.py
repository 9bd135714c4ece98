"""Runs task calls in a thread pool and posts each outcome back to the loop.

The thread does the per-task work that can leave the event loop: loading
the (cached) function, unpickling the arguments, putting dependency values
in place of their TaskRefs, calling, and describing a failure.  The outcome
reaches the loop through a :class:`~taskmill.server.handoff.LoopInbox` (one
pipe write, with the GIL released), as do ``secede()`` and ``rejoin()``
notices, in the order the threads posted them.  Outcomes of tasks
submitted before ``discard_all`` (the worker started afresh) are dropped.
The queue may hold more calls than threads (the machine runs short calls
ahead, :mod:`taskmill.core.worker.run_ahead`): ``cancel`` marks a call no
thread has taken yet, and the thread that reaches it skips it; on the loop
its end is reported as a ``CancelledError`` failure, unless the key was
wanted again meanwhile (``still_cancelled``), and then it runs after all.

The pool is ``nthreads`` daemon threads reading calls from one
:class:`~taskmill.server.handoff.HandOff` queue, started together at the
first call.  It has no per-call ``concurrent.futures.Future`` or idle-thread
bookkeeping: handing a call to a thread is one ``put``, which wakes the
thread without holding the GIL (see that module).  ``shutdown`` drops the calls not yet started
and lets each thread end after its current call.

Leaving the count.  Each thread has a
:class:`~taskmill.server.task_context.TaskThread` record (``get_worker()``
and friends find the task through it), which counts against ``nthreads``
until :meth:`TaskRunner._leave_count`: then another thread starts serving
the queue at once and this one ends when its current call returns (a Python
thread cannot be stopped).  That one move serves two purposes:

* ``secede()`` (in the task's thread; :mod:`taskmill.core.worker.secession`)
  leaves the count, keeps its outcome and tells the loop (``on_secede``: the
  state machine hands the freed thread the next task).  ``rejoin()`` tells
  the loop (``on_rejoin``) and blocks until the machine grants a thread
  (:meth:`TaskRunner.resume`); the thread then counts and serves again, so
  one serving thread too many is told to stop (a stop marker in the queue,
  taken by whichever thread is free first).  A rejoin from a call of an
  older generation (the worker started afresh), of an abandoned call, or
  after ``shutdown`` does not wait.
* ``abandon(key)`` (a forced cancel, on the loop) leaves the count for the
  call running ``key`` and drops its outcome whenever it comes; a call
  abandoned before a thread took it is skipped.

The loop and the threads share a call's flags without a lock, in an order
that makes every interleaving safe: the thread sets ``call.thread`` before it
reads ``call.abandoned`` and sets ``call.finished`` before it reads
``leaving``; ``abandon`` sets ``call.abandoned`` before it reads
``call.thread`` and ``call.finished``.  At worst a released thread serves one
more call before it ends (the pool briefly has a thread more, never one
less), and the loop drops an abandoned call's outcome if it arrives anyway.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import CancelledError
import time
import traceback
from collections.abc import Callable
from typing import Any

from taskmill.core.taskref import substitute_refs
from taskmill.errors import RemoteTaskError
from taskmill.protocol import Serialized, serialize
from taskmill.protocol.messages import INLINE_LIMIT
from taskmill.server.handoff import HandOff, LoopInbox
from taskmill.server.sizeof import sizeof
from taskmill.server.task_context import TaskThread, enter_pool

OnDone = Callable[[str, bool, Any, str, float, float, "Serialized | None"], None]

#: results up to this size travel with ``task-finished`` to the clients that
#: want them (see ``small_result``); it keeps them inside the message header
SMALL_RESULT_BYTES = INLINE_LIMIT

_STOP = None  # tells a thread to end
_SPENT_ARGS = serialize(((), {}))  # a finished call's arguments


class Call:
    """One task call, from ``submit`` until its outcome is delivered."""

    __slots__ = ("inbox", "generation", "key", "func_token", "func", "args", "inputs", "report_value",
                 "thread", "finished", "abandoned", "cancelled")

    def __init__(self, inbox: LoopInbox, generation: int, key: str, func_token: str,
                 func: Serialized | None, args: Serialized, inputs: dict[str, Any],
                 report_value: bool) -> None:
        self.inbox = inbox
        self.generation = generation
        self.key = key
        self.func_token = func_token
        self.func = func
        self.args = args
        self.inputs = inputs
        self.report_value = report_value
        #: the record of the thread that took it (None while queued)
        self.thread: TaskThread | None = None
        self.finished = False
        #: its outcome is dropped (``abandon``)
        self.abandoned = False
        #: cancelled while queued (``cancel``): a thread that takes it does not run it
        self.cancelled = False


class TaskRunner:
    """A pool of ``nthreads`` threads running task calls (more while tasks
    are seceded or abandoned calls still run).  ``on_secede(key)`` and
    ``on_rejoin(key)`` run on the loop when a task calls ``secede()`` or
    ``rejoin()``; ``worker`` is what ``get_worker()`` returns inside its
    tasks; ``on_drained()`` runs on the loop after each batch of outcomes and
    notices the threads posted (see :class:`~taskmill.server.handoff.LoopInbox`);
    ``still_cancelled(key)`` says, on the loop, whether a call cancelled while
    queued is still unwanted when a thread reaches it (see ``cancel``)."""

    def __init__(self, nthreads: int, on_done: OnDone,
                 on_secede: Callable[[str], None] | None = None,
                 on_rejoin: Callable[[str], None] | None = None, worker: Any = None,
                 on_drained: Callable[[], None] | None = None,
                 still_cancelled: Callable[[str], bool] | None = None) -> None:
        self.nthreads = nthreads
        self.on_done = on_done
        self.on_drained = on_drained
        self.still_cancelled = still_cancelled
        self.on_secede = on_secede
        self.on_rejoin = on_rejoin
        self.worker = worker
        self.generation = 0
        #: the threads alive now (serving the queue, or ending a seceded or abandoned call)
        self.threads: list[threading.Thread] = []
        #: the loop's inbox for outcomes and notices, made at the first call
        self._inbox: LoopInbox | None = None
        #: key -> the event its thread waits on in ``rejoin``
        self._rejoining: dict[str, threading.Event] = {}
        self._calls: HandOff[Call | None] = HandOff()
        #: key -> its call, from ``submit`` until the loop takes its outcome
        self._active: dict[str, Call] = {}
        self._functions: dict[str, Callable[..., Any]] = {}
        #: token -> the serialized function, as it came with the first task of
        #: that token (the state machine sends each only once): a later task
        #: of the token may reach a thread before the first one unpickled it
        self._payloads: dict[str, Serialized] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._started = 0  # threads started so far (names them)

    def submit(self, key: str, func_token: str, func: Serialized | None, args: Serialized,
               inputs: dict[str, Any], report_value: bool = False) -> None:
        """Run the call in a thread; with ``report_value`` a small result is
        also handed back serialized (see ``small_result``)."""
        if self._closed:
            raise RuntimeError("the task runner is shut down")
        if self._inbox is None:
            self._inbox = LoopInbox(asyncio.get_running_loop(), self.on_drained)
            for _ in range(self.nthreads):
                self._start_thread()
        if func is not None:
            self._payloads[func_token] = func
        call = Call(self._inbox, self.generation, key, func_token, func, args, inputs, report_value)
        self._active[key] = call
        self._calls.put(call)

    def running_keys(self) -> list[str]:
        """(On the loop.)  The keys whose calls a thread has taken and not
        finished: not the calls queued for a thread (run ahead)."""
        return sorted(key for key, call in self._active.items()
                      if call.thread is not None and not call.finished)

    def queued_keys(self) -> tuple[str, ...]:
        """(On the loop.)  The keys whose calls wait for a thread (run ahead)."""
        return tuple([key for key, call in self._active.items() if call.thread is None])

    def cancel(self, key: str) -> None:
        """(On the loop.)  The call of ``key`` is no longer wanted: if no thread
        has taken it yet, the thread that does skips it, and its end is
        reported as a failure (``CancelledError``) unless ``still_cancelled``
        says the key was wanted again meanwhile (then it runs after all).  A
        call already running goes on: a thread cannot be interrupted."""
        call = self._active.get(key)
        if call is not None and self.still_cancelled is not None:
            call.cancelled = True

    def abandon(self, key: str) -> None:
        """Drop the outcome of the call of ``key`` (on the loop): a call not
        started is skipped; a running one keeps its thread until it returns,
        but that thread no longer counts (``_leave_count``)."""
        call = self._active.pop(key, None)
        if call is None:
            return
        call.abandoned = True
        thread = call.thread
        if thread is not None and not call.finished:
            self._leave_count(thread)
            self.resume(key)  # a seceded call waiting in ``rejoin`` goes on, outside the count

    def discard_all(self) -> None:
        """Forget every task in flight: their outcomes will be dropped (and
        their threads waiting in ``rejoin`` go on at once)."""
        self.generation += 1
        self._active.clear()
        self._release_rejoiners()

    def shutdown(self) -> None:
        """(On the loop.)  Drop the calls not started; each thread ends after its current call."""
        self._closed = True
        if self._inbox is not None:
            self._inbox.close()
        self.discard_all()
        self._calls.drain()
        for _ in self.threads:
            self._calls.put(_STOP)

    # ------------------------------------------------------------------ #
    # Seceded tasks (called in the task's own thread, but ``resume``)
    # ------------------------------------------------------------------ #
    def secede(self, thread: TaskThread) -> None:
        """The task of ``thread`` leaves the thread count: another thread serves in its place."""
        if thread.seceded:
            return
        thread.seceded = True
        self._leave_count(thread)
        if thread.generation == self.generation and self.on_secede is not None:
            self._post(self.on_secede, thread.key)

    def rejoin(self, thread: TaskThread) -> None:
        """Block until the state machine gives the seceded task of ``thread`` a thread again."""
        if not thread.seceded:
            raise RuntimeError(
                f"rejoin() was called by task {thread.key!r}, which did not secede(): call "
                "secede() first (or use `with worker_client():`, which does both)")
        thread.seceded = False
        call = thread.call
        if call is not None and call.abandoned:
            return  # nobody waits for this call: it ends outside the count
        granted = threading.Event()
        with self._lock:  # discard_all bumps the generation, then releases under this lock
            wait = (thread.generation == self.generation and not self._closed
                    and self.on_rejoin is not None)
            if wait:
                self._rejoining[thread.key] = granted
        if wait:
            assert self.on_rejoin is not None
            self._post(self.on_rejoin, thread.key)
            granted.wait()
            if call is not None and call.abandoned:
                return  # abandoned while it waited (``abandon`` let it go)
        thread.leaving = False
        self._calls.put(_STOP)  # this thread serves again: one of the others ends

    def resume(self, key: str) -> None:
        """(On the loop.)  The state machine granted ``key`` a thread: its ``rejoin`` returns."""
        with self._lock:
            granted = self._rejoining.pop(key, None)
        if granted is not None:
            granted.set()

    def _release_rejoiners(self) -> None:
        with self._lock:
            waiting, self._rejoining = self._rejoining, {}
        for granted in waiting.values():
            granted.set()

    def _post(self, callback: Callable[[str], None], key: str) -> None:
        assert self._inbox is not None
        try:
            self._inbox.post(callback, key)
        except RuntimeError:  # the loop closed: the worker is gone
            self._release_rejoiners()

    # ------------------------------------------------------------------ #
    # Threads
    # ------------------------------------------------------------------ #
    def _leave_count(self, thread: TaskThread) -> None:
        """``thread`` no longer counts against ``nthreads``: a new thread
        serves the queue from now on, and this one ends when its current call
        returns (unless it rejoins).  Leaving twice is leaving once."""
        if thread.leaving:
            return
        thread.leaving = True
        if not self._closed:
            self._start_thread()

    def _start_thread(self) -> None:
        with self._lock:
            thread = threading.Thread(target=self._serve, name=f"taskmill-task_{self._started}",
                                      daemon=True)
            self._started += 1
            self.threads.append(thread)
        thread.start()

    def _serve(self) -> None:
        calls = self._calls
        me = enter_pool(self)
        while not me.leaving:
            call = calls.get()
            if call is _STOP:
                break
            me.call = call
            call.thread = me  # before reading ``abandoned`` (see the module docstring)
            if call.cancelled:  # set by the loop before a thread took it
                self._post_skip(call)
                continue
            if not call.abandoned:
                self._run(call)
            call.finished = True
            # ``me.call`` outlives the call until the next one: not its arguments
            # and inputs (a large input would stay in memory after its release)
            call.args, call.inputs = _SPENT_ARGS, {}
        with self._lock:
            if not self._closed:  # after shutdown the list stays, to join them
                self.threads.remove(threading.current_thread())

    def _post_skip(self, call: Call) -> None:
        try:
            call.inbox.post(self._skipped, call)
        except RuntimeError:  # loop closed
            pass

    def _skipped(self, call: Call) -> None:
        """On the loop: a thread reached a call cancelled while queued."""
        if call.abandoned or call.generation != self.generation:
            return
        assert self.still_cancelled is not None
        if not self.still_cancelled(call.key):  # wanted again: run it after all
            call.cancelled = False
            call.thread = None
            self._calls.put(call)
            return
        call.finished = True
        if self._active.get(call.key) is call:
            del self._active[call.key]
        value, tb = describe_failure(
            CancelledError(f"task {call.key!r} was cancelled before a thread took it"))
        self.on_done(call.key, False, value, tb, 0.0, 0.0, None)

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

    def _run(self, call: Call) -> None:
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
            call.inbox.post(self._deliver, call, ok, value, tb, start, stop, small)
        except RuntimeError:  # loop closed while the task ran
            pass

    def _deliver(self, call: Call, ok: bool, value: Any, tb: str, start: float, stop: float,
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
