"""The dashboard web app: aiohttp on the scheduler's own event loop.

Pages are static HTML + JS shipped in ``taskmill/dashboard/static``; they
poll small JSON endpoints (``/api/...``) about once a second, so the
scheduler does dashboard work only while a page is open.  Handlers only read
the scheduler (through :mod:`taskmill.dashboard.views`), never change it.

Routes: ``/status`` (task stream, progress, memory), ``/workers``,
``/task/<key>`` (a key's story), ``/metrics`` (Prometheus), ``/api/*`` (JSON),
``/static/*``.
"""

from __future__ import annotations

import json
import logging
import time
from importlib import resources
from typing import Any

from aiohttp import web

from taskmill.dashboard import views
from taskmill.dashboard.metrics import CONTENT_TYPE, metrics_text

logger = logging.getLogger("taskmill.dashboard")

#: How long the status page's per-group counts may be reused (seconds).
COUNTS_TTL = 1.9
_PAGES = {"status": "status.html", "workers": "workers.html", "task": "task.html"}


def _static_dir() -> Any:
    return resources.files("taskmill.dashboard") / "static"


def _json(data: Any) -> web.Response:
    return web.Response(text=json.dumps(data, default=str), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def make_app(scheduler: Any) -> web.Application:
    """The aiohttp application serving ``scheduler``'s dashboard."""
    static = _static_dir()
    page_cache: dict[str, str] = {}
    counts_cache: list[Any] = [float("-inf"), None]

    def page(name: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            text = page_cache.get(name)
            if text is None:
                text = page_cache[name] = (static / _PAGES[name]).read_text("utf-8")
            return web.Response(text=text, content_type="text/html")
        return handler

    async def index(request: web.Request) -> web.Response:
        raise web.HTTPFound("/status")

    async def api_status(request: web.Request) -> web.Response:
        q = request.query
        now = time.monotonic()
        if now - counts_cache[0] > COUNTS_TTL:  # the one scan over all tasks: at most every 2 s
            counts_cache[:] = [now, views.state_counts(scheduler.state)]
        data = views.status(scheduler.state, scheduler.monitor, scheduler.worker_extra,
                            after=int(q.get("after", 0) or 0),
                            after_transfer=int(q.get("after_transfer", 0) or 0),
                            counts=counts_cache[1])
        data["now"] = time.time()
        data["address"] = scheduler.address
        return _json(data)

    async def api_workers(request: web.Request) -> web.Response:
        return _json({"now": time.time(), "address": scheduler.address,
                      "workers": views.workers(scheduler.state, scheduler.worker_extra,
                                               scheduler.monitor),
                      "departed": scheduler.monitor.departed,
                      "summary": views.summary(scheduler.state, scheduler.monitor)})

    async def api_task(request: web.Request) -> web.Response:
        key = request.query.get("key", "")
        return _json(views.task_info(scheduler.state, scheduler.monitor, key))

    async def api_tasks(request: web.Request) -> web.Response:
        """Keys matching a search (for the task page's lookup box)."""
        q = request.query.get("q", "")
        state = request.query.get("state", "")
        out = []
        for key, ts in scheduler.state.tasks.items():
            if q in key and (not state or ts.state == state):
                out.append({"key": key, "state": ts.state})
                if len(out) >= 50:
                    break
        return _json(out)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=metrics_text(scheduler), headers={"Content-Type": CONTENT_TYPE})

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/status", page("status"))
    app.router.add_get("/workers", page("workers"))
    app.router.add_get("/task", page("task"))
    app.router.add_get("/task/{key:.*}", page("task"))
    app.router.add_get("/api/status", api_status)
    app.router.add_get("/api/workers", api_workers)
    app.router.add_get("/api/task", api_task)
    app.router.add_get("/api/tasks", api_tasks)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    app.router.add_static("/static/", str(static))
    return app


class DashboardServer:
    """Runs the app on ``host:port`` (0: any free port)."""

    def __init__(self, scheduler: Any, host: str, port: int) -> None:
        self.scheduler = scheduler
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        runner = web.AppRunner(make_app(self.scheduler), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/status"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
