"""Client-side diagnostics: the task stream, the performance report and the
notebook summaries of ``Executor`` and ``Future``."""

from __future__ import annotations

import os
import time
from html import escape
from typing import Any

from taskmill.protocol.vocabulary import PerformanceData


class PerformanceReport:
    """``with e.performance_report("report.html"):`` (or ``async with`` in
    asynchronous mode) writes one self-contained HTML file about what ran
    inside the block: task stream, per-group timings, worker memory."""

    def __init__(self, executor: Any, filename: str = "taskmill-report.html",
                 title: str = "taskmill performance report") -> None:
        self.executor = executor
        self.filename = os.fspath(filename)
        self.title = title
        self.start = 0.0
        self.data: dict[str, Any] | None = None

    def _write(self, data: dict[str, Any]) -> None:
        from taskmill.dashboard.report import render

        self.data = data
        with open(self.filename, "w", encoding="utf-8") as f:
            f.write(render(data, self.title))

    def __enter__(self) -> PerformanceReport:
        self.start = time.time()
        return self

    def __exit__(self, *exc: object) -> None:
        data = self.executor._call(self.executor.session.scheduler_call(
            PerformanceData(self.start, time.time())))
        self._write(data)

    async def __aenter__(self) -> PerformanceReport:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        data = await self.executor.session.scheduler_call(PerformanceData(self.start, time.time()))
        self._write(data)


def executor_html(executor: Any) -> str:
    """A compact HTML summary of an Executor for Jupyter."""
    status = executor.status
    rows = [("status", escape(status))]
    if status == "running" and not executor.asynchronous:
        try:
            info = executor.scheduler_info()
        except Exception:
            info = None
        if info is not None:
            workers = info.get("workers", {})
            threads = sum(w.get("nthreads", 0) for w in workers.values())
            memory = sum(w.get("memory_limit", 0) for w in workers.values())
            rows += [("scheduler", escape(str(info.get("address", "")))),
                     ("workers", str(len(workers))), ("threads", str(threads)),
                     ("memory", f"{memory / 2**30:.2f} GiB")]
            # an embedded cluster's owner gets a login link; others the plain URL
            link = executor.dashboard_link if executor.cluster is not None else info.get("dashboard")
            rows.append(("dashboard", f'<a href="{escape(link)}" target="_blank">{escape(link)}</a>'
                         if link else "off"))
            rows.append(("cluster", "embedded LocalCluster" if executor.cluster is not None else "remote"))
    elif status == "running":
        rows.append(("scheduler", escape(executor.scheduler_address)))
    body = "".join(f'<tr><th style="text-align:left">{k}</th><td style="text-align:left">{v}</td></tr>'
                   for k, v in rows)
    return ('<div class="taskmill-executor"><strong>taskmill Executor</strong>'
            f"<table>{body}</table></div>")


_STATUS_COLORS = {"pending": "#888", "finished": "#2ca02c", "error": "#d62728",
                  "cancelled": "#ff7f0e", "lost": "#9467bd"}


def future_html(future: Any) -> str:
    """A one-line HTML summary of a Future for Jupyter."""
    status = future.status
    color = _STATUS_COLORS.get(status, "#888")
    extra = ""
    ks = future._keystate
    if status == "finished" and getattr(ks, "type_name", ""):
        extra = f", type: <code>{escape(ks.type_name)}</code>"
    elif status == "error":
        try:
            exc = future.exception(timeout=0)
            extra = f", <code>{escape(type(exc).__name__)}: {escape(str(exc)[:200])}</code>"
        except Exception:
            pass
    return (f'<span class="taskmill-future"><strong>Future</strong> '
            f'<span style="color:{color};font-weight:bold">{escape(status)}</span>{extra}, '
            f"key: <code>{escape(future.key)}</code></span>")
