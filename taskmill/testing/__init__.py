"""Test helpers: a socket-free simulated taskmill cluster.

Theory of operation
-------------------
taskmill's decisions live in two pure state machines,
:class:`~taskmill.core.scheduler.SchedulerState` and
:class:`~taskmill.core.worker.WorkerState`; the processes around them (the
*shells*, :mod:`taskmill.server.scheduler` and :mod:`taskmill.server.worker`)
only move messages, run threads and keep data.  This package replaces the
shells with simulated ones, so a whole cluster (one scheduler machine, any
number of worker machines, any number of clients) runs in one thread, in
microseconds per message, with no sockets, threads, asyncio, sleeps or wall
clock:

* :class:`SimCluster` wires them together; every message crosses the
  simulated network as it crosses a real one: ``to_wire()``, msgpack
  (:func:`taskmill.protocol.dumps` / :func:`~taskmill.protocol.loads`),
  then :func:`~taskmill.protocol.vocabulary.decode` with the receiver's local
  fields;
* :mod:`~taskmill.testing.network`: per-connection FIFO channels, and one
  seeded ``random.Random`` choosing what happens next among the channels
  holding messages and the pending simulated work (a task finishing, a
  transfer landing); the same seed gives the same run;
* :class:`FakeClock`: simulated time, moved by message latency and task
  durations, fed to the machines as the events' ``now``;
* :class:`SimTask` / :class:`TaskBook`: tasks whose value is computed from
  their key and their inputs' values (so every result can be checked), with
  chosen sizes, durations and failures;
* faults: kill a worker (and start a new one at its address), make a
  worker lose data, pause, retire, replicate, cancel, disconnect a client,
  restart;
* checks: every machine validates its invariants after every event; at
  quiescence :mod:`~taskmill.testing.invariants` checks the cluster as a
  whole (what each client was told, where the data really is, that nothing
  is stuck).  A failure writes every machine's stimulus log out and names
  the files and the seed (:func:`replay` re-runs one machine's log);
* :mod:`~taskmill.testing.random_scenarios`: thousands of random schedules,
  one seed each (``python -m taskmill.testing.random_scenarios --seed N``);
* the simulated shells know the ground truth the machines cannot see
  (what each worker really holds), so they also check, message by message,
  that the scheduler records no copy a worker lacks.

Writing a simulated test
------------------------
::

    from taskmill.testing import SimCluster, SimTask

    def test_lost_result_is_recomputed_from_its_lineage():
        cluster = SimCluster(workers=2, seed=1)
        client = cluster.client()
        client.submit(SimTask("a"), SimTask("b", deps=("a",)), wanted=["b"])
        cluster.run_until_idle()            # steps until quiet, checks invariants
        assert client.outcome("b") == "memory"

        (holder,) = cluster.who_has("b")
        cluster.kill(holder)                # its data vanishes
        cluster.run_until_idle()
        assert cluster.who_has("b") != [holder]
        assert client.result("b") == cluster.expected("b")

Tasks fail on purpose with ``SimTask("x", fail=2, retries=1)`` (the first two
runs raise); ``cluster.run_until(lambda: ...)`` stops mid-flight (say, while a
task runs: ``"x" in cluster.worker(a).running``) to inject a fault at that
moment; ``cluster.deliver("client-0")`` delivers one sender's next batch now,
to force an order; ``SimCluster(trace=True)`` keeps every delivered message
(``cluster.messages(ComputeTask)``).  Run the same test under many seeds to
try many delivery orders.
"""

from taskmill.core.stimulus_log import replay
from taskmill.testing.behaviour import SimTask, SimulatedFailure, TaskBook, sim_value
from taskmill.testing.client import SimClient
from taskmill.testing.clock import FakeClock
from taskmill.testing.cluster import SimCluster, SimulationFailed
from taskmill.testing.invariants import quiescent_problems
from taskmill.testing.network import Channel, Network, Work
from taskmill.testing.scheduler import ShellContractError, SimScheduler
from taskmill.testing.worker import SimWorker

__all__ = [
    "Channel",
    "FakeClock",
    "Network",
    "ShellContractError",
    "SimClient",
    "SimCluster",
    "SimScheduler",
    "SimTask",
    "SimWorker",
    "SimulatedFailure",
    "SimulationFailed",
    "TaskBook",
    "Work",
    "quiescent_problems",
    "replay",
    "sim_value",
]
