"""The scheduler's diagnostics service: what the shell calls to start and
stop the dashboard and to answer the ``task-stream`` and
``performance-data`` requests.  Kept out of ``scheduler.py`` so the shell
only holds hook calls."""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
import time
from typing import Any

from taskmill.dashboard import views

logger = logging.getLogger("taskmill.dashboard")


async def start_dashboard(scheduler: Any, host: str, port: int) -> Any:
    """Serve the dashboard for ``scheduler`` on ``host:port``; returns the
    running server, or None (with a warning) when it cannot: the port is
    taken or aiohttp is not installed.  The scheduler runs on either way."""
    try:  # importing aiohttp takes a while: not on the event loop's thread
        app = await _import_aside("taskmill.dashboard.app")
        DashboardServer = app.DashboardServer  # noqa: N806
    except ImportError as exc:
        logger.warning("dashboard disabled: %s (pip install aiohttp prometheus_client)", exc)
        return None
    server = DashboardServer(scheduler, host, port)
    try:
        url = await server.start()
    except OSError as exc:
        logger.warning("dashboard disabled: cannot listen on %s:%d (%s)", host, port, exc)
        return None
    scheduler.spawn(scheduler.monitor.watch_loop_delay(), "loop-delay")
    logger.info("dashboard at %s", url)
    return server


async def _import_aside(name: str) -> Any:
    """Import module ``name`` in a daemon thread of its own: not in the loop's
    default executor, whose shutdown would wait for it (a cluster closed
    while its dashboard starts would wait for aiohttp's import)."""
    loop = asyncio.get_running_loop()
    imported: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if imported.done():
            return
        if error is not None:
            imported.set_exception(error)
        else:
            imported.set_result(value)

    def work() -> None:
        value, error = None, None
        try:
            value = importlib.import_module(name)
        except BaseException as exc:  # ImportError above all; handed to the waiting task
            error = exc
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:  # the loop closed meanwhile: nobody waits any more
            pass

    threading.Thread(target=work, name="taskmill-dashboard-import", daemon=True).start()
    return await imported


def task_stream(scheduler: Any, start: float = 0.0, stop: float | None = None) -> list[dict[str, Any]]:
    """Task-stream records (key, group, worker, thread, start, stop, transfer,
    status) of tasks that ended within ``[start, stop]``."""
    records = scheduler.monitor.records_between(start, stop if stop is not None else float("inf"))
    return views.assign_lanes(records, scheduler.state.nthreads())


def performance_data(scheduler: Any, start: float, stop: float | None = None) -> dict[str, Any]:
    """What a performance report shows about ``[start, stop]``: the task
    stream, per-group timings, transfers and worker memory samples."""
    stop = stop if stop is not None else time.time()
    mon = scheduler.monitor
    tasks = task_stream(scheduler, start, stop)
    return {
        "start": start, "stop": stop, "scheduler": scheduler.address,
        "tasks": tasks,
        "groups": views.group_timings(tasks),
        "transfers": [{"worker": w, "peer": p, "start": a, "stop": b, "nbytes": n, "nkeys": k}
                      for w, p, a, b, n, k in mon.transfers if start <= b <= stop],
        "memory": [{"time": t, "worker": w, "memory": m} for t, w, m in mon.memory_samples
                   if start - 2 <= t <= stop + 2],
        "workers": scheduler.state.nthreads(),
    }
