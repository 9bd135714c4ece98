"""The scheduler's diagnostics service: what the shell calls to start and
stop the dashboard and to answer the ``task-stream`` and
``performance-data`` requests.  Kept out of ``scheduler.py`` so the shell
only holds hook calls."""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from typing import Any

from taskmill.dashboard import views

logger = logging.getLogger("taskmill.dashboard")


async def start_dashboard(scheduler: Any, host: str, port: int) -> Any:
    """Serve the dashboard for ``scheduler`` on ``host:port``; returns the
    running server, or None (with a warning) when it cannot: the port is
    taken or aiohttp is not installed.  The scheduler runs on either way."""
    try:  # importing aiohttp takes a while: not on the event loop's thread
        app = await asyncio.to_thread(importlib.import_module, "taskmill.dashboard.app")
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
