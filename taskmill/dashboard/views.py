"""Pure views: scheduler state + the monitor's records -> plain dicts.

Theory of operation
-------------------
Every function here reads (never mutates) a
:class:`~taskmill.core.scheduler.state.SchedulerState`, a
:class:`~taskmill.dashboard.monitor.SchedulerMonitor` and the shell's
per-worker extras, and returns JSON-ready dicts and lists.  They run only
when someone looks (a page polls, ``/metrics`` is scraped, a client asks for
the task stream), so they may scan all tasks; nothing on the scheduler's hot
path calls them.  No I/O, no clock: ``now`` comes in as an argument.

Thread lanes: workers report when each task started and stopped, not on
which of their threads; with ``nthreads`` threads at most ``nthreads`` tasks
overlap on one worker, so packing a worker's tasks greedily by start time
(interval partitioning) gives each an exact lane index (``thread``).  Tasks
that seceded (``secede()``) overlap beyond ``nthreads``; the extra ones share
the lane that frees first, as clock noise does.
"""

from __future__ import annotations

import base64
import heapq
import struct
from collections import Counter
from operator import attrgetter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from taskmill.core.scheduler.records import (
    ERRED,
    MEMORY,
    NO_WORKER,
    PROCESSING,
    QUEUED,
    RELEASED,
    WAITING,
    key_prefix,
)
from taskmill.dashboard.monitor import SchedulerMonitor, StreamRecord

#: The progress columns, in the order a task passes through them.
PROGRESS_STATES = ("waiting", "queued", "processing", "memory", "erred")
_PROGRESS_OF = {WAITING: "waiting", NO_WORKER: "waiting", QUEUED: "queued",
                PROCESSING: "processing", MEMORY: "memory", ERRED: "erred", RELEASED: "released"}


def assign_lanes(records: Iterable[StreamRecord], nthreads: Mapping[str, int] | None = None,
                 ) -> list[dict[str, Any]]:
    """Task-stream records as dicts, each with the ``thread`` lane (0-based,
    per worker) it ran on, sorted by start time; ``status`` is "OK" or "error"."""
    nthreads = nthreads or {}
    free: dict[str, list[tuple[float, int]]] = {}  # worker -> heap of (free from, lane)
    lanes_used: dict[str, int] = {}
    out: list[dict[str, Any]] = []
    for key, worker, start, stop, transfer, ok in sorted(records, key=lambda r: r[2]):
        heap = free.setdefault(worker, [])
        if heap and heap[0][0] <= start + 1e-6:
            lane = heapq.heappop(heap)[1]
        elif lanes_used.get(worker, 0) < max(1, nthreads.get(worker, 1)) or not heap:
            lane = lanes_used.get(worker, 0)
            lanes_used[worker] = lane + 1
        else:  # clock noise: more overlap than threads; share the lane that frees first
            lane = heapq.heappop(heap)[1]
        heapq.heappush(heap, (stop, lane))
        out.append({"key": key, "group": key_prefix(key), "worker": worker, "thread": lane,
                    "start": start, "stop": stop, "transfer": transfer,
                    "status": "OK" if ok else "error"})
    return out


