"""The simulated worker: :mod:`taskmill.server.worker` minus sockets and threads.

Theory of operation
-------------------
:class:`SimWorker` is one incarnation of a worker process (a worker that
dies and comes back at the same address is a new ``SimWorker``).  It does
what the real worker shell does around the pure
:class:`~taskmill.core.worker.WorkerState`, with the network's pending
:class:`~taskmill.testing.network.Work` standing in for threads and requests:

* batches from the scheduler are decoded (``worker`` = its own address) and
  handed to the machine in one ``handle`` call; ``worker-registered`` opens
  the stream, ``retired`` (with ``close``) closes the worker after the batch;
* the wire messages the machine returns go back as one batch per call;
* ``Execute`` starts a simulated run (:class:`Run`) on a free thread: the
  :class:`~taskmill.testing.behaviour.TaskBook` decides its value or failure
  and its duration; when it ends, the value is stored first, then the machine
  hears ``ExecuteSucceeded`` (with the small result attached when a client
  wants it) or ``ExecuteFailed``;
* ``Fetch`` is a ``get-data`` request to the peer now at that address: served
  at one step (what the peer holds then; a dead peer fails it), landing at a
  later one (``FetchSucceeded``/``FetchFailed``);
* ``AskWhoHas`` is answered from the scheduler's machine, in two steps too;
* ``DeleteData`` drops values, ``CancelExecution`` marks the run so its
  thread is free again only when it ends (as a real thread);
* a task defined with ``secede_after`` secedes (``TaskSeceded``), asks to
  rejoin (``RejoinRequested``) and goes on only at ``RejoinGranted``, as the
  real task runner's threads do; a seceded run holds no thread.
  ``AbandonExecution`` frees the run's thread at once and drops its outcome
  (the real runner lets the abandoned call end on a thread of its own);
* ``ScheduleStartReport`` is a tick (``StartReportDue``) the shell's delay
  later, pending work like a run's end, so it lands before or after the runs
  it concerns end, as the seed decides.

On the way it checks the machines' contracts and raises
:class:`~taskmill.testing.scheduler.ShellContractError` when one breaks: a run
started with no free thread or with an input not stored, a task run twice at
once, a function delivered twice or never, resources oversubscribed, a
message from the wrong side.

A fault a test can inject: :meth:`SimWorker.drop` makes the next
``get-data`` asking for some keys answer without them (as if the worker had
just dropped them), while its machine and store keep them: the path that
ends in ``missing-data``.  Only the next answer: a worker whose machine
believes it holds a key it can never serve would be a broken shell, not a
protocol race.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from taskmill.core.worker import WorkerState
from taskmill.core.worker.events import (
    AbandonExecution,
    AskWhoHas,
    CancelExecution,
    DataPut,
    DeleteData,
    Execute,
    ExecuteFailed,
    ExecuteSucceeded,
    Fetch,
    FetchFailed,
    FetchSucceeded,
    PauseChanged,
    RejoinGranted,
    RejoinRequested,
    ScheduleStartReport,
    StartReportDue,
    TaskSeceded,
    WhoHasAnswered,
)
from taskmill.protocol import Serialized
from taskmill.protocol.vocabulary import (
    SCHEDULER,
    WORKER,
    ComputeTask,
    Heartbeat,
    Message,
    RegisterWorker,
    Retired,
    Unregister,
    WorkerRegistered,
    decode,
)
from taskmill.server.worker import START_REPORT_DELAY
from taskmill.testing.behaviour import (
    TaskBook,
    func_payload,
    serialized_failure,
    serialized_value,
)
from taskmill.testing.network import Batch, Channel, Network
from taskmill.testing.scheduler import ShellContractError, from_stream

WhoHasFn = Callable[[Iterable[str]], dict[str, list[str]]]


class Run:
    """A simulated task run on one thread of a worker."""

    __slots__ = ("key", "ok", "result", "start", "report_value", "resources", "cancelled",
                 "seceded", "rejoining")

    def __init__(self, key: str, ok: bool, result: Any, start: float, report_value: bool,
                 resources: dict[str, float] | None) -> None:
        self.key = key
        #: whether it succeeds; ``result`` is its value or its exception
        self.ok = ok
        self.result = result
        self.start = start
        self.report_value = report_value
        self.resources = resources
        #: the machine said ``CancelExecution`` (its result will be dropped)
        self.cancelled = False
        #: the run called ``secede()`` (holds no thread), and waits in ``rejoin()``
        self.seceded = False
        self.rejoining = False


class SimWorker:
    """One incarnation of a simulated worker (see the module docstring).

    ``peers`` maps each address to the worker incarnation listening there
    now (shared by the whole cluster); ``who_has`` answers the worker's
    ``who-has`` requests."""

    def __init__(self, address: str, nthreads: int, *, incarnation: int, net: Network, book: TaskBook,
                 peers: dict[str, SimWorker], who_has: WhoHasFn,
                 resources: dict[str, float] | None = None, validate: bool = True,
                 small_result_bytes: int = 4096) -> None:
        self.address = address
        self.nthreads = nthreads
        self.resources = dict(resources or {})
        #: ``address#n``: which incarnation at that address
        self.name = f"{address}#{incarnation}"
        self.net = net
        self.clock = net.clock
        self.book = book
        self.peers = peers
        self.who_has = who_has
        self.small_result_bytes = small_result_bytes
        #: the pure machine
        self.state = WorkerState(address, nthreads, validate=validate)
        #: the data store: key -> value
        self.store: dict[str, Any] = {}
        #: keys the next ``get-data`` answers without (:meth:`drop`)
        self.unservable: set[str] = set()
        #: every key ever dropped that way (the scheduler may have struck
        #: this copy off while the machine keeps it)
        self.dropped: set[str] = set()
        #: token -> the function payload, as delivered with an ``Execute``
        self.functions: dict[str, Serialized] = {}
        #: runs in progress (threads busy), by key
        self.running: dict[str, Run] = {}
        #: how many ``compute-task`` messages carried each function token
        self.functions_received: dict[str, int] = {}
        #: False once it died or closed
        self.alive = True
        #: True once the scheduler answered its registration
        self.registered = False
        #: None, or the ``close`` flag of the ``retired`` message it got
        self.retired: bool | None = None
        self.up: Channel | None = None
        self.down: Channel | None = None

    def __repr__(self) -> str:
        state = "alive" if self.alive else "dead"
        return f"<SimWorker {self.name} {state}, {len(self.store)} keys, {len(self.running)} running>"

    # ------------------------------------------------------------------ #
    # Connection
    # ------------------------------------------------------------------ #
    def connect(self, up: Channel, down: Channel) -> None:
        """Open its connection to the scheduler and ask to register."""
        self.up, self.down = up, down
        request = RegisterWorker(self.address, self.nthreads, 0, None, self.name, 0,
                                 self.resources or None, incarnation=self.name)
        self.net.send(up, [request.to_wire()])

    def from_scheduler(self, ch: Channel, batch: Batch) -> None:
        """A batch arrived from the scheduler."""
        if not self.alive:
            return
        events = []
        close = False
        record = self.net.record
        for raw in batch:
            # the answer to its registration comes first, then the stream proper
            msg = from_stream(raw, SCHEDULER, WORKER, worker=self.address) if self.registered else decode(raw)
            record(self.name, msg)
            kind = type(msg)
            if kind is ComputeTask:
                if msg.func is not None:  # type: ignore[attr-defined]
                    token = msg.func_token  # type: ignore[attr-defined]
                    n = self.functions_received[token] = self.functions_received.get(token, 0) + 1
                    if n > 1:
                        raise ShellContractError(f"{self.name} was sent the function {token!r} {n} times")
                events.append(msg)
            elif kind is WorkerRegistered:
                self.registered = True
            elif kind is Retired:
                self.retired = msg.close  # type: ignore[attr-defined]
                close = close or msg.close  # type: ignore[attr-defined]
            else:
                events.append(msg)
        if events:
            self.handle(*events)
        if close:
            self.close()

    def close(self) -> None:
        """Close gracefully: say ``unregister``, close the stream, stop."""
        if not self.alive:
            return
        if self.registered and self.up is not None:
            self.net.send(self.up, [Unregister().to_wire()])
        self._stop(lose_queued=False)

    def kill(self, lose_in_flight: bool = True) -> None:
        """Die at once: data and running work vanish; with ``lose_in_flight``
        what it had sent but the scheduler had not read vanishes too."""
        if self.alive:
            self._stop(lose_queued=lose_in_flight)

    def _stop(self, lose_queued: bool) -> None:
        self.alive = False
        self.running.clear()
        self.store.clear()
        self.net.cancel_work(self)
        if self.up is not None:
            self.net.close(self.up, lose_queued=lose_queued)
        if self.down is not None:
            self.net.abort(self.down)
        if self.peers.get(self.address) is self:
            del self.peers[self.address]

    # ------------------------------------------------------------------ #
    # The machine
    # ------------------------------------------------------------------ #
    def handle(self, *events: Any) -> None:
        """Hand ``events`` to the machine in one call and carry out its commands."""
        cmds = self.state.handle(*events)
        out: Batch = []
        for cmd in cmds:
            kind = type(cmd)
            if kind is Execute:
                self._execute(cmd)  # type: ignore[arg-type]
            elif isinstance(cmd, Message):
                out.append(cmd.to_wire())
            elif kind is Fetch:
                self._fetch(cmd.peer, cmd.keys)  # type: ignore[attr-defined]
            elif kind is DeleteData:
                for key in cmd.keys:  # type: ignore[attr-defined]
                    self.store.pop(key, None)
                    self.unservable.discard(key)
            elif kind is CancelExecution:
                run = self.running.get(cmd.key)  # type: ignore[attr-defined]
                if run is not None:
                    run.cancelled = True
            elif kind is AskWhoHas:
                self._ask_who_has(cmd.keys)  # type: ignore[attr-defined]
            elif kind is RejoinGranted:
                self._rejoin_granted(cmd.key)  # type: ignore[attr-defined]
            elif kind is ScheduleStartReport:
                self.net.schedule(START_REPORT_DELAY, self._start_report_due,
                                  f"start report of {self.name}", self)
            elif kind is AbandonExecution:
                self.running.pop(cmd.key, None)  # type: ignore[attr-defined]
            else:
                raise TypeError(f"worker shell cannot run {cmd!r}")
        if out and self.registered and self.up is not None:
            self.net.send(self.up, out)

    # ------------------------------------------------------------------ #
    # Runs
    # ------------------------------------------------------------------ #
    def _execute(self, cmd: Execute) -> None:
        key = cmd.key
        task = self.book.tasks.get(key)
        if task is None:
            raise ShellContractError(f"{self.name} was told to run {key!r}, which no client submitted")
        if bytes(cmd.args.frames[0]) != key.encode():
            raise ShellContractError(f"{self.name} runs {key!r} with the arguments of another task")
        token = cmd.func_token
        if cmd.func is not None:
            if token in self.functions:
                raise ShellContractError(f"{self.name} was handed the function {token!r} a second time")
            if cmd.func != func_payload(token):
                raise ShellContractError(f"{self.name} got the wrong function for {token!r}")
            self.functions[token] = cmd.func
        elif token not in self.functions:
            state = ("was sent" if token in self.functions_received else "was never sent")
            raise ShellContractError(f"{self.name} runs {key!r} without the function {token!r} (it {state} it)")
        if key in self.running:
            raise ShellContractError(f"{self.name} starts {key!r} while a run of it is still going")
        if self._busy_threads() >= self.nthreads:
            raise ShellContractError(f"{self.name} starts {key!r} with all {self.nthreads} threads busy")
        store = self.store
        if set(cmd.dependencies) != set(task.deps):
            raise ShellContractError(f"{self.name} runs {key!r} with inputs {cmd.dependencies}, "
                                     f"not {task.deps}")
        absent = [d for d in task.deps if d not in store]
        if absent:
            raise ShellContractError(f"{self.name} runs {key!r} before its inputs {absent} are stored")
        if task.resources:
            for name, amount in task.resources.items():
                used = sum((r.resources or {}).get(name, 0.0) for r in self.running.values()
                           if not r.cancelled)
                if used + amount > self.resources.get(name, 0.0) + 1e-9:
                    raise ShellContractError(
                        f"{self.name} runs {key!r} needing {name}={amount} with {used} of "
                        f"{self.resources.get(name, 0.0)} in use")
        ok, result = self.book.run(key, {d: store[d] for d in task.deps})
        run = self.running[key] = Run(key, ok, result, self.clock.now, cmd.report_value, task.resources)
        if task.secede_after is None:
            self.net.schedule(task.duration, lambda: self._run_ended(run), f"run {key} on {self.name}", self)
        else:
            self.net.schedule(task.secede_after, lambda: self._secede(run, task.seceded_for, task.rejoins),
                              f"{key} secedes on {self.name}", self)

    def _busy_threads(self) -> int:
        return sum(1 for r in self.running.values() if not r.seceded)

    def _secede(self, run: Run, seceded_for: float | None, rejoins: bool) -> None:
        if self.running.get(run.key) is not run:
            return
        run.seceded = True
        self.handle(TaskSeceded(f"secede-{run.key}", run.key))
        if seceded_for is not None:
            self._done_waiting(run, seceded_for, rejoins)

    def _done_waiting(self, run: Run, after: float, rejoins: bool) -> None:
        then = self._ask_rejoin if rejoins else self._run_ended
        self.net.schedule(after, lambda: then(run), f"{run.key} done waiting on {self.name}", self)

    def let_rejoin(self, key: str) -> None:
        """The seceded run of ``key`` (a task with ``seceded_for=None``) is
        done waiting: it asks to rejoin (or ends, without ``rejoins``) soon."""
        run = self.running.get(key)
        if run is None or not run.seceded or run.rejoining:
            raise ValueError(f"{key!r} is not seceded on {self.name}")
        self._done_waiting(run, 0.0, self.book.tasks[key].rejoins)

    def _ask_rejoin(self, run: Run) -> None:
        if self.running.get(run.key) is not run:
            return
        run.rejoining = True
        self.handle(RejoinRequested(f"rejoin-{run.key}", run.key))

    def _rejoin_granted(self, key: str) -> None:
        run = self.running.get(key)
        if run is None or not run.rejoining:
            raise ShellContractError(f"{self.name} let {key!r} rejoin, which does not wait to")
        if self._busy_threads() >= self.nthreads:
            raise ShellContractError(f"{self.name} lets {key!r} rejoin with all {self.nthreads} "
                                     "threads busy")
        run.seceded = run.rejoining = False
        duration = self.book.tasks[key].duration
        self.net.schedule(duration, lambda: self._run_ended(run), f"run {key} on {self.name}", self)

    def _start_report_due(self) -> None:
        self.handle(StartReportDue("start-report"))

    def _run_ended(self, run: Run) -> None:
        key = run.key
        if self.running.get(key) is not run:
            return
        del self.running[key]
        now = self.clock.now
        if run.ok:
            value = run.result
            self.store[key] = value
            nbytes = self.book.nbytes(key)
            small = (serialized_value(value) if run.report_value and nbytes <= self.small_result_bytes
                     else None)
            self.handle(ExecuteSucceeded(f"task-finished-{key}", key, nbytes, type(value).__name__,
                                         run.start, now, small))
        else:
            exc = run.result
            self.handle(ExecuteFailed(f"task-erred-{key}", key, serialized_failure(exc),
                                      f"Traceback (simulated):\n  {exc}\n",
                                      f"{type(exc).__name__}: {exc}", run.start, now))

    # ------------------------------------------------------------------ #
    # Moving data
    # ------------------------------------------------------------------ #
    def _fetch(self, peer: str, keys: tuple[str, ...]) -> None:
        net = self.net

        def serve() -> None:
            source = self.peers.get(peer)
            if source is None or not source.alive:
                data = None
            else:
                store, unservable = source.store, source.unservable
                data = {k: store[k] for k in keys if k in store and k not in unservable}
                if unservable:
                    unservable.difference_update(keys)
            net.schedule(net.latency, lambda: self._fetched(peer, keys, data),
                         f"fetch from {peer} lands on {self.name}", self)

        net.schedule(net.latency, serve, f"{peer} serves {self.name}", self)

    def _fetched(self, peer: str, keys: tuple[str, ...], data: dict[str, Any] | None) -> None:
        if data is None:
            self.handle(FetchFailed(f"fetch-failed-{peer}", peer, keys,
                                    f"OSError: could not connect to {peer}"))
            return
        self.store.update(data)
        nbytes = self.book.nbytes
        self.handle(FetchSucceeded(f"fetched-{peer}", peer, keys, {k: nbytes(k) for k in data}))

    def _ask_who_has(self, keys: tuple[str, ...]) -> None:
        net = self.net

        def serve() -> None:
            answer = {k: tuple(v) for k, v in self.who_has(keys).items()}
            net.schedule(net.latency, lambda: self._who_has_answered(answer),
                         f"who-has answer lands on {self.name}", self)

        net.schedule(net.latency, serve, f"scheduler answers who-has of {self.name}", self)

    def _who_has_answered(self, answer: dict[str, tuple[str, ...]]) -> None:
        self.handle(WhoHasAnswered("who-has-answer", answer))

    def put_data(self, data: dict[str, Any], nbytes: dict[str, int], client: str = "") -> str:
        """``client`` scattered ``data`` here (``put-data``); returns the
        answer's incarnation (this incarnation's name)."""
        self.store.update(data)
        self.handle(DataPut("put-data", dict(nbytes), client))
        return self.name

    # ------------------------------------------------------------------ #
    # Faults and timers a test drives
    # ------------------------------------------------------------------ #
    def drop(self, *keys: str) -> None:
        """The next ``get-data`` asking for ``keys`` answers without them;
        this worker's machine is not told (see the module docstring)."""
        held = [k for k in keys if k in self.store]
        self.unservable.update(held)
        self.dropped.update(held)

    def pause(self, paused: bool = True) -> None:
        """Memory is short (or no longer): the memory monitor's ``PauseChanged``."""
        self.handle(PauseChanged("memory-pause" if paused else "memory-resume", paused))

    def heartbeat(self) -> None:
        """Send one heartbeat to the scheduler."""
        if not (self.alive and self.registered and self.up is not None):
            return
        state = self.state
        self.net.send(self.up, [Heartbeat("", self.address, 0.0, executing=state.executing_count,
                                          in_memory=len(self.store), paused=state.paused,
                                          seen=state.epoch).to_wire()])
