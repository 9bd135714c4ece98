"""The worker's task thread pool: calls run in threads, outcomes come back to the loop."""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from typing import Any

import pytest

from taskmill.comm import run
from taskmill.protocol import serialize, serialize_function
from taskmill.server.task_runner import TaskRunner

pytestmark = pytest.mark.timeout(30)


def add(x: int, y: int) -> int:
    return x + y


def leave(code: int) -> None:
    raise SystemExit(code)


GATE = threading.Event()  # the runner's threads are in this process


def wait_then(value: int) -> int:
    assert GATE.wait(10)
    return value


class Outcomes:
    def __init__(self) -> None:
        self.got: dict[str, tuple[bool, Any]] = {}
        self.threads: set[str] = set()
        self.changed = asyncio.Event()

    def __call__(self, key: str, ok: bool, value: Any, tb: str, start: float, stop: float,
                 small: Any) -> None:
        self.got[key] = (ok, value)
        self.threads.add(threading.current_thread().name)
        self.changed.set()

    async def wait(self, *keys: str) -> None:
        while not all(k in self.got for k in keys):
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 10)


def call(runner: TaskRunner, key: str, fn: Any, *args: Any) -> None:
    token, func = serialize_function(fn)
    runner.submit(key, token, func, serialize((args, {})), {})


def test_calls_run_on_pool_threads_and_report_on_the_loop() -> None:
    async def main() -> None:
        outcomes = Outcomes()
        runner = TaskRunner(2, outcomes)
        call(runner, "a", add, 1, 2)
        call(runner, "b", leave, 3)  # SystemExit in a task is a failure, not the thread's end
        call(runner, "c", add, 4, 5)
        await outcomes.wait("a", "b", "c")
        assert outcomes.got["a"] == (True, 3) and outcomes.got["c"] == (True, 9)
        assert outcomes.got["b"][0] is False and "SystemExit" in outcomes.got["b"][1][1]
        assert outcomes.threads == {"MainThread"}  # on_done runs on the loop's thread
        assert [t.name for t in runner.threads] == ["taskmill-task_0", "taskmill-task_1"]
        runner.shutdown()
        for t in runner.threads:
            t.join(10)
            assert not t.is_alive()
        with pytest.raises(RuntimeError, match="shut down"):
            call(runner, "d", add, 1, 1)

    run(main())


class Held:
    """An input whose release a weak reference can watch."""


def nothing() -> None:
    return None


def test_a_finished_call_keeps_no_input_alive() -> None:
    async def main() -> None:
        outcomes = Outcomes()
        runner = TaskRunner(1, outcomes)
        held = Held()
        watch = weakref.ref(held)
        token, func = serialize_function(nothing)
        runner.submit("k", token, func, serialize(((), {})), {"dep": held})
        del held
        await outcomes.wait("k")
        deadline = time.monotonic() + 10  # the thread waits for its next call meanwhile
        while watch() is not None:
            assert time.monotonic() < deadline, "the finished call still holds its input"
            await asyncio.sleep(0.01)
        runner.shutdown()
        runner.threads[0].join(10)

    run(main())


def test_discarded_and_unstarted_calls_report_nothing() -> None:
    async def main() -> None:
        outcomes = Outcomes()
        runner = TaskRunner(1, outcomes)
        GATE.clear()
        call(runner, "running", wait_then, 1)
        call(runner, "queued", add, 1, 1)
        runner.shutdown()  # drops "queued"; "running" finishes but is discarded
        GATE.set()
        runner.threads[0].join(10)
        assert not runner.threads[0].is_alive()
        for _ in range(3):  # an outcome posted before the thread ended runs in these turns
            await asyncio.sleep(0)
        assert outcomes.got == {}

    run(main())


SECEDED_GATE = threading.Event()


def secede_wait_rejoin(value: int) -> int:
    from taskmill import rejoin, secede

    secede()
    assert SECEDED_GATE.wait(10)
    rejoin()
    return value


def open_seceded_gate() -> bool:
    SECEDED_GATE.set()
    return True


def test_a_seceded_call_gets_a_replacement_thread_and_the_pool_shrinks_back() -> None:
    async def main() -> None:
        outcomes = Outcomes()
        heard: list[tuple[str, str]] = []
        runner: TaskRunner

        def on_secede(key: str) -> None:
            heard.append(("secede", key))

        def on_rejoin(key: str) -> None:  # the machine grants at once
            heard.append(("rejoin", key))
            runner.resume(key)

        runner = TaskRunner(1, outcomes, on_secede, on_rejoin)
        SECEDED_GATE.clear()
        call(runner, "waits", secede_wait_rejoin, 7)
        call(runner, "opens", open_seceded_gate)  # runs only on the replacement thread
        await outcomes.wait("waits", "opens")
        assert outcomes.got["waits"] == (True, 7) and outcomes.got["opens"] == (True, True)
        assert heard == [("secede", "waits"), ("rejoin", "waits")]
        deadline = asyncio.get_running_loop().time() + 10
        while len(runner.threads) != 1:  # the surplus serving thread takes the stop marker
            assert asyncio.get_running_loop().time() < deadline, runner.threads
            await asyncio.sleep(0.01)
        runner.shutdown()

    run(main())