def task_stream(monitor: SchedulerMonitor, nthreads: Mapping[str, int], after: int = 0,
                after_transfer: int = 0, limit: int = 5_000) -> dict[str, Any]:
    """The task-stream records the page has not seen yet, in columns.

    ``after``/``after_transfer`` are the ``next``/``next_transfer`` numbers of
    the previous reply (records are numbered as they are recorded), so a page
    receives each record once; at most the last ``limit`` of each.  Encoded
    for the scheduler's sake (thousands of records a second, built in C, no
    per-record Python work): ``keys`` a list; ``worker`` (uint32 indexes into
    ``workers``), ``start``/``stop``/``transfer`` (float64 seconds) and ``ok``
    (uint8, 0 for an erred task) little-endian arrays in base64.  Transfers,
    a few a second, are ``[worker index, peer, start, stop, nbytes, nkeys]``.
    The browser assigns lanes (the same greedy packing as :func:`assign_lanes`)."""
    recs = monitor.new_tasks(after, limit)
    trs = monitor.new_transfers(after_transfer, limit)
    keys, ws, starts, stops, transfers, oks = zip(*recs) if recs else ((),) * 6
    index = {w: i for i, w in enumerate(dict.fromkeys((*ws, *(t[0] for t in trs))))}
    return {"next": monitor.tasks_total, "next_transfer": monitor.transfer_count,
            "workers": list(index), "keys": keys,
            "worker": _pack("I", list(map(index.__getitem__, ws))),
            "start": _pack("d", starts), "stop": _pack("d", stops),
            "transfer": _pack("d", transfers), "ok": _pack("B", oks),
            "transfers": [[index[w], p, a, b, n, nk] for w, p, a, b, n, nk in trs],
            "nthreads": dict(nthreads)}


def _pack(code: str, values: Sequence[Any]) -> str:
    """``values`` as little-endian ``code`` (struct format) numbers in base64."""
    return base64.b64encode(struct.pack(f"<{len(values)}{code}", *values)).decode("ascii")


_PREFIX_STATE = attrgetter("prefix", "state")


def state_counts(state: Any) -> dict[tuple[str, str], int]:
    """``{(prefix, state): number of tasks}``: the one scan over all tasks the
    progress, summary and metrics views share (counted in C by ``Counter``)."""
    return Counter(map(_PREFIX_STATE, state.tasks.values()))


def progress(state: Any, monitor: SchedulerMonitor,
             counts: Mapping[tuple[str, str], int] | None = None) -> list[dict[str, Any]]:
    """Per task group (prefix): how many of its tasks are waiting, queued,
    processing, in memory or erred now, and how many finished or erred so
    far (``done``/``failed``: counts that stay after results are released)."""
    groups: dict[str, dict[str, Any]] = {}
    for (prefix, st), n in (counts if counts is not None else state_counts(state)).items():
        g = groups.get(prefix)
        if g is None:
            g = groups[prefix] = _empty_group(prefix)
        column = _PROGRESS_OF.get(st)
        if column is not None:
            g[column] += n
    for name, totals in monitor.groups.items():
        g = groups.get(name)
        if g is None:
            g = groups[name] = _empty_group(name)
        g["done"] = totals.finished
        g["failed"] = totals.erred
        g["seconds"] = totals.seconds
    for g in groups.values():
        # erred dependents never ran: count them as failed too
        g["failed"] = max(g["failed"], g["erred"])
        g["total"] = g["waiting"] + g["queued"] + g["processing"] + g["done"] + g["failed"]
    return sorted(groups.values(), key=lambda g: (-(g["total"] - g["done"] - g["failed"]), g["group"]))


def _empty_group(name: str) -> dict[str, Any]:
    return {"group": name, "waiting": 0, "queued": 0, "processing": 0, "memory": 0, "erred": 0,
            "released": 0, "done": 0, "failed": 0, "seconds": 0.0, "total": 0}


def workers(state: Any, extra: Mapping[str, Mapping[str, Any]], monitor: SchedulerMonitor,
            ) -> list[dict[str, Any]]:
    """One row per live worker: address, threads, CPU, memory (managed bytes
    of its results and its process's RSS), running and stored tasks, and its
    nanny's restarts and last exit reason."""
    rows = []
    for address, ws in sorted(state.workers.items()):
        x = extra.get(address, {})
        restarts, last_exit = monitor.nanny_exits.get(ws.nanny or "", (0, ""))
        rows.append({
            "address": address, "name": ws.name, "nthreads": ws.nthreads,
            "cpu": monitor.worker_cpu.get(address),
            "memory_process": x.get("memory", ws.memory) or ws.memory,
            "memory_managed": ws.nbytes, "memory_spilled": 0,
            "memory_limit": ws.memory_limit,
            "processing": len(ws.processing), "executing": x.get("executing", 0),
            "stored": len(ws.has_what), "nanny": ws.nanny, "pid": x.get("pid"),
            "restarts": restarts, "last_exit": last_exit,
        })
    return rows


