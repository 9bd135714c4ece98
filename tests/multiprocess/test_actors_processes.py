"""An actor on a real worker process: calls reach the object there, also from
a task and from an actor on another worker process; SIGKILLing its worker makes the next call
raise ActorLostError quickly (never a hang)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from taskmill import Actor, ActorLostError, Executor
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(120)

DEADLINE = 30.0


class Tally:
    """Counts calls in the worker process it lives in."""

    total = 0

    def add(self, n: int) -> tuple[int, int]:
        self.total += n
        return self.total, os.getpid()

    def wait_forever(self) -> bool:
        """Occupy the actor until its worker dies."""
        return threading.Event().wait(10 * DEADLINE)

    def relay(self, other: Actor, n: int) -> tuple[int, int]:
        """Call another actor from this one's method (through the worker's client)."""
        return other.add(n).result(DEADLINE)


def add_from_a_task(a: Actor, n: int) -> int:
    total, _ = a.add(n).result(DEADLINE)
    return int(total)


def test_an_actor_in_a_worker_process_and_its_workers_death() -> None:
    with Executor(n_workers=2, threads_per_worker=1, set_as_default=False) as e:
        pids = {w: i["pid"] for w, i in e.scheduler_info()["workers"].items()}
        first, second = sorted(pids)
        a = e.submit(Tally, actor=True, workers=[first]).result(DEADLINE)
        assert a.worker == first
        lone = e.submit(Tally, actor=True, workers=[first])  # never copied elsewhere as an input
        assert lone.result(DEADLINE).worker == first
        assert a.add(2).result(DEADLINE) == (2, pids[first])
        assert e.submit(add_from_a_task, a, 3, workers=[second], pure=False).result(DEADLINE) == 5
        assert a.total == 5
        b = e.submit(Tally, actor=True, workers=[second]).result(DEADLINE)
        assert b.relay(a, 1).result(DEADLINE) == (6, pids[first])

        pending = a.wait_forever()
        os.kill(pids[first], signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(ActorLostError, match=f"its worker {first} is unreachable"):
            pending.result(DEADLINE)  # in flight when the worker died
        with pytest.raises(ActorLostError, match=f"its worker {first} is unreachable"):
            a.add(1).result(DEADLINE)
        with pytest.raises(ActorLostError, match=f"its worker {first} is unreachable"):
            b.relay(a, 1).result(DEADLINE)  # raised in b's method, re-raised here as it was
        assert time.monotonic() - start < 10  # within the peer connect timeout, not a hang
        # the scheduler errs the key of an actor held only there rather than building an object
        # nobody can reach (``a``'s key lives on as the copies its dependent tasks fetched)
        wait_for(lambda: lone.status == "error", timeout=DEADLINE, message="the actor's key erred")
        with pytest.raises(ActorLostError, match="is lost: .*Make a new actor"):
            lone.result(DEADLINE)
