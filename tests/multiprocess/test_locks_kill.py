"""A task holding a Lock on a worker process that is SIGKILLed: the lock
goes to the next waiter at once (the worker's client disconnects), well
within the lease timeout."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

from taskmill import Event, Executor, Lock
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(120)


def hold_lock(lock: Lock, held: Event) -> int:
    """Take the lock, say so, and keep it (until the process is killed)."""
    assert lock.acquire(timeout=30)
    held.set()
    Event("never-set").wait(60)
    return os.getpid()


def waiters(name: str, scheduler: Any) -> int:
    entry = scheduler.locks.machine.names.get(name)
    return 0 if entry is None else len(entry.waiting)


def test_a_killed_workers_lock_goes_to_the_next_waiter_within_the_lease_timeout() -> None:
    with Executor(n_workers=1, threads_per_worker=1, set_as_default=False) as e:
        lock, held = Lock("kill-me", client=e), Event("held", client=e)
        future = e.submit(hold_lock, lock, held)
        assert held.wait(timeout=60), "the task did not take the lock"
        assert lock.locked()
        [pid] = e.run(os.getpid).values()
        assert pid != os.getpid()
        got: list[bool] = []
        waiter = threading.Thread(target=lambda: got.append(lock.acquire(timeout=60)))
        waiter.start()
        # queued first, so the lock is not re-taken by the task rerun on the restarted worker
        wait_for(lambda: e.run_on_scheduler(waiters, "kill-me") == 1, message="the client waits")
        future.cancel()
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        waiter.join(60)
        assert got == [True]
        assert time.monotonic() - killed < 10  # at once on disconnect; the lease timeout is 30 s
        lock.release()
