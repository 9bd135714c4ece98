"""A worker runs short calls ahead of its threads (option ``worker.run-ahead``):
the results, cancels and secession stay right, and bad settings stop it."""

from __future__ import annotations

import threading
import time

import pytest

from taskmill import Executor, get_client, get_worker, rejoin, secede
from taskmill.cluster_state import load_cluster_state
from tests.server.worker_options import worker_process_with_env

pytestmark = pytest.mark.timeout(120)


def inc(x: int) -> int:
    return x + 1


def ran_ahead() -> int:
    return get_worker().state.run_ahead.started_ahead


#: (in the worker process) what ``gate`` waits for
_GATE = threading.Event()


def gate() -> str:
    """Blocks until the test lets it go (``release``, in the worker process)."""
    _GATE.wait(60)
    return "released"


def release() -> None:
    _GATE.set()


def fan_out(n: int) -> int:
    c = get_client()
    futures = c.map(inc, range(n))
    secede()
    total = sum(c.gather(futures))
    rejoin()
    return total


def test_short_calls_run_ahead_and_every_result_arrives() -> None:
    with Executor(n_workers=1, threads_per_worker=1) as e:
        assert e.gather(e.map(inc, range(20))) == list(range(1, 21))  # learns that inc is short
        assert e.gather(e.map(inc, range(100, 2100))) == list(range(101, 2101))
        assert e.submit(ran_ahead, pure=False).result() > 0
        # a task that secedes while short calls run ahead of it, and waits for them
        assert e.submit(fan_out, 300).result() == sum(range(1, 301))


def test_a_call_waiting_ahead_can_be_cancelled() -> None:
    with Executor(n_workers=1, threads_per_worker=1) as e:
        e.gather(e.map(inc, range(20)))
        before = e.submit(ran_ahead, pure=False).result()
        blocker = e.submit(gate, pure=False)
        deadline = time.monotonic() + 30
        while not blocker.running():  # reported running once it has run a few ms
            assert time.monotonic() < deadline, "the blocking call never started"
            time.sleep(0.01)
        queued = e.map(inc, range(1000, 1010), pure=False)  # run ahead behind the blocked thread
        # a call waiting ahead does not count as running (concurrent.futures' cancel relies on it)
        assert e.running_keys() == {blocker.key}
        e.cancel(queued[:5], force=True)
        e.run(release)
        assert blocker.result() == "released"
        assert e.gather(queued[5:]) == list(range(1006, 1011))
        assert all(f.cancelled() for f in queued[:5])
        # those the scheduler sent waited ahead of the blocked thread
        assert e.submit(ran_ahead, pure=False).result() > before


#: (in the worker process) the arguments ``record`` ran with
_RAN: list[int] = []


def record(i: int) -> int:
    _RAN.append(i)
    return i


def recorded() -> list[int]:
    return list(_RAN)


def executing_on_workers(e: Executor, path: str) -> set[str]:
    """The keys every worker's machine holds as executing (from a state dump)."""
    e.dump_cluster_state(path)
    workers = load_cluster_state(path)["workers"].values()
    return {key for w in workers for key, rec in w.get("tasks", {}).items()
            if rec.get("state") == "executing"}


def test_a_call_cancelled_while_it_waits_ahead_never_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with Executor(n_workers=1, threads_per_worker=1) as e:
        e.gather(e.map(record, range(-20, 0), pure=False))  # record is known short
        before = e.submit(ran_ahead, pure=False).result()
        blocker = e.submit(gate, pure=False)
        deadline = time.monotonic() + 30
        while not blocker.running():
            assert time.monotonic() < deadline, "the blocking call never started"
            time.sleep(0.01)
        queued = e.map(record, range(1000, 1010), pure=False)
        keys = {f.key for f in queued}
        path = str(tmp_path / "state.json")
        while not keys <= executing_on_workers(e, path):  # all ten wait ahead of the thread
            assert time.monotonic() < deadline, "the calls never reached the worker"
            time.sleep(0.05)
        e.cancel(queued)
        e.run(release)
        assert blocker.result() == "released"
        assert e.submit(ran_ahead, pure=False).result() >= before + 10
        assert not [i for i in e.submit(recorded, pure=False).result() if i >= 1000]


@pytest.mark.parametrize("value, complaint", [
    ("-1", "expected a whole number >= 0"),
    ("5000", "give at most 1024"),
])
def test_a_bad_run_ahead_depth_stops_the_worker_process(value: str, complaint: str) -> None:
    proc = worker_process_with_env(TASKMILL_WORKER__RUN_AHEAD__DEPTH=value)
    assert proc.returncode == 1
    assert "worker.run-ahead.depth" in proc.stderr and complaint in proc.stderr
