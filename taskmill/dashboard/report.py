"""The performance report: one self-contained HTML file (inline SVG and CSS,
no scripts, no network) with the task stream, per-group timings and worker
memory of what ran inside ``Executor.performance_report(...)``.

Pure: ``render(data)`` turns the scheduler's ``performance-data`` reply
(see :func:`taskmill.dashboard.service.performance_data`) into a string.
"""

from __future__ import annotations

import datetime
import hashlib
from html import escape
from typing import Any

from taskmill.dashboard.colors import group_color

LANE = 14
WIDTH = 1100
LEFT = 190


def _fmt_seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def _stream_svg(tasks: list[dict[str, Any]], t0: float, t1: float, max_bars: int = 20_000) -> str:
    lanes: dict[tuple[str, int], int] = {}
    for t in sorted(tasks, key=lambda t: (t["worker"], t["thread"])):
        lanes.setdefault((t["worker"], t["thread"]), len(lanes))
    span = max(t1 - t0, 1e-6)
    scale = (WIDTH - LEFT - 10) / span
    height = max(1, len(lanes)) * LANE + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             f'role="img" aria-label="task stream">']
    for (worker, thread), i in lanes.items():
        y = i * LANE
        parts.append(f'<text x="4" y="{y + 10}" font-size="10">{escape(worker)} #{thread}</text>')
    step = max(1, len(tasks) // max_bars)
    for t in tasks[::step]:
        y = lanes[(t["worker"], t["thread"])] * LANE
        x = LEFT + (t["start"] - t0) * scale
        w = max(0.5, (t["stop"] - t["start"]) * scale)
        err = t["status"] != "OK"
        fill = "#d62728" if err else group_color(t["group"])
        stroke = ' stroke="#000" stroke-width="1"' if err else ""
        parts.append(f'<rect x="{x:.1f}" y="{y + 1}" width="{w:.1f}" height="{LANE - 2}" fill="{fill}"{stroke}>'
                     f'<title>{escape(t["key"])} ({_fmt_seconds(t["stop"] - t["start"])}'
                     f'{", ERRED" if err else ""})</title></rect>')
        if t.get("transfer"):
            tw = max(0.5, t["transfer"] * scale)
            parts.append(f'<rect x="{x - tw:.1f}" y="{y + 1}" width="{tw:.1f}" height="3" fill="#e377c2">'
                         f'<title>transfer {_fmt_seconds(t["transfer"])}</title></rect>')
    axis_y = len(lanes) * LANE + 14
    for k in range(6):
        x = LEFT + k * (WIDTH - LEFT - 10) / 5
        parts.append(f'<text x="{x:.0f}" y="{axis_y}" font-size="10">+{_fmt_seconds(k * span / 5)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _memory_svg(samples: list[dict[str, Any]], t0: float, t1: float) -> str:
    if not samples:
        return "<p>No memory samples (heartbeats) in this interval.</p>"
    by_worker: dict[str, list[tuple[float, int]]] = {}
    for s in samples:
        by_worker.setdefault(s["worker"], []).append((s["time"], s["memory"]))
    top = max(s["memory"] for s in samples) or 1
    h = 160
    span = max(t1 - t0, 1e-6)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{h + 30}" '
             f'role="img" aria-label="worker memory">']
    for i, (worker, pts) in enumerate(sorted(by_worker.items())):
        color = group_color(worker)
        coords = " ".join(f"{LEFT + (t - t0) / span * (WIDTH - LEFT - 10):.1f},{h - m / top * (h - 10):.1f}"
                          for t, m in sorted(pts))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
        parts.append(f'<text x="4" y="{14 + 14 * i}" font-size="10" fill="{color}">{escape(worker)}</text>')
    parts.append(f'<text x="4" y="{h + 20}" font-size="10">max {_fmt_bytes(top)}</text></svg>')
    return "".join(parts)


def render(data: dict[str, Any], title: str = "taskmill performance report") -> str:
    """The report as one HTML document."""
    tasks = data["tasks"]
    t0 = min([data["start"], *(t["start"] for t in tasks)])
    t1 = max([data["stop"], *(t["stop"] for t in tasks)])
    n_err = sum(t["status"] != "OK" for t in tasks)
    compute = sum(t["stop"] - t["start"] for t in tasks)
    threads = sum(data.get("workers", {}).values())
    when = datetime.datetime.fromtimestamp(data["start"]).isoformat(timespec="seconds")
    rows = "".join(
        f'<tr><td><span class="sw" style="background:{group_color(g["group"])}"></span>'
        f'{escape(g["group"])}</td><td>{g["count"]}</td><td>{g["errors"]}</td>'
        f'<td>{_fmt_seconds(g["seconds"])}</td><td>{_fmt_seconds(g["mean"])}</td>'
        f'<td>{_fmt_seconds(g["max"])}</td><td>{_fmt_seconds(g["transfer"])}</td></tr>'
        for g in data["groups"])
    transfers = data.get("transfers", [])
    moved = sum(t["nbytes"] for t in transfers)
    digest = hashlib.blake2b(repr(sorted(t["key"] for t in tasks)).encode(), digest_size=6).hexdigest()
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>
body{{font:14px system-ui,sans-serif;margin:1.5em;color:#222}}
table{{border-collapse:collapse}}td,th{{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}}
td:first-child,th:first-child{{text-align:left}}.sw{{display:inline-block;width:10px;height:10px;margin-right:6px}}
.figures span{{margin-right:2em}}
</style></head><body>
<h1>{escape(title)}</h1>
<p class="figures"><span>started {escape(when)}</span><span>duration {_fmt_seconds(data["stop"] - data["start"])}</span>
<span>{len(tasks)} tasks</span><span>{n_err} erred</span><span>compute {_fmt_seconds(compute)}</span>
<span>{threads} threads</span><span>{len(transfers)} transfers ({_fmt_bytes(moved)})</span>
<span>scheduler {escape(str(data.get("scheduler", "")))}</span><span>id {digest}</span></p>
<h2>Task stream</h2>
<p>One lane per worker thread; colour by task group; erred tasks red with a black outline; pink marks time spent fetching inputs.</p>
{_stream_svg(tasks, t0, t1)}
<h2>Task groups</h2>
<table><thead><tr><th>group</th><th>tasks</th><th>erred</th><th>compute</th><th>mean</th><th>max</th><th>transfer</th></tr></thead>
<tbody>{rows}</tbody></table>
<h2>Worker memory</h2>
{_memory_svg(data.get("memory", []), t0, t1)}
</body></html>
"""
