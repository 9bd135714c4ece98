"""Both pure state machines behave identically in every process.

A stimulus log is replayed in another process than the one that wrote it, and
Python salts ``hash(str)`` per process (``PYTHONHASHSEED``): a set of keys or
addresses whose iteration order reaches a command, a story entry or a
sequence number makes the replay diverge.  Each test runs the seeded random
workloads of ``test_worker_state_random`` / ``test_scheduler_random`` in
subprocesses with different hash seeds and compares digests of everything the
machine produced: every command list, every new story (transition log) entry,
and after each ``handle`` call the records' keys in creation order with their
state (and, for the worker, the ``seq`` that orders its ready heap and fetch
queues).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
HASH_SEEDS = ("1", "2", "3")

# Wraps ``handle`` of the machine class so that every call feeds the digest.
_PRELUDE = """
import hashlib, itertools, sys
sys.path[:0] = [{here!r}, {root!r}]
digest = hashlib.blake2b()

def done(name):  # one line per run: the first that differs names the culprit
    global digest
    print(name, digest.hexdigest()[:16])
    digest = hashlib.blake2b()

def wrap(cls, log_of, records_of):
    inner = cls.handle
    def handle(self, *events):
        log = log_of(self)
        before = len(log)
        out = inner(self, *events)
        assert len(log) < log.maxlen, "story wrapped: use a smaller workload"
        digest.update(repr(out).encode())
        digest.update(repr(list(itertools.islice(log, before, None))).encode())
        digest.update(repr(records_of(self)).encode())
        return out
    cls.handle = handle
"""

_WORKER = _PRELUDE + """
import test_worker_state_random as rnd
from taskmill.core.worker.state import WorkerState
wrap(WorkerState, lambda ws: ws._log,
     lambda ws: [(k, ts.state, ts.seq) for k, ts in ws.tasks.items()])
for seed in range(1000):
    rnd.run_random_sequence(seed)
    done(f"run_random_sequence({{seed}})")
# wider: more keys (inputs, dependents) and more peers (holders) per record
rnd.KEYS = [f"k{{i}}" for i in range(24)]
rnd.PEERS = tuple(f"p{{i}}" for i in range(6))
for seed in range(600):
    rnd.run_random_sequence(seed)
    done(f"run_random_sequence({{seed}}) with 24 keys, 6 peers")
"""

_SCHEDULER = _PRELUDE + """
import test_scheduler_random as rnd
from taskmill.core.scheduler.state import SchedulerState
wrap(SchedulerState, lambda s: s.transition_log,
     lambda s: [(k, ts.state) for k, ts in s.tasks.items()])
for seed in range(40):
    rnd.test_random_scenarios(seed)
    done(f"test_random_scenarios({{seed}})")
"""


def _digests(script: str) -> dict[str, list[str]]:
    """The lines ``script`` prints under each of ``HASH_SEEDS`` (run in parallel)."""
    code = script.format(here=str(HERE), root=str(ROOT))
    procs = {
        seed: subprocess.Popen(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in HASH_SEEDS
    }
    out = {}
    for seed, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"PYTHONHASHSEED={seed}:\n{stderr}"
        out[seed] = stdout.splitlines()
    return out


def _assert_same(digests: dict[str, list[str]]) -> None:
    first, *others = HASH_SEEDS
    for other in others:
        for a, b in zip(digests[first], digests[other]):
            assert a == b, f"PYTHONHASHSEED={first} and {other} diverge in {a.rsplit(' ', 1)[0]}"
        assert len(digests[first]) == len(digests[other])


def test_worker_machine_is_deterministic_across_processes() -> None:
    _assert_same(_digests(_WORKER))


def test_scheduler_machine_is_deterministic_across_processes() -> None:
    _assert_same(_digests(_SCHEDULER))
