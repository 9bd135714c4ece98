"""The client's asynchronous core: one connection to the scheduler, the keys
this client holds, and the data it fetches from workers.

Theory of operation
-------------------
A ``Session`` lives on one event loop (the Executor's background thread, or
the user's loop in asynchronous mode).  Calls from user threads reach it
through ``post`` (``call_soon_threadsafe``), so messages keep their order.
With an embedded scheduler on the same loop the stream is a
:mod:`~taskmill.comm.local` link (messages handed over as objects), else a
socket; requests go to the scheduler's in-process listener or its address.

* Submissions go out on the stream (a ``BatchedSend``, or the local link) as
  ``update-graph`` messages; nothing waits for the scheduler, so ``submit`` costs only the
  pickling done in the caller's thread.
* The scheduler streams back reports (``key-in-memory``, ``key-erred``,
  ``key-lost``, ``key-cancelled``, and ``keys-running`` for the calls that
  run, which makes the key's Futures RUNNING), decoded through
  :mod:`taskmill.protocol.vocabulary`; ``_on_*`` handlers update the key's
  :class:`KeyState` and complete its live Futures.
* Messages to the scheduler wait in an outbox as vocabulary values and are
  encoded on the loop when they go out.
* Data never passes through the scheduler: ``gather`` asks the workers named
  in the ``key-in-memory`` report, one request per worker for many keys, and
  asks the scheduler again only when a worker no longer has the data.
* Reference counts: ``register_future`` / ``release_future`` count live
  Futures per key under a lock (Futures may be collected on any thread); the
  count reaching zero sends ``release-keys``.  A release is not urgent: it
  waits up to ``RELEASE_DELAY`` for company, and lets the submissions sent
  meanwhile go first when they do not name its keys
  (:mod:`taskmill.client.outbox`), so the releases of a run of calls reach
  the scheduler together and none is handled on a call's path.
* Losing the scheduler: the session keeps the specs of what it submitted
  until it releases the keys (:mod:`taskmill.client.submissions`), and tries
  to connect again for ``comm.timeouts.client-reconnect`` seconds (the
  reconnect window).  Meanwhile submissions and releases wait (the outbox is
  held) and requests wait for the connection.  Once connected, it waits
  until the workers have come back (their number stays the same for
  ``comm.timeouts.client-reconnect-settle`` seconds: results they still hold are reused rather
  than recomputed), then submits the live specs again and wants every key it
  holds; waiting ``result()`` calls then complete as the new scheduler
  reports.  Outside the window (or with an embedded scheduler, which died
  with this process's cluster) every pending Future fails with
  SchedulerGoneError.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import uuid
from dataclasses import replace
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol

from taskmill.client.future import IN_MEMORY, Future
from taskmill import config, config_checks, timeouts
from taskmill.loop_runner import run_on
from taskmill.client.keystate import CANCELLED, ERROR, FINISHED, LOST, PENDING, KeysWaiter, KeyState
from taskmill.client.remote_errors import rebuild_exception, scheduler_decided_error
from taskmill.client.outbox import chunk_length, hold_releases, merge_releases
from taskmill.client.submissions import Submissions
from taskmill.comm import BatchedSend, CommClosedError, ConnectionPool, connect
from taskmill.comm.local import LocalEnd
from taskmill.errors import FutureLostError, SchedulerGoneError
from taskmill.protocol import ProtocolError, Serialized
from taskmill.security import Security
from taskmill.protocol.vocabulary import (
    CLIENT,
    SCHEDULER,
    CancelKeys,
    ClientRegistered,
    CloseClient,
    GetData,
    KeyCancelled,
    KeyErred,
    KeyInMemory,
    KeyLost,
    KeysRunning,
    Message,
    NThreads,
    NoWorkers,
    WorkerGone,
    RegisterClient,
    ReleaseKeys,
    TaskSpec,
    UpdateGraph,
    WhoHas,
    arrived,
    decode,
)

logger = logging.getLogger("taskmill.client")

#: rounds in which a holder named by the scheduler failed to deliver, before giving up
FETCH_ATTEMPTS = 5
#: longest pause (seconds) between asking where a key lives while it is recomputed
RECOMPUTE_POLL_MAX = 1.0
GRAPH_CHUNK = 1000  # tasks per update-graph message
#: seconds a lone ``release-keys`` may wait for other messages to travel with
RELEASE_DELAY = 0.005
#: longest wait (seconds) for workers to come back before submitting anyway
RECONNECT_SETTLE_MAX = 10.0
# what will flush the outbox: nothing yet, the armed timer (soon enough for lazy
# messages), the loop at once
_IDLE, _LAZY, _URGENT = 0, 1, 2


class LocalScheduler(Protocol):
    """A scheduler on the session's own event loop."""

    inproc_address: str

    def connect_local_client(self, client: str) -> LocalEnd: ...