def summary(state: Any, monitor: SchedulerMonitor,
            counts: Mapping[tuple[str, str], int] | None = None) -> dict[str, Any]:
    """Totals for the page header."""
    by_state: dict[str, int] = {}
    for (_, st), n in (counts if counts is not None else state_counts(state)).items():
        by_state[st] = by_state.get(st, 0) + n
    return {"workers": len(state.workers),
            "threads": sum(ws.nthreads for ws in state.workers.values()),
            "memory": sum(ws.memory for ws in state.workers.values()),
            "tasks": by_state, "finished_total": monitor.tasks_total - monitor.erred_total,
            "erred_total": monitor.erred_total, "loop_delay": monitor.loop_delay,
            "waiting_for_workers": monitor.waiting_for_workers}


def overview(state: Any, monitor: SchedulerMonitor, extra: Mapping[str, Mapping[str, Any]],
             counts: Mapping[tuple[str, str], int] | None = None) -> dict[str, Any]:
    """The status page's figures besides the task stream: the summary,
    progress per group and the workers' memory.  ``counts``: a recent
    :func:`state_counts` (the callers reuse one for a while: it is the only
    scan of all tasks)."""
    counts = counts if counts is not None else state_counts(state)
    return {"summary": summary(state, monitor, counts),
            "progress": progress(state, monitor, counts),
            "memory": [{"address": r["address"], "process": r["memory_process"],
                        "managed": r["memory_managed"], "limit": r["memory_limit"]}
                       for r in workers(state, extra, monitor)]}


def task_info(state: Any, monitor: SchedulerMonitor, key: str) -> dict[str, Any]:
    """One key's story (every state it passed through, where, when, why),
    its runs in the task stream, and its error."""
    entries = state.story(key)
    times = monitor.when([e[3] for e in entries])
    story = [{"from": e[1], "to": e[2], "stimulus": e[3], "note": e[4], "time": t}
             for e, t in zip(entries, times)]
    runs = [r for r in assign_lanes([r for r in monitor.stream if r[0] == key])]
    ts = state.tasks.get(key)
    info: dict[str, Any] = {"key": key, "known": ts is not None or bool(story),
                            "state": ts.state if ts is not None else "forgotten",
                            "group": key_prefix(key), "story": story, "runs": runs, "error": None}
    if ts is not None:
        info.update(
            who_has=[ws.address for ws in ts.who_has],
            processing_on=ts.processing_on.address if ts.processing_on is not None else None,
            dependencies=[d.key for d in ts.dependencies][:100],
            dependents=[d.key for d in ts.dependents][:100],
            nbytes=ts.nbytes, type_name=ts.type_name, retries=ts.retries,
            deaths=[list(d) for d in ts.deaths],
        )
        if ts.error is not None:
            err = ts.error
            info["error"] = {"text": err.exception_text, "worker": err.worker,
                             "type": err.error_type,
                             "traceback": err.traceback if isinstance(err.traceback, str) else ""}
    return info


def group_timings(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task group: count, errors, total/mean/max compute seconds and transfer seconds."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        g = out.setdefault(r["group"], {"group": r["group"], "count": 0, "errors": 0,
                                         "seconds": 0.0, "max": 0.0, "transfer": 0.0})
        d = r["stop"] - r["start"]
        g["count"] += 1
        g["errors"] += r["status"] != "OK"
        g["seconds"] += d
        g["max"] = max(g["max"], d)
        g["transfer"] += r["transfer"]
    for g in out.values():
        g["mean"] = g["seconds"] / g["count"]
    return sorted(out.values(), key=lambda g: -g["seconds"])