STUCK_GATE = threading.Event()
STUCK_STARTED = threading.Event()
RAN: list[str] = []


def blocked() -> str:
    STUCK_STARTED.set()
    assert STUCK_GATE.wait(10)
    return "late"


def record(name: str) -> str:
    RAN.append(name)
    return name


def test_an_abandoned_call_leaves_the_pool_count_and_its_outcome_is_dropped() -> None:
    async def main() -> None:
        outcomes = Outcomes()
        runner = TaskRunner(1, outcomes)
        call(runner, "stuck", blocked)
        call(runner, "queued", add, 1, 2)  # waits for the one thread ...
        assert await asyncio.to_thread(STUCK_STARTED.wait, 10)
        runner.abandon("stuck")  # ... which another thread replaces at once
        await outcomes.wait("queued")
        assert outcomes.got["queued"] == (True, 3) and "stuck" not in outcomes.got
        assert sum(t.is_alive() for t in runner.threads) == 2  # the abandoned call still runs
        released = runner.threads[0]
        STUCK_GATE.set()
        await asyncio.to_thread(released.join, 10)  # the released thread ends with its call
        assert not released.is_alive() and released not in runner.threads
        call(runner, "after", add, 2, 2)
        await outcomes.wait("after")
        assert "stuck" not in outcomes.got
        assert len(runner.threads) == 1 and runner.threads[0].is_alive()
        runner.abandon("unknown")  # nothing to do
        runner.shutdown()

    try:
        run(main())
    finally:
        STUCK_GATE.set()


def test_a_call_abandoned_before_a_thread_took_it_never_runs() -> None:
    async def main() -> None:
        outcomes = Outcomes()
        runner = TaskRunner(1, outcomes)
        GATE.clear()
        call(runner, "first", wait_then, 1)
        call(runner, "second", record, "second")  # queued behind the first
        runner.abandon("second")
        GATE.set()
        call(runner, "third", record, "third")
        await outcomes.wait("first", "third")
        assert RAN == ["third"] and "second" not in outcomes.got
        assert sum(t.is_alive() for t in runner.threads) == 1  # nothing left the pool
        runner.shutdown()

    run(main())


REJOIN_ASKED = threading.Event()
REJOIN_RETURNED = threading.Event()


def secede_then_rejoin() -> str:
    from taskmill import rejoin, secede

    secede()
    rejoin()  # the machine never grants it: the call is abandoned while it waits
    REJOIN_RETURNED.set()
    return "dropped"


def test_a_seceded_call_abandoned_while_it_waits_to_rejoin_goes_on_outside_the_count() -> None:
    async def main() -> None:
        outcomes = Outcomes()

        def on_rejoin(key: str) -> None:  # the machine does not grant: all threads are busy
            REJOIN_ASKED.set()

        runner = TaskRunner(1, outcomes, on_rejoin=on_rejoin)
        call(runner, "waits", secede_then_rejoin)
        assert await asyncio.to_thread(REJOIN_ASKED.wait, 10)
        runner.abandon("waits")  # a forced cancel: its rejoin() returns, its outcome is dropped
        assert await asyncio.to_thread(REJOIN_RETURNED.wait, 10)
        call(runner, "next", add, 1, 1)
        await outcomes.wait("next")
        assert "waits" not in outcomes.got
        deadline = asyncio.get_running_loop().time() + 10
        while len(runner.threads) != 1:  # the abandoned call's thread ends; nthreads serve on
            assert asyncio.get_running_loop().time() < deadline, runner.threads
            await asyncio.sleep(0.01)
        runner.shutdown()

    run(main())


@pytest.mark.parametrize("wanted_again", [False, True])
def test_a_call_cancelled_while_queued_is_skipped_unless_wanted_again(wanted_again: bool) -> None:
    async def main() -> None:
        outcomes = Outcomes()
        runner = TaskRunner(1, outcomes, still_cancelled=lambda key: not wanted_again)
        GATE.clear()
        call(runner, "busy", wait_then, 1)
        call(runner, "queued", add, 2, 3)  # waits behind "busy"
        runner.cancel("queued")
        GATE.set()
        await outcomes.wait("busy", "queued")
        ok, value = outcomes.got["queued"]
        if wanted_again:
            assert (ok, value) == (True, 5)
        else:
            assert not ok and value[1].startswith("CancelledError: task 'queued' was cancelled")
        runner.shutdown()
        runner.threads[0].join(10)

    run(main())
