"""The dashboard web app: aiohttp on the scheduler's own event loop.

Pages are static HTML + JS shipped in ``taskmill/dashboard/static``.  The
status and workers pages receive their updates by push: server-sent events
(``/api/status/events``, ``/api/workers/events``; the browser's
``EventSource`` reconnects by itself and resumes the task stream from the
last event id).  Each open page gets at most one update per
:data:`~taskmill.dashboard.feed.TICK` and only when something changed; the
messages are built once and shared (:mod:`taskmill.dashboard.feed`), so the
scheduler does dashboard work only while a page is open, and little of it.
The task page polls ``/api/task`` every two seconds.  Handlers only read the
scheduler (through :mod:`taskmill.dashboard.views`), never change it.

Routes: ``/status`` (task stream, progress, memory), ``/workers``,
``/task/<key>`` (a key's story), ``/metrics`` (Prometheus), ``/api/*`` (JSON:
the same messages by request, for scripts), ``/static/*``.

Guarded like the cluster's connections (the scheduler's ``security``): with
a token, every route but ``/health`` and ``/login`` wants the token as an
HTTP Basic password or a session opened by a one-time login link
(:mod:`taskmill.dashboard.login`); with TLS certificates the pages are
served over HTTPS with this node's certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from taskmill.comm.tls import web_server_context
from taskmill.dashboard import views
from taskmill.dashboard.feed import TICK, DashboardFeed
from taskmill.dashboard.login import LOGIN_PATH, LoginGuard
from taskmill.dashboard.metrics import CONTENT_TYPE, metrics_text

logger = logging.getLogger("taskmill.dashboard")

#: An open event stream with nothing to say sends a comment this often (seconds).
KEEPALIVE = 15.0
_PAGES = {"status": "status.html", "workers": "workers.html", "task": "task.html"}
_JSON = {"Content-Type": "application/json", "Cache-Control": "no-store"}
_EVENTS = {"Content-Type": "text/event-stream", "Cache-Control": "no-store"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _static_dir() -> Any:
    return resources.files("taskmill.dashboard") / "static"


def _json(data: Any) -> web.Response:
    return web.Response(text=json.dumps(data, default=str), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def event_stream(feed: DashboardFeed, closing: asyncio.Event,
                 build: Callable[[str], tuple[bytes, str]]) -> Handler:
    """A server-sent-events handler: every ``TICK`` (on the clock grid all
    subscribers share) it sends ``build(cursor)`` if the scheduler changed
    since the last message; the cursor travels as the event id, so a
    reconnecting ``EventSource`` resumes where it was."""
    async def handler(request: web.Request) -> web.StreamResponse:
        cursor = request.headers.get("Last-Event-ID") or request.query.get("cursor", "")
        response = web.StreamResponse(headers=_EVENTS)
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        sent: Any = None
        quiet_since = loop.time()
        with contextlib.suppress(ConnectionResetError):
            while not closing.is_set():
                version = feed.version()
                if version != sent:
                    body, cursor = build(cursor)
                    await response.write(b"id: %s\ndata: %s\n\n" % (cursor.encode(), body))
                    sent, quiet_since = version, loop.time()
                elif loop.time() - quiet_since >= KEEPALIVE:
                    await response.write(b": keep-alive\n\n")
                    quiet_since = loop.time()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(closing.wait(), TICK - loop.time() % TICK)
        return response
    return handler


def make_app(scheduler: Any, guard: LoginGuard | None = None) -> web.Application:
    """The aiohttp application serving ``scheduler``'s dashboard (behind
    ``guard``, when given)."""
    static = _static_dir()
    page_cache: dict[str, str] = {}
    feed = DashboardFeed(scheduler)
    closing = asyncio.Event()

    def page(name: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            text = page_cache.get(name)
            if text is None:
                text = page_cache[name] = (static / _PAGES[name]).read_text("utf-8")
            return web.Response(text=text, content_type="text/html")
        return handler

    async def index(request: web.Request) -> web.Response:
        raise web.HTTPFound("/status")

    async def api_status(request: web.Request) -> web.Response:
        """One status update by request: ``?after=N&after_transfer=M`` as in
        the ``next``/``next_transfer`` of the previous one."""
        q = request.query
        body, _ = feed.status_message(f"{q.get('after', '')},{q.get('after_transfer', '')}")
        return web.Response(body=body, headers=_JSON)

    async def api_workers(request: web.Request) -> web.Response:
        return web.Response(body=feed.workers_message(), headers=_JSON)

    async def api_task(request: web.Request) -> web.Response:
        key = request.query.get("key", "")
        with feed.timed():
            return _json(views.task_info(scheduler.state, scheduler.monitor, key))

    async def api_tasks(request: web.Request) -> web.Response:
        """Keys matching a search (for the task page's lookup box)."""
        q = request.query.get("q", "")
        state = request.query.get("state", "")
        out = []
        with feed.timed():
            for key, ts in scheduler.state.tasks.items():
                if q in key and (not state or ts.state == state):
                    out.append({"key": key, "state": ts.state})
                    if len(out) >= 50:
                        break
        return _json(out)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=metrics_text(feed), headers={"Content-Type": CONTENT_TYPE})

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def close_streams(app: web.Application) -> None:
        closing.set()

    app = web.Application(middlewares=[guard.middleware] if guard is not None else [])
    app.on_shutdown.append(close_streams)
    app.router.add_get("/", index)
    app.router.add_get("/status", page("status"))
    app.router.add_get("/workers", page("workers"))
    app.router.add_get("/task", page("task"))
    app.router.add_get("/task/{key:.*}", page("task"))
    app.router.add_get("/api/status", api_status)
    app.router.add_get("/api/status/events", event_stream(feed, closing, feed.status_message))
    app.router.add_get("/api/workers", api_workers)
    app.router.add_get("/api/workers/events",
                       event_stream(feed, closing, lambda cursor: (feed.workers_message(), "")))
    app.router.add_get("/api/task", api_task)
    app.router.add_get("/api/tasks", api_tasks)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    if guard is not None:
        app.router.add_get(LOGIN_PATH, guard.login)
    app.router.add_static("/static/", str(static))
    return app


class DashboardServer:
    """Runs the app on ``host:port`` (0: any free port), guarded by the
    scheduler's ``security``."""

    def __init__(self, scheduler: Any, host: str, port: int) -> None:
        self.scheduler = scheduler
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._guard: LoginGuard | None = None

    async def start(self) -> str:
        security = self.scheduler.security
        context = web_server_context(security)
        if security.token is not None:
            self._guard = LoginGuard(security.token.encode(), secure=context is not None)
        runner = web.AppRunner(make_app(self.scheduler, self._guard), access_log=None,
                               handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True, ssl_context=context)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.url = f"{'https' if context is not None else 'http'}://{host}:{port}/status"
        return self.url

    def login_link(self) -> str:
        """Where the owner opens the dashboard: with a token, a fresh
        one-time login link; without, the plain URL."""
        if self._guard is None or not self.url:
            return self.url
        return self._guard.login_link(self.url.rsplit("/", 1)[0])

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