class Session:
    """One client's connection to a scheduler and the keys it holds."""

    def __init__(self, scheduler_address: str, loop: asyncio.AbstractEventLoop, owner: Any,
                 *, connect_timeout: float = 10.0, local_scheduler: LocalScheduler | None = None,
                 future_class: type[Future] = Future, security: Security | None = None) -> None:
        self.scheduler_address = scheduler_address
        #: the cluster's token and TLS files (None: the environment's)
        self.security = security
        self.future_class = future_class
        self._local_scheduler = local_scheduler
        # where requests go: the in-process listener of a scheduler on this
        # very loop, else the public address
        self._via = local_scheduler.inproc_address if local_scheduler else scheduler_address
        self.loop = loop
        self.owner = owner
        #: the actor channels user threads opened through this session (closed with it)
        self.blocking_channels: set[Any] = set()
        self.connect_timeout = connect_timeout
        self.id = f"client-{uuid.uuid4().hex[:16]}"
        self.status = "created"
        self.keys: dict[str, KeyState] = {}
        self.pool = ConnectionPool(timeout=connect_timeout, security=security)
        # workers come and go: a refused connection to one means it is gone
        self.worker_pool = ConnectionPool(timeout=min(connect_timeout, timeouts.PEER_CONNECT.get()),
                                          security=security)
        # reentrant: a Future collected while this thread holds it releases its key
        self._lock = threading.RLock()
        # messages to the scheduler, in the order they were made, not yet on the loop
        self._outbox: list[Message] = []
        # releases an urgent flush held back for the release timer (guarded by _lock)
        self._held: list[Message] = []
        self._flush_pending = _IDLE  # guarded by _lock
        self._lazy_timer: asyncio.TimerHandle | None = None
        self._stream: BatchedSend | LocalEnd | None = None
        self._reader: asyncio.Task[None] | None = None
        self._loop_thread: int | None = None
        self._callbacks = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="taskmill-callback")
        self._generation = 0
        #: the specs of what was submitted and is still held (for a restarted scheduler)
        self.submissions = Submissions()
        #: set while connected; cleared while reconnecting
        self._connected = asyncio.Event()
        self._reconnecting: asyncio.Task[None] | None = None
        self._report_handlers: dict[type[Message], Callable[[Any], None]] = {
            KeyInMemory: self._on_key_in_memory,
            KeyErred: self._on_key_erred,
            KeyLost: self._on_key_lost,
            KeyCancelled: self._on_key_cancelled,
            KeysRunning: self._on_keys_running,
            NoWorkers: self._on_no_workers,
            WorkerGone: self._on_worker_gone,
        }

    # ------------------------------------------------------------------ #
    # Lifecycle
    # ------------------------------------------------------------------ #
    async def start(self) -> None:
        self._loop_thread = threading.get_ident()
        if self._local_scheduler is not None:
            link = self._local_scheduler.connect_local_client(self.id)
            link.on_messages = self._on_reports
            link.on_close = self._on_scheduler_lost
            self._stream = link
            self.status = "running"
            return
        await self._connect(self.connect_timeout)
        self.status = "running"
        self._connected.set()

    async def _connect(self, timeout: float) -> None:
        """Open the stream to the scheduler and register this client on it."""
        comm = await connect(self._via, timeout=timeout, security=self.security)
        request = RegisterClient(self.id).to_wire()
        request["reply"] = False  # the answer comes on the stream itself
        await comm.write(request)
        reply = await asyncio.wait_for(comm.read(), timeout)
        try:
            answer = decode(reply)
        except ProtocolError as exc:
            answer = None
            reply = f"{reply!r:.200} ({exc})"
        if not isinstance(answer, ClientRegistered):
            await comm.close()
            raise ConnectionError(f"scheduler at {self.scheduler_address} refused the client: {reply!r}")
        self._stream = BatchedSend(comm)
        self._reader = asyncio.create_task(self._read_reports(comm), name=f"{self.id}-reports")

    async def close(self) -> None:
        if self.status in ("closing", "closed"):
            return
        was_running = self.status == "running"
        self.status = "closing"
        self._connected.set()  # requests waiting for a reconnection see the status
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        if self._stream is not None and was_running:
            if self._lazy_timer is not None:
                self._lazy_timer.cancel()
                self._lazy_timer = None
            try:
                self._flush_outbox()
                self._stream.send_messages(CloseClient())
                await asyncio.wait_for(self._stream.close(), 5)
            except (CommClosedError, OSError, asyncio.TimeoutError):
                pass
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass
        await self.pool.close()
        await self.worker_pool.close()
        for channel in list(self.blocking_channels):
            channel.close()
        self._fail_pending(SchedulerGoneError("the executor was closed before this task finished"))
        self.status = "closed"
        self._callbacks.shutdown(wait=False)

    def check_running(self) -> None:
        if self.status not in ("running", "reconnecting"):
            raise RuntimeError(
                f"this Executor is {self.status}: create a new Executor to submit work"
            )

    # ------------------------------------------------------------------ #
    # Threads
    # ------------------------------------------------------------------ #
    def on_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop, in call order, from any thread."""
        if self.on_loop_thread():
            fn(*args)
        else:
            try:
                self.loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # loop closed: nothing left to tell
                pass

    def sync(self, coro: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
        """Run a coroutine on the loop from a user thread and wait for it."""
        if self.on_loop_thread():
            coro.close()
            raise RuntimeError("this call blocks; in asynchronous mode, await the future instead")
        return run_on(self.loop, coro, timeout)

    def run_callback(self, fn: Callable[[Future], object], future: Future) -> None:
        if self.on_loop_thread():
            self._callbacks.submit(self._guarded_callback, fn, future)
        else:
            self._guarded_callback(fn, future)

    @staticmethod
    def _guarded_callback(fn: Callable[[Future], object], future: Future) -> None:
        try:
            fn(future)
        except Exception:
            logger.exception("exception calling callback for %r", future)

    # ------------------------------------------------------------------ #
    # Futures and reference counts
    # ------------------------------------------------------------------ #
    def register_future(self, fut: Future) -> KeyState:
        with self._lock:
            ks = self.keys.get(fut.key)
            if ks is None:
                ks = self.keys[fut.key] = KeyState(fut.key)
            ks.refcount += 1
            ks.add_future(fut)
        if ks.status != PENDING:
            self.post(self._complete_futures, ks)
        return ks

    def release_future(self, key: str) -> None:
        with self._lock:
            ks = self.keys.get(key)
            if ks is None:
                return
            ks.refcount -= 1
            if ks.refcount > 0:
                return
            del self.keys[key]
        self.submissions.released(key)
        if self.status == "running":
            self.send(ReleaseKeys("", self.id, (key,)), urgent=False)

    def next_generation(self) -> int:
        self._generation += 1
        return self._generation

    def _send(self, *msgs: Message) -> None:
        if self._stream is None or self.status != "running":
            return
        try:
            self._stream.send_messages(*msgs)
        except CommClosedError:
            self._on_scheduler_lost()

    def send(self, msg: Message, urgent: bool = True) -> None:
        """Queue a message to the scheduler, from any thread.  Order is kept;
        a burst of messages costs one wake-up of the loop.  A message that is
        not ``urgent`` may wait up to ``RELEASE_DELAY`` for others to go with."""
        wanted = _URGENT if urgent else _LAZY
        with self._lock:
            self._outbox.append(msg)
            if self._flush_pending >= wanted:
                return  # already on its way, soon enough
            self._flush_pending = wanted
        self.post(self._flush_urgent if urgent else self._flush_outbox_later)

    def _flush_outbox_later(self) -> None:
        if self._lazy_timer is None:
            self._lazy_timer = self.loop.call_later(RELEASE_DELAY, self._lazy_timer_fired)

    def _lazy_timer_fired(self) -> None:
        # the timer stays armed across urgent flushes (re-arming it for every
        # release would cost a wake-up of the loop each time): it may find nothing
        self._lazy_timer = None
        with self._lock:
            if not self._outbox and not self._held:
                self._flush_pending = _IDLE
                return
        self._flush_outbox()

    def _flush_urgent(self) -> None:
        """Send what is queued but the releases that may wait for the release
        timer (see :mod:`taskmill.client.outbox`)."""
        self._flush_outbox(hold=True)

    def _flush_outbox(self, hold: bool = False) -> None:
        """Send what is queued (with ``hold``, but the releases that may
        wait), at most about ``GRAPH_CHUNK`` tasks' worth per loop turn: a big
        graph queued in one go would otherwise be encoded in one piece while
        nothing else (replies, reports) runs on the loop."""
        with self._lock:
            if self.status == "reconnecting":  # held until the stream is back
                self._flush_pending = _IDLE
                return
            outbox = self._outbox
            if len(outbox) == 1 and not self._held and type(outbox[0]) is not ReleaseKeys:
                msgs, self._outbox, more = outbox, [], False  # a lone call: nothing to chunk, fold, hold
            else:
                take = chunk_length(outbox, GRAPH_CHUNK)
                msgs, self._outbox = self._held + outbox[:take], outbox[take:]
                more = bool(self._outbox)
                msgs, held = hold_releases(msgs) if hold else (msgs, [])
                msgs, self._held = merge_releases(msgs), merge_releases(held)
            if more:
                self._flush_pending = _URGENT
            else:  # lazy messages sent from now on wait for the armed timer, if any
                self._flush_pending = _LAZY if self._lazy_timer is not None or self._held else _IDLE
            arm = bool(self._held)
        if arm:
            self._flush_outbox_later()
        if msgs:
            self._send(*msgs)
        if more:
            self.loop.call_soon(self._flush_urgent)

    def submit_tasks(self, tasks: list[TaskSpec], funcs: dict[str, Serialized],
                     wanted: list[str] | None = None) -> list[Future]:
        """Send tasks (dependencies before dependents)
        and return a Future for each wanted key (default: every task), from any thread.

        Tasks go out in chunks of ``GRAPH_CHUNK`` that the scheduler starts on at
        once.  A task whose dependents come in a later chunk is wanted for the
        time being (else the scheduler would free it as unneeded); those keys
        are released once the whole graph is out, unless something here holds them.
        """
        self.check_running()
        if self._local_scheduler is not None:  # the scheduler will hold these very objects
            tasks = [replace(t, args=t.args.owned()) if len(t.args.frames) > 1 else t
                     for t in tasks]  # out-of-band buffers: may be the user's memory
        if wanted is None:
            wanted = [t.key for t in tasks]
        futures = [self.future_class(k, self) for k in wanted]
        if self._local_scheduler is None:  # a scheduler elsewhere may restart: keep the specs
            self.submissions.record(tasks, funcs, wanted)
        self._send_graph(tasks, funcs, wanted)
        return futures

    def _send_graph(self, tasks: list[TaskSpec], funcs: dict[str, Serialized],
                    wanted: list[str]) -> None:
        """Queue ``update-graph`` messages for ``tasks``, in chunks (see ``submit_tasks``)."""
        if len(tasks) <= GRAPH_CHUNK:  # one message: nothing to hold between chunks
            self.send(UpdateGraph("", self.id, tuple(tasks), tuple(wanted), funcs))
            return
        wanted_set = set(wanted)
        defined = {t.key for t in tasks}
        last_use: dict[str, int] = {}
        for i, t in enumerate(tasks):
            for dep in t.dependencies:
                last_use[dep] = i
        on_hold: list[str] = []
        for start in range(0, len(tasks), GRAPH_CHUNK):
            end = start + GRAPH_CHUNK
            chunk = tasks[start:end]
            want = [t.key for t in chunk if t.key in wanted_set or last_use.get(t.key, -1) >= end]
            on_hold.extend(k for k in want if k not in wanted_set)
            if start == 0:  # wanted keys that are already on the cluster
                want.extend(k for k in wanted if k not in defined)
            self.send(UpdateGraph("", self.id, tuple(chunk), tuple(want), funcs if start == 0 else None))
        if on_hold:
            with self._lock:
                release = [k for k in on_hold if k not in self.keys]
            self.send(ReleaseKeys("", self.id, tuple(release)))

    def cancel_keys(self, keys: list[str], force: bool = False) -> None:
        """Cancel ``keys`` on the cluster (with ``force``, their running calls are abandoned)."""
        self.send(CancelKeys("", self.id, tuple(keys), force))

    # ------------------------------------------------------------------ #
    # Reports from the scheduler (loop thread)
    # ------------------------------------------------------------------ #
    async def _read_reports(self, comm: Any) -> None:
        try:
            while True:
                self._on_reports(await comm.read())
        except (CommClosedError, OSError):
            pass
        finally:
            self._on_scheduler_lost()

    def add_report_handler(self, cls: type[Message], handler: Callable[[Any], None]) -> None:
        """Handle the scheduler's reports of ``cls`` with ``handler`` (on the loop;
        a handler of that class is replaced), for stream reports owned elsewhere."""
        self._report_handlers[cls] = handler

    def _on_reports(self, msgs: list[Any]) -> None:
        """One batch of the scheduler's reports (wire dicts, or messages over a local link)."""
        for raw in msgs:
            try:
                msg = arrived(raw, SCHEDULER, CLIENT, client=self.id, stimulus_id="")
                handler = self._report_handlers[type(msg)]
            except (ProtocolError, KeyError, AttributeError) as exc:
                logger.warning("ignoring a malformed or unknown report from the scheduler: %s", exc)
                continue
            handler(msg)

    def _on_key_in_memory(self, msg: KeyInMemory) -> None:
        ks = self.keys.get(msg.key)
        if ks is None:
            return
        ks.who_has = msg.who_has
        ks.type_name = msg.type_name
        if msg.value is not None and not ks.has_value:
            ks.payload = msg.value  # a small result: no fetch needed
        ks.note_arrival()
        self._finish(ks, FINISHED)

    def _on_keys_running(self, msg: KeysRunning) -> None:
        futures = []
        with self._lock:
            for key in msg.keys:
                ks = self.keys.get(key)
                if ks is not None and ks.status == PENDING and ks.running != msg.running:
                    ks.running = msg.running
                    futures.extend(ks.live_pending())
        for fut in futures:  # outside the lock: a Future's lock may be held while it takes ours
            fut._sync_running()

    def _on_key_erred(self, msg: KeyErred) -> None:
        ks = self.keys.get(msg.key)
        if ks is None:
            return
        if msg.exception is None:
            ks.exception = scheduler_decided_error(msg.error_type, msg.exception_text)
        else:
            ks.exception, ks.traceback = rebuild_exception(
                msg.key, msg.worker, msg.exception, msg.traceback, msg.exception_text)
        self._finish(ks, ERROR)

    def _on_key_lost(self, msg: KeyLost) -> None:
        ks = self.keys.get(msg.key)
        if ks is None:
            return
        ks.exception = FutureLostError(f"the data of {msg.key!r} was lost: {msg.reason}")
        ks.has_value = False
        ks.payload = None
        self._finish(ks, LOST)

    def _on_worker_gone(self, msg: WorkerGone) -> None:
        """The scheduler removed a worker: a fetch from it fails now (a silent
        worker would hold it for the data timeout) and is retried elsewhere."""
        if self.worker_pool.abort_peer(msg.removed):
            logger.info("dropped the connections to worker %s (%s)", msg.removed, msg.reason)

    def _on_no_workers(self, msg: NoWorkers) -> None:
        """The scheduler has had no worker for a while: say so if we wait on it."""
        with self._lock:
            pending = sum(1 for ks in self.keys.values() if ks.status == PENDING)
        if not pending:
            return
        then = (f"they fail with NoWorkersError after {msg.timeout:g}s (option "
                f"scheduler.no-workers-timeout)" if msg.timeout is not None else
                "set the option scheduler.no-workers-timeout to make them fail instead of waiting")
        logger.warning("%d pending futures of this client have waited %.0fs for a worker: none is "
                       "connected to the scheduler at %s (%d tasks wait there); start workers; %s",
                       pending, msg.waited, self.scheduler_address, msg.tasks, then)

    def _on_key_cancelled(self, msg: KeyCancelled) -> None:
        ks = self.keys.get(msg.key)
        if ks is None:
            return
        ks.has_value = False
        ks.value = None
        ks.payload = None
        self._finish(ks, CANCELLED)

    def _finish(self, ks: KeyState, status: str) -> None:
        ks.status = status
        ks.running = False
        if ks.waiters:
            waiters, ks.waiters = ks.waiters, []
            for waiter in waiters:
                waiter.key_done()
        self._complete_futures(ks)

    def _complete_futures(self, ks: KeyState) -> None:
        with self._lock:
            futures = ks.take_pending()
        for fut in futures:
            if fut.done():  # cancelled by the user meanwhile
                continue
            if ks.status == FINISHED:
                fut.set_result(IN_MEMORY)
            elif ks.status in (ERROR, LOST):
                fut.set_exception(ks.exception)
            elif ks.status == CANCELLED:
                fut._cancel_locally()

    def _on_scheduler_lost(self) -> None:
        if self.status != "running":
            return
        if self._local_scheduler is not None:  # it died with this process's cluster
            self.status = "closed"
            logger.error("lost the connection to the scheduler at %s", self.scheduler_address)
            self._fail_pending(SchedulerGoneError(
                f"lost the connection to the scheduler at {self.scheduler_address}; "
                "this task's result cannot arrive. Check that the scheduler is running."
            ))
            return
        window = timeouts.CLIENT_RECONNECT.get()
        self.status = "reconnecting"
        self._connected.clear()
        logger.warning("lost the connection to the scheduler at %s; trying to reconnect for %gs",
                       self.scheduler_address, window)
        self._reconnecting = asyncio.ensure_future(self._reconnect(window))

    async def _reconnect(self, window: float) -> None:
        """Reach the scheduler again within ``window`` seconds, then submit
        what this client holds again; else fail the pending Futures."""
        deadline = time.monotonic() + window
        started = time.monotonic()
        error: BaseException | None = None
        await self.pool.close()  # its connections lead to the lost process
        self.pool = ConnectionPool(timeout=self.connect_timeout, security=self.security)
        while self.status == "reconnecting":
            left = deadline - time.monotonic()
            if left <= 0:
                self._give_up(f"could not reach it again within {window:g}s "
                              f"({timeouts.CLIENT_RECONNECT.hint}): {error}")
                return
            try:
                await self._connect(min(self.connect_timeout, max(0.1, left)))
                break
            except (OSError, asyncio.TimeoutError) as exc:
                error = exc
                await asyncio.sleep(min(0.5, max(0.0, left)))
            except Exception as exc:  # e.g. another token: trying again cannot help
                self._give_up(f"reconnecting failed: {type(exc).__name__}: {exc}")
                return
        if self.status != "reconnecting":
            return
        await self._await_workers(min(deadline, time.monotonic() + RECONNECT_SETTLE_MAX))
        self._resubmit()
        self._connected.set()
        logger.warning("reconnected to the scheduler at %s after %.1fs; submitted again what "
                       "this client holds", self.scheduler_address, time.monotonic() - started)
        if self._reader is not None and self._reader.done():  # lost again meanwhile
            self._on_scheduler_lost()

    def _give_up(self, why: str) -> None:
        """The scheduler is not coming back: fail what is pending, saying ``why``."""
        self.status = "closed"
        self._connected.set()
        self._fail_pending(SchedulerGoneError(
            f"lost the connection to the scheduler at {self.scheduler_address} and {why}; "
            "this task's result cannot arrive"))
        logger.error("gave up reconnecting to the scheduler at %s: %s", self.scheduler_address, why)

    async def _await_workers(self, deadline: float) -> None:
        """Until ``deadline``, wait until the scheduler has workers and their
        number stayed the same for ``comm.timeouts.client-reconnect-settle`` seconds."""
        count, since, settle = -1, time.monotonic(), config.read(
            "comm.timeouts.client-reconnect-settle", config_checks.seconds)
        while self.status == "reconnecting" and time.monotonic() < deadline:
            try:
                n = len(await self.pool.rpc(self._via).ask(NThreads(), timeout=timeouts.REQUEST))
            except Exception:  # lost again (the reader notices) or refused: submit anyway
                return
            if n != count:
                count, since = n, time.monotonic()
            elif n and time.monotonic() - since >= settle:
                return
            await asyncio.sleep(0.1)

    def _resubmit(self) -> None:
        """(On the loop, connected again.)  Submit the live specs and want every
        held key; the messages held meanwhile follow (graphs and releases among
        them are covered by this)."""
        specs, funcs = self.submissions.replay()
        with self._lock:  # keys that erred or were cancelled are not computed again
            held = [k for k, ks in self.keys.items() if ks.status in (PENDING, FINISHED)]
            kept = [m for m in self._outbox if not isinstance(m, (UpdateGraph, ReleaseKeys))]
            self._outbox, self._held = [], []
            self.status = "running"
        if specs or held:
            self._send_graph(specs, funcs, held)
        for msg in kept:
            self.send(msg)

    def _fail_pending(self, error: BaseException) -> None:
        with self._lock:
            states = list(self.keys.values())
        for ks in states:
            if ks.status == PENDING:
                ks.exception = error
                self._finish(ks, ERROR)

    # ------------------------------------------------------------------ #
    # Results and data
    # ------------------------------------------------------------------ #
    def fetch_result_blocking(self, fut: Future, timeout: float | None) -> Any:
        ks = fut._keystate
        if ks.status == FINISHED and ks.unpack_payload():
            return ks.user_value(self)
        if self.on_loop_thread():
            raise RuntimeError(
                "Future.result() would block the event loop; use `await future` in asynchronous mode"
            )
        return self.sync(self.result_async(fut), timeout)

    async def result_async(self, fut: Future) -> Any:
        ks = fut._keystate
        if fut.cancelled():
            raise concurrent.futures.CancelledError(f"{fut.key} was cancelled")
        return (await self.gather_states([ks]))[0]

    async def gather_states(self, states: list[KeyState], errors: str = "raise") -> list[Any]:
        """Wait for the keys and return their values, fetching missing ones."""
        waiter = KeysWaiter(states)
        if waiter.remaining:
            await waiter.future
        out: list[Any] = []
        failed: set[str] = set()
        for ks in states:
            if ks.status in (ERROR, LOST) and ks.exception is not None:
                if errors == "raise":
                    raise ks.exception
                failed.add(ks.key)
            elif ks.status == CANCELLED:
                if errors == "raise":
                    raise concurrent.futures.CancelledError(f"{ks.key} was cancelled")
                failed.add(ks.key)
        await self._fetch([ks for ks in states if ks.status == FINISHED and not ks.unpack_payload()])
        for ks in states:
            if ks.key in failed:
                continue
            if not ks.has_value:  # lost while fetching
                if errors == "raise" and ks.exception is not None:
                    raise ks.exception
                continue
            out.append(ks.user_value(self))
        return out

    async def _fetch(self, states: list[KeyState]) -> None:
        """Fetch finished keys' values from their holders.  A holder that fails
        (unreachable, or without the key) is struck off and the scheduler is
        asked where the key lives now; after ``FETCH_ATTEMPTS`` such rounds the
        key is lost.  A key with no holder left is being recomputed (the
        scheduler errs or reports it lost otherwise): that wait, however long
        the lineage takes, does not count as a failed attempt."""
        pending = {ks.key: ks for ks in states}
        failed_rounds = 0
        pause = 0.1
        while pending:
            by_worker: dict[str, list[str]] = {}
            for key, ks in pending.items():
                if ks.who_has:
                    by_worker.setdefault(ks.who_has[0], []).append(key)
            results = await asyncio.gather(
                *(self._get_data(w, keys) for w, keys in by_worker.items()), return_exceptions=True
            )
            failed = False
            for (worker, keys), got in zip(by_worker.items(), results):
                if isinstance(got, BaseException) and not isinstance(got, OSError):
                    raise got  # e.g. the value cannot be pickled: retrying will not help
                if isinstance(got, BaseException):
                    logger.info("could not fetch %d keys from %s: %s", len(keys), worker, got)
                    for key in keys:
                        pending[key].who_has = tuple(w for w in pending[key].who_has if w != worker)
                    failed = True
                    continue
                failed = failed or len(got) < len(keys)
                for key, value in got.items():
                    ks = pending.pop(key)
                    ks.value = value.deserialize()
                    ks.has_value = True
            if not pending:
                return
            failed_rounds += failed
            if failed_rounds >= FETCH_ATTEMPTS:
                break
            await self._refresh_who_has(pending, pause)
            pause = min(2 * pause, RECOMPUTE_POLL_MAX)
            for key in [k for k, ks in pending.items() if ks.status != FINISHED]:
                del pending[key]  # erred or lost meanwhile: the caller raises its error
        for ks in pending.values():
            if ks.status == FINISHED:
                ks.exception = FutureLostError(
                    f"could not fetch the data of {ks.key!r} from any worker after {FETCH_ATTEMPTS} attempts"
                )
                ks.status = LOST

    async def _get_data(self, worker: str, keys: list[str]) -> dict[str, Serialized]:
        reply = await self.worker_pool.rpc(worker).ask(GetData(tuple(keys)), timeout=timeouts.DATA)
        return dict(reply["data"])

    async def _refresh_who_has(self, pending: dict[str, KeyState], pause: float) -> None:
        """Ask where ``pending`` keys live; for those with no holder (being
        recomputed) wait up to ``pause`` seconds for a new report."""
        who_has = await self.scheduler_call(WhoHas(tuple(pending)))
        for key, workers in who_has.items():
            if key in pending:
                pending[key].who_has = tuple(workers)
        waiting = [ks for ks in pending.values() if not ks.who_has and ks.status == FINISHED]
        for ks in waiting:  # being recomputed: wait for its next in-memory report
            ks.arrived_event.clear()
        if waiting:
            await asyncio.wait(
                [asyncio.ensure_future(ks.arrived_event.wait()) for ks in waiting],
                timeout=pause,
            )

    # ------------------------------------------------------------------ #
    # Requests
    # ------------------------------------------------------------------ #
    async def scheduler_call(self, msg: Message, *,
                             timeout: float | timeouts.Timeout | None = timeouts.REQUEST) -> Any:
        """Send the request ``msg`` to the scheduler; ``timeout`` bounds the wait for the reply
        (None only for requests that run user code)."""
        if self.status == "reconnecting":
            await self._connected.wait()
        if self.status != "running":
            raise SchedulerGoneError(f"not connected to the scheduler ({self.status})")
        return await self.pool.rpc(self._via).ask(msg, timeout=timeout)

    async def worker_call(self, worker: str, msg: Message, *,
                          timeout: float | timeouts.Timeout | None) -> Any:
        """Send the request ``msg`` to a worker; ``timeout`` bounds the wait for the reply
        (None only for requests that run user code)."""
        return await self.worker_pool.rpc(worker).ask(msg, timeout=timeout)

    def states_for(self, futures: Iterable[Future]) -> list[KeyState]:
        return [f._keystate for f in futures]

