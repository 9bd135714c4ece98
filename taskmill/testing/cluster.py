"""A whole simulated cluster: one scheduler, workers, clients, one seed.

Theory of operation
-------------------
:class:`SimCluster` builds a :class:`~taskmill.testing.scheduler.SimScheduler`,
:class:`~taskmill.testing.worker.SimWorker` incarnations and
:class:`~taskmill.testing.client.SimClient` connections on one
:class:`~taskmill.testing.network.Network`, wires their channels the way the
real processes connect, and gives a test the levers:

* **time**: :meth:`~SimCluster.step` makes one thing happen (chosen by the
  seeded generator); :meth:`~SimCluster.run_until_idle` steps until nothing
  is in flight and checks the cluster-wide invariants
  (:mod:`taskmill.testing.invariants`); :meth:`~SimCluster.run_until` steps
  until a condition holds;
* **faults**: :meth:`~SimCluster.kill` (optionally a new worker takes the
  address), :meth:`~SimCluster.drop_data`, :meth:`~SimCluster.pause`,
  :meth:`~SimCluster.retire` / :meth:`~SimCluster.cancel_retirement`,
  :meth:`~SimCluster.replicate`, :meth:`~SimCluster.restart`,
  :meth:`~SimCluster.steal` (a work-stealing tick), and the
  clients' own ``cancel`` / ``close`` / ``disconnect``;
* **answers**: :meth:`~SimCluster.who_has`, :meth:`~SimCluster.expected`,
  the machines themselves (``cluster.state``, ``cluster.worker(a).state``) and
  the trace of every delivered message (``trace=True``).

Every machine is built with ``validate=True`` (by default): it checks its
own invariants after every event it handles.  When anything fails (a
machine's check, a shell's contract check, an invariant at quiescence), the
cluster writes the stimulus log of the scheduler and of every worker
incarnation to files and names them, with the seed, in the error: replay one
with :func:`taskmill.testing.replay`, or run the same seed again.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn

from taskmill.core.scheduler import SchedulerState
from taskmill.core.scheduler.events import (
    ReplicateRequested,
    RestartRequested,
    RetireCancelled,
    RetireRequested,
    StealTick,
)
from taskmill.server.task_runner import SMALL_RESULT_BYTES
from taskmill.testing.behaviour import TaskBook
from taskmill.testing.client import SimClient
from taskmill.testing.clock import FakeClock
from taskmill.testing.invariants import quiescent_problems
from taskmill.testing.network import Network
from taskmill.testing.scheduler import SimScheduler
from taskmill.testing.worker import SimWorker


class SimulationFailed(AssertionError):
    """A simulated run broke an invariant; the message names the seed and
    the stimulus logs written out."""


class SimCluster:
    """A socket-free cluster of pure machines (see the module docstring).

    ``workers``: how many workers to start, or one ``(nthreads, resources)``
    pair per worker; ``seed``: the delivery order (and nothing else is random);
    ``msgpack``: encode every batch as on a socket (catches values msgpack
    cannot carry); ``coalesce``: chance a delivery takes the next batch of the
    same stream too; ``trace``: keep every delivered message in
    :attr:`trace`; ``leaks``: at quiescence, also flag data a worker holds
    that the scheduler does not know of.  ``hint`` is added to every failure
    message (how to reproduce the run)."""

    def __init__(self, workers: int | Iterable[tuple[int, dict[str, float] | None]] = 2, *,
                 seed: int = 0, nthreads: int = 1, allowed_failures: int = 3,
                 validate: bool = True, msgpack: bool = True, coalesce: float = 0.25,
                 trace: bool = False, leaks: bool = True,
                 small_result_bytes: int = SMALL_RESULT_BYTES, hint: str = "") -> None:
        self.seed = seed
        self.hint = hint
        self.validate = validate
        self.leaks = leaks
        self.small_result_bytes = small_result_bytes
        self.clock = FakeClock()
        #: every delivered message as (receiver, message), when ``trace=True``
        self.trace: list[tuple[str, Any]] | None = [] if trace else None
        self.net = Network(random.Random(seed), self.clock, msgpack=msgpack, coalesce=coalesce,
                           trace=self.trace)
        #: every task definition and scattered key, and the runs so far
        self.book = TaskBook()
        self.scheduler = SimScheduler(self.net, allowed_failures=allowed_failures, validate=validate)
        #: the worker incarnation at each address now (live ones only)
        self.workers: dict[str, SimWorker] = {}
        self.scheduler.peek = self.workers.get
        #: every worker incarnation ever started, in order
        self.incarnations: list[SimWorker] = []
        #: every client, by id
        self.clients: dict[str, SimClient] = {}
        #: unexpected worker deaths so far (kills, restarts)
        self.deaths = 0
        self._next_worker = 0
        self._next_client = 0
        specs = [(nthreads, None)] * workers if isinstance(workers, int) else list(workers)
        for n, resources in specs:
            self.add_worker(n, resources)
        self.run_until_idle()

    # ------------------------------------------------------------------ #
    # Members
    # ------------------------------------------------------------------ #
    @property
    def state(self) -> SchedulerState:
        """The scheduler's machine."""
        return self.scheduler.state

    def add_worker(self, nthreads: int = 1, resources: dict[str, float] | None = None,
                   address: str | None = None) -> SimWorker:
        """Start a worker (it registers when the cluster steps); a new
        address unless ``address`` is given."""
        if address is None:
            address = f"sim://w{self._next_worker}"
            self._next_worker += 1
        old = self.workers.get(address)
        if old is not None and old.alive:
            raise ValueError(f"a worker is already running at {address}")
        incarnation = sum(1 for w in self.incarnations if w.address == address)
        w = SimWorker(address, nthreads, incarnation=incarnation, net=self.net, book=self.book,
                      peers=self.workers, who_has=self.scheduler.state.who_has, resources=resources,
                      validate=self.validate, small_result_bytes=self.small_result_bytes)
        self.incarnations.append(w)
        self.workers[address] = w
        up = self.net.channel(f"{w.name}->scheduler", self.scheduler.from_worker,
                              self.scheduler.worker_closed)
        down = self.net.channel(f"scheduler->{w.name}", w.from_scheduler)
        self.scheduler.accept_worker(up, down)
        w.connect(up, down)
        return w

    def worker(self, address: str) -> SimWorker:
        """The live worker at ``address``."""
        return self.workers[address]

    @property
    def addresses(self) -> list[str]:
        """Addresses of the live workers, sorted."""
        return sorted(self.workers)

    def client(self, name: str | None = None) -> SimClient:
        """Connect a new client (the scheduler hears ``ClientConnected`` at once)."""
        if name is None:
            name = f"client-{self._next_client}"
            self._next_client += 1
        if name in self.clients and self.clients[name].connected:
            raise ValueError(f"client {name} is already connected")
        c = SimClient(name, net=self.net, book=self.book, scheduler=self.scheduler, peers=self.workers)
        self.clients[name] = c
        up = self.net.channel(f"{name}->scheduler", self.scheduler.from_client,
                              self.scheduler.client_closed)
        down = self.net.channel(f"scheduler->{name}", c.from_scheduler)
        c.connect(up, down)
        with self._guard():
            self.scheduler.accept_client(name, up, down)
        return c

    # ------------------------------------------------------------------ #
    # Time
    # ------------------------------------------------------------------ #
    def step(self) -> bool:
        """Make one thing happen; False when nothing is in flight."""
        with self._guard():
            return self.net.step()

    def deliver(self, sender: str, receiver: str = "scheduler") -> None:
        """Deliver now the oldest batch (or the close) queued from ``sender``
        (a worker's name ``address#n``, a client id, or "scheduler") to
        ``receiver``: to force one order of events."""
        name = f"{sender}->{receiver}"
        for ch in self.net.channels:
            if ch.name == name and ch.queue:
                with self._guard():
                    self.net.deliver(ch)
                return
        raise LookupError(f"nothing queued from {sender} to {receiver}")

    @property
    def idle(self) -> bool:
        """Nothing in flight: no message queued, no pending work."""
        return self.net.idle

    def run_until_idle(self, max_steps: int = 100_000, check: bool = True) -> int:
        """Step until nothing is in flight (at most ``max_steps``, else fail:
        the cluster never settles); then, with ``check``, check the
        cluster-wide invariants.  Returns the steps taken."""
        step = self.net.step
        n = 0
        with self._guard():
            while n < max_steps and step():
                n += 1
        if not self.net.idle:
            self.fail(f"still busy after {max_steps} steps: "
                      f"{[ch for ch in self.net.channels if ch.queue][:5]} {self.net.work[:5]}")
        if check:
            self.check()
        return n

    def run_until(self, condition: Callable[[], bool], max_steps: int = 100_000) -> int:
        """Step until ``condition()`` holds (checked before each step); fail if
        the cluster goes idle or ``max_steps`` pass first.  Returns the steps."""
        n = 0
        with self._guard():
            while not condition():
                if n >= max_steps or not self.net.step():
                    self.fail(f"the condition never held ({n} steps, "
                              f"{'idle' if self.net.idle else 'busy'})")
                n += 1
        return n

    # ------------------------------------------------------------------ #
    # Faults and requests
    # ------------------------------------------------------------------ #
    def kill(self, address: str, *, rejoin: bool = False, lose_in_flight: bool = True) -> SimWorker | None:
        """The worker at ``address`` dies: its data, runs and (with
        ``lose_in_flight``) the messages it sent that were not read yet
        vanish; the scheduler sees its connection close.  With ``rejoin`` a
        new worker process starts at the same address (returned)."""
        w = self.workers[address]
        with self._guard():
            w.kill(lose_in_flight)
        self.deaths += 1
        if rejoin:
            return self.add_worker(w.nthreads, w.resources or None, address=address)
        return None

    def drop_data(self, address: str, *keys: str) -> None:
        """The worker at ``address`` answers the next ``get-data`` for
        ``keys`` without them: see :meth:`SimWorker.drop`."""
        self.workers[address].drop(*keys)

    def pause(self, address: str, paused: bool = True) -> None:
        """The worker at ``address`` runs short of memory (or recovers)."""
        with self._guard():
            self.workers[address].pause(paused)

    def steal(self, horizon: float = 1.0) -> None:
        """The scheduler shell's work-stealing tick (``StealTick``): idle
        workers ask for queued work up to ``horizon`` seconds per thread."""
        with self._guard():
            self.scheduler.handle(StealTick(self.scheduler.sid("steal-tick"), horizon))

    def heartbeat(self, *addresses: str) -> None:
        """The workers at ``addresses`` (default: all) send a heartbeat."""
        for address in addresses or list(self.workers):
            self.workers[address].heartbeat()

    def retire(self, *addresses: str, close: bool = True) -> None:
        """Ask the scheduler to retire workers (``retire_workers``); each
        ends in :attr:`SimScheduler.retired` (True: retired and, with
        ``close``, closed; False: aborted)."""
        known = [a for a in dict.fromkeys(addresses) if a in self.state.workers]
        if close:
            self.scheduler.close_on_retire.update(known)
        with self._guard():
            self.scheduler.handle(RetireRequested(self.scheduler.sid("retire"), tuple(known)))

    def cancel_retirement(self, *addresses: str, reason: str = "it took too long") -> None:
        """Give up retiring ``addresses`` (the request's deadline passed)."""
        with self._guard():
            self.scheduler.handle(RetireCancelled(self.scheduler.sid("retire-timeout"),
                                                  tuple(addresses), reason))

    def replicate(self, keys: Iterable[str], n: int | None = None,
                  workers: Iterable[str] | None = None) -> None:
        """Ask for copies of ``keys`` on ``n`` workers (all when None) among
        ``workers``; :meth:`copies_pending` says which are still being made."""
        with self._guard():
            self.scheduler.handle(ReplicateRequested(
                self.scheduler.sid("replicate"), tuple(keys), n,
                tuple(workers) if workers is not None else None))

    def copies_pending(self, keys: Iterable[str]) -> list[str]:
        """Those of ``keys`` some worker is still fetching a copy of."""
        return self.state.copies_pending(list(keys))

    def restart(self) -> None:
        """Restart the cluster: the scheduler drops every task (clients are
        told ``key-cancelled``) and every worker starts afresh at its address."""
        with self._guard():
            self.scheduler.handle(RestartRequested(self.scheduler.sid("restart")))
        for address in list(self.scheduler.streams):
            if address in self.workers:
                self.kill(address, rejoin=True)

    # ------------------------------------------------------------------ #
    # Answers
    # ------------------------------------------------------------------ #
    def who_has(self, key: str) -> list[str]:
        """The workers the scheduler says hold ``key``."""
        return self.state.who_has([key])[key]

    def expected(self, key: str) -> Any:
        """The value ``key`` must have (from the task book)."""
        return self.book.expected(key)

    def task_state(self, key: str) -> str | None:
        """The scheduler's state of ``key`` (None: unknown)."""
        return self.state.task_state(key)

    def messages(self, kind: type | None = None, receiver: str | None = None) -> list[Any]:
        """Delivered messages of type ``kind`` to ``receiver`` (a worker's
        name ``address#n``, a client id, or "scheduler"); needs ``trace=True``."""
        if self.trace is None:
            raise RuntimeError("build the cluster with trace=True to keep the messages")
        return [m for r, m in self.trace
                if (kind is None or type(m) is kind) and (receiver is None or r == receiver)]

    # ------------------------------------------------------------------ #
    # Checks and failures
    # ------------------------------------------------------------------ #
    def problems(self) -> list[str]:
        """Every cluster-wide invariant broken now (meaningful when idle)."""
        return quiescent_problems(self.scheduler, self.workers, self.clients.values(), self.book,
                                  deaths=self.deaths, leaks=self.leaks)

    def check(self) -> None:
        """Fail (with the stimulus logs written out) unless every
        cluster-wide invariant holds."""
        with self._guard():
            found = self.problems()
        if found:
            self.fail("cluster invariants broken at quiescence:\n  " + "\n  ".join(found[:20]))

    def dump_logs(self) -> list[str]:
        """Write the stimulus logs of the scheduler and of every worker
        incarnation out; returns ``["scheduler: path", "sim://w0#0: path", ...]``."""
        out = []
        for name, log in [("scheduler", self.state.stimulus_log)] + [
                (w.name, w.state.stimulus_log) for w in self.incarnations]:
            try:
                out.append(f"{name}: {log.dump()}")
            except OSError as exc:
                out.append(f"{name}: not written ({exc})")
        return out

    def _context(self) -> str:
        lines = [f"simulation seed {self.seed}, step {self.net.steps}, "
                 f"simulated time {self.clock.now:.4f}"]
        if self.hint:
            lines.append(self.hint)
        lines.append("stimulus logs (replay with taskmill.testing.replay(path)):")
        lines.extend("  " + entry for entry in self.dump_logs())
        return "\n".join(lines)

    def fail(self, message: str) -> NoReturn:
        """Raise :class:`SimulationFailed` with ``message``, the seed and the
        paths of the stimulus logs (written out now)."""
        raise SimulationFailed(f"{message}\n{self._context()}")

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except SimulationFailed:
            raise
        except Exception as exc:
            exc.add_note(self._context())
            raise
