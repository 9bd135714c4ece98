"""A private event loop on a daemon thread, for the blocking Executor."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any

from taskmill.comm.eventloop import new_event_loop


class LoopRunner:
    """Runs an event loop forever on its own thread until ``stop()``."""

    def __init__(self, name: str = "taskmill-loop") -> None:
        self.loop = new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(ready.set)
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name=name, daemon=True)
        self.thread.start()
        ready.wait()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
        """Run ``coro`` on the loop and wait for its result."""
        return run_on(self.loop, coro, timeout)

    def stop(self) -> None:
        """Stop the loop, cancel what is left on it, and join the thread."""
        if not self.thread.is_alive():
            return

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.get_running_loop().shutdown_default_executor()

        try:
            self.run(shutdown(), timeout=5)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


def run_on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any],
           timeout: float | None = None) -> Any:
    """Run ``coro`` on ``loop`` (another thread's) and wait for its result; a
    timeout cancels it, and its cancellation raises the standard library's
    ``concurrent.futures.CancelledError``."""
    fut = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return fut.result(timeout)
    except concurrent.futures.TimeoutError:
        fut.cancel()
        raise
    except asyncio.CancelledError as exc:  # asyncio renames the futures' CancelledError
        raise concurrent.futures.CancelledError(*exc.args) from None
