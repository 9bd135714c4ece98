"""Random schedules on a simulated cluster: small graphs, random faults,
random delivery orders, one seed each.

Theory of operation
-------------------
:func:`run_scenario` builds everything from one seed: the cluster (2-4
workers of 1-2 threads, some declaring a ``GPU``), one or two clients, a
small random graph (a few tasks, some restricted, some needing a GPU, some
failing a number of times with retries, some big enough to be fetched
rather than attached), and a few dozen steps in which, now and then, the
scenario's *family* injects something between deliveries:

* ``plain``: nothing but the graph (and a second submission); every wanted
  key must end in memory;
* ``failures``: tasks raise, retry, err, and errors reach their dependents;
* ``deaths``: workers die (a new one may take the address), run with
  ``allowed_failures`` low enough to see ``KilledWorker``;
* ``data``: scattered data, lost copies (``missing-data``), replicate,
  retire (and giving up on it), pause and resume, heartbeats;
* ``clients``: release, want again, cancel (forced or not), fire-and-forget, clients that
  close, vanish or arrive late;
* ``mixed``: all of the above;
* ``seceding`` (only when asked for, so that the seeds of the others keep
  their schedules): deaths and data faults while some tasks ``secede()``
  and ``rejoin()`` (or end seceded) as they run;
* ``stealing`` (only when asked for, too): everything of ``mixed`` plus
  work-stealing ticks (``SimCluster.steal``), so steal requests and answers
  cross finishes, frees, deaths, pauses and retirements.

Then it resumes paused workers, runs until quiescent and checks the
cluster-wide invariants (:mod:`taskmill.testing.invariants`); every machine
validated itself after every event on the way.  Finally every client
releases everything, and once quiescent again the scheduler must have
forgotten every task and the workers must hold nothing (but what a retired
worker kept or a lost copy hid).

A failure names the seed; run that one schedule again with::

    python -m taskmill.testing.random_scenarios --seed N

(``--count`` and ``--family`` run many and report those that failed; it
prints schedules per second).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from taskmill.core.scheduler.records import FIRE_AND_FORGET
from taskmill.testing.behaviour import SimTask
from taskmill.testing.client import SimClient
from taskmill.testing.cluster import SimCluster

FAMILIES = ("plain", "failures", "deaths", "data", "clients", "mixed")
#: families run only when named (``--family``), outside the seeds' rotation
EXTRA_FAMILIES = ("seceding", "stealing")
PREFIXES = ("inc", "add", "sum")


@dataclass(frozen=True)
class ScenarioResult:
    """What one schedule did (for statistics; a failure raises instead)."""

    seed: int
    family: str
    steps: int
    tasks: int
    faults: int


def family_of(seed: int) -> str:
    """The family a seed runs when none is given: families take turns."""
    return FAMILIES[seed % len(FAMILIES)]


class _Scenario:
    """The state of one random schedule (see the module docstring)."""

    def __init__(self, seed: int, family: str) -> None:
        if family not in FAMILIES + EXTRA_FAMILIES:
            raise ValueError(f"unknown family {family!r}; one of {FAMILIES + EXTRA_FAMILIES}")
        self.seed = seed
        self.family = family
        self.rng = rng = random.Random(seed * 7919 + 17)
        self.stealing = family == "stealing"
        mixed = family == "mixed" or self.stealing
        self.seceding = family == "seceding"
        self.failures = family == "failures" or mixed
        self.deaths = family == "deaths" or mixed or self.seceding
        self.data = family == "data" or mixed or self.seceding
        self.clients_vary = family == "clients" or mixed
        specs = [(rng.choice((1, 1, 2)), {"GPU": 1.0} if rng.random() < 0.3 else None)
                 for _ in range(rng.randint(2, 4))]
        self.gpus = any(r for _, r in specs)
        self.cluster = SimCluster(
            specs, seed=seed, allowed_failures=rng.choice((1, 2, 3)) if self.deaths else 3,
            coalesce=rng.choice((0.0, 0.25, 0.5)),
            hint=f"reproduce: python -m taskmill.testing.random_scenarios --seed {seed} --family {family}")
        self.clients: list[SimClient] = [self.cluster.client() for _ in range(rng.choice((1, 1, 2)))]
        self.keys: list[str] = []
        self.defs: dict[str, SimTask] = {}
        self.scattered: list[str] = []
        self.faults = 0

    # ------------------------------------------------------------------ #
    # Graphs
    # ------------------------------------------------------------------ #
    def new_task(self) -> SimTask:
        rng = self.rng
        i = len(self.keys) + len(self.scattered)
        key = f"{rng.choice(PREFIXES)}-{i}"
        pool = self.keys + self.scattered
        deps = tuple(rng.sample(pool, min(len(pool), rng.choice((0, 1, 1, 2)))))
        fail = retries = 0
        if self.failures and rng.random() < 0.25:
            fail, retries = rng.choice(((1, 0), (1, 1), (2, 1), (1, 2), (3, 1)))
        workers = None
        loose = False
        if rng.random() < 0.1:
            workers = (rng.choice(self.cluster.addresses),)
            loose = rng.random() < 0.5
        resources = None
        if self.gpus and workers is None and rng.random() < 0.15:
            resources = {"GPU": 1.0}
        secede_after, seceded_for, rejoins = None, 0.01, True
        if self.seceding and rng.random() < 0.5:
            secede_after = rng.choice((0.0, 0.001, 0.05))
            seceded_for = rng.choice((0.0, 0.01, 0.2))
            rejoins = rng.random() < 0.8
        task = SimTask(key, deps, duration=rng.choice((0.001, 0.01, 0.1)),
                       nbytes=rng.choice((8, 8, 100_000)), fail=fail, retries=retries,
                       priority=(rng.randint(0, 2),), workers=workers,
                       allow_other_workers=loose, resources=resources,
                       secede_after=secede_after, seceded_for=seceded_for, rejoins=rejoins)
        self.keys.append(key)
        self.defs[key] = task
        return task

    def submit(self, client: SimClient, n: int) -> None:
        new = [self.new_task() for _ in range(n)]
        needed: set[str] = set()
        stack = [t.key for t in new]
        while stack:
            key = stack.pop()
            if key not in needed and key in self.defs:
                needed.add(key)
                stack.extend(self.defs[key].deps)
        tasks = [self.defs[k] for k in self.keys if k in needed]  # dependencies first
        wanted = [t.key for t in new if self.rng.random() < 0.7] or [new[-1].key]
        client.submit(*tasks, wanted=wanted)

    # ------------------------------------------------------------------ #
    # Interventions
    # ------------------------------------------------------------------ #
    def interventions(self) -> list[Callable[[], None]]:
        ops: list[Callable[[], None]] = [self.op_submit, self.op_release]
        if self.deaths:
            ops += [self.op_kill, self.op_kill]
        if self.data:
            ops += [self.op_scatter, self.op_drop, self.op_replicate, self.op_retire,
                    self.op_pause, self.op_heartbeat]
        if self.clients_vary:
            ops += [self.op_want, self.op_cancel, self.op_fire_and_forget, self.op_close,
                    self.op_new_client]
        if self.stealing:
            ops += [self.op_steal] * 4
        return ops

    def live_client(self) -> SimClient | None:
        live = [c for c in self.clients if c.connected]
        return self.rng.choice(live) if live else None

    def op_submit(self) -> None:
        client = self.live_client()
        if client is not None:
            self.submit(client, self.rng.randint(1, 3))

    def op_release(self) -> None:
        client = self.live_client()
        if client is not None and client.wanted:
            client.release(self.rng.choice(list(client.wanted)))

    def op_want(self) -> None:
        client = self.live_client()
        if client is not None and self.keys:
            client.want(self.rng.choice(self.keys))

    def op_cancel(self) -> None:
        client = self.live_client()
        if client is not None and client.wanted:
            client.cancel(self.rng.choice(list(client.wanted)), force=self.rng.random() < 0.5)
            self.faults += 1

    def op_fire_and_forget(self) -> None:
        client = self.live_client()
        if client is not None and client.wanted:
            key = self.rng.choice(list(client.wanted))
            client.fire_and_forget(key)
            client.release(key)

    def op_close(self) -> None:
        client = self.live_client()
        if client is not None:
            client.close() if self.rng.random() < 0.5 else client.disconnect()
            self.faults += 1

    def op_new_client(self) -> None:
        if len(self.clients) < 4:
            client = self.cluster.client()
            self.clients.append(client)
            self.submit(client, 1)

    def op_kill(self) -> None:
        cluster = self.cluster
        alive = cluster.addresses
        if not alive:
            return
        address = self.rng.choice(alive)
        rejoin = len(alive) < 3 or self.rng.random() < 0.5
        cluster.kill(address, rejoin=rejoin, lose_in_flight=self.rng.random() < 0.7)
        if len(alive) < 3 and self.rng.random() < 0.3:
            cluster.add_worker(self.rng.choice((1, 2)), {"GPU": 1.0} if self.gpus else None)
        self.faults += 1

    def op_scatter(self) -> None:
        client = self.live_client()
        cluster = self.cluster
        if client is None or not cluster.scheduler.streams:
            return
        key = f"data-{len(self.keys) + len(self.scattered)}"
        try:
            client.scatter({key: self.rng.randint(0, 10**6)},
                           broadcast=self.rng.random() < 0.2)
        except ValueError:  # "no worker to scatter to": every worker is retiring
            return
        self.scattered.append(key)

    def op_drop(self) -> None:
        cluster = self.cluster
        held = [(a, k) for a, w in cluster.workers.items() for k in w.store]
        if held:
            address, key = self.rng.choice(held)
            cluster.drop_data(address, key)
            self.faults += 1

    def op_replicate(self) -> None:
        cluster = self.cluster
        in_memory = [k for k, ts in cluster.state.tasks.items() if ts.state == "memory"]
        if in_memory:
            cluster.replicate(self.rng.sample(in_memory, min(2, len(in_memory))),
                              self.rng.choice((None, 1, 2)))

    def op_retire(self) -> None:
        cluster = self.cluster
        retiring = [ws.address for ws in cluster.state.workers.values() if ws.retiring]
        if retiring and self.rng.random() < 0.5:
            cluster.cancel_retirement(*retiring)
        elif len(cluster.state.workers) > 1:
            cluster.retire(self.rng.choice(list(cluster.state.workers)),
                           close=self.rng.random() < 0.8)
            self.faults += 1

    def op_pause(self) -> None:
        cluster = self.cluster
        registered = [a for a, w in cluster.workers.items() if w.registered]
        if registered:
            address = self.rng.choice(registered)
            cluster.pause(address, not cluster.workers[address].state.paused)

    def op_heartbeat(self) -> None:
        self.cluster.heartbeat()

    def op_steal(self) -> None:
        self.cluster.steal(horizon=self.rng.choice((0.01, 0.1, 1.0)))

    # ------------------------------------------------------------------ #
    # The schedule
    # ------------------------------------------------------------------ #
    def run(self, steps: int) -> ScenarioResult:
        rng = self.rng
        cluster = self.cluster
        if self.data and rng.random() < 0.5:
            self.op_scatter()
        self.submit(self.clients[0], rng.randint(2, 5))
        ops = self.interventions()
        chance = 0.15 if self.family != "plain" else 0.05
        step = cluster.step
        for _ in range(steps):
            if rng.random() < chance:
                rng.choice(ops)()
            elif not step() and rng.random() < 0.3:
                break
        for address, w in list(cluster.workers.items()):  # resume, so nothing waits for memory
            if w.registered and w.state.paused:
                cluster.pause(address, False)
        cluster.run_until_idle()
        if self.family == "plain":
            self.expect_all_in_memory()
        self.release_everything()
        return ScenarioResult(self.seed, self.family, cluster.net.steps, len(self.keys), self.faults)

    def expect_all_in_memory(self) -> None:
        for client in self.clients:
            for key in client.wanted:
                if client.outcome(key) != "memory" or client.result(key) != self.cluster.expected(key):
                    self.cluster.fail(f"{client.id} wants {key!r}, told {client.outcome(key)}, "
                                      "in a run without faults")

    def release_everything(self) -> None:
        cluster = self.cluster
        for client in self.clients:
            if client.connected and client.wanted:
                client.release(*client.wanted)
        cluster.run_until_idle()
        # only fire-and-forget work that cannot run (no worker for it) may stay, with its inputs
        kept: set[str] = set()
        stack = [ts for ts in cluster.state.tasks.values() if FIRE_AND_FORGET in ts.who_wants]
        while stack:
            ts = stack.pop()
            if ts.key not in kept:
                kept.add(ts.key)
                stack.extend(ts.dependencies)
        left = [f"{k} ({ts.state})" for k, ts in cluster.state.tasks.items() if k not in kept]
        held = [f"{w.name}: {sorted(set(w.store) - w.dropped - kept)}" for w in cluster.workers.values()
                if w.retired is None and set(w.store) - w.dropped - kept]
        if left or held:
            cluster.fail(f"after every client released everything the scheduler still has "
                         f"{left[:10]} and workers still hold {held[:5]}")


def run_scenario(seed: int, family: str | None = None, steps: int = 60) -> ScenarioResult:
    """Run the random schedule of ``seed`` (family: see the module
    docstring; by default it follows the seed), ``steps`` steps before
    settling; raises with the seed and the stimulus logs on a failure."""
    return _Scenario(seed, family or family_of(seed)).run(steps)


@dataclass
class Sweep:
    """What :func:`sweep` found: how many schedules passed, and the failures
    (seed, error)."""

    passed: int = 0
    failed: list[tuple[int, BaseException]] = field(default_factory=list)

    def summary(self) -> str:
        """One line, for a report."""
        seeds = [seed for seed, _ in self.failed]
        return f"{self.passed} passed, {len(self.failed)} failed" + (f": seeds {seeds[:10]}" if seeds else "")


def sweep(seeds: Iterable[int], family: str | None = None, steps: int = 60,
          stop_at_failure: bool = True) -> Sweep:
    """Run each seed's schedule (see :class:`Sweep`)."""
    out = Sweep()
    for seed in seeds:
        try:
            run_scenario(seed, family, steps)
        except Exception as exc:
            out.failed.append((seed, exc))
            if stop_at_failure:
                break
            continue
        out.passed += 1
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m taskmill.testing.random_scenarios [--seed N] [--count C] [--family F]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="the (first) seed to run")
    parser.add_argument("--count", type=int, default=1, help="how many seeds, from --seed on")
    parser.add_argument("--family", choices=FAMILIES + EXTRA_FAMILIES, default=None,
                        help="the kind of faults (default: as the seed says)")
    parser.add_argument("--steps", type=int, default=60, help="steps before settling")
    args = parser.parse_args(argv)
    if args.count == 1:  # one schedule: let its failure speak for itself
        result = run_scenario(args.seed, args.family, args.steps)
        print(f"seed {args.seed} ({result.family}) passed: {result.steps} steps, {result.tasks} "
              f"tasks, {result.faults} faults")
        return 0
    start = time.perf_counter()
    found = sweep(range(args.seed, args.seed + args.count), args.family, args.steps,
                  stop_at_failure=False)
    elapsed = time.perf_counter() - start
    print(f"{args.count} schedules in {elapsed:.2f} s ({args.count / elapsed:.0f} schedules/s)")
    print(found.summary())
    for seed, exc in found.failed:
        print(f"--- seed {seed}: {exc}")
    return 1 if found.failed else 0


if __name__ == "__main__":
    sys.exit(main())
