"""Where the wall time of one cold transfer goes: per-process CPU, faults and phases.

Theory of operation
-------------------
``bench/cold_transfers.py`` times one call (a worker-to-worker fetch, a
``scatter`` or a ``gather`` of 200 MB).  Its wall time on a two-core machine is
the sum of what the processes involved (client, scheduler, both workers) do
and wait for, so this module records, around that one call, in every one of
those processes:

* **CPU and waiting for a CPU**: the process's CPU time (``/proc/PID/stat``,
  10 ms ticks, threads that ended included), and from
  ``/proc/PID/task/*/schedstat`` (ns) the time run and the time runnable but
  waiting for a core, summed over the threads alive at both ends of the call;
  plus the minor and major page faults of ``/proc/PID/stat``.  :func:`process_stats` reads them from the outside (the
  client reads them for all four processes), so the reading itself is not
  charged to them.
* **Phases** (taskmill only), from timestamps taken inside the processes by
  wrappers that :func:`arm` installs around the code of the transfer path (no
  code of taskmill changes; the wrappers only note ``time.time()``):
  ``connect`` (a new connection's set-up), ``serve`` (a worker's ``get-data``
  handler, which looks the data up), ``send`` (encoding a large message and
  handing it to the transport), ``large_frame`` (the receiver allocates the
  buffer of a frame of 8 MiB or more: the first bytes of the payload have
  arrived), ``frame_done`` (its last byte has), ``task`` (the task consuming
  the data starts).  :func:`collect` returns them; the client puts them on one
  time line (``time.time()`` is one clock for all processes of the machine).
* **Background work**: the names of the threads alive at both ends of the
  call (is a worker's warm-up thread importing modules meanwhile?) and which
  modules a worker imported during the call.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable

#: frames at least this large are "the payload" (taskmill's PREFAULT_FRAME)
_PAYLOAD = 8 * 2**20

_events: list[tuple[str, float, float]] = []  # (phase, start, end) in this process
_state: dict[str, Any] = {}


def process_stats(pid: int) -> dict[str, Any]:
    """Process ``pid``'s CPU so far (ms, ``/proc/PID/stat``: every thread's,
    ended ones included, in 10 ms ticks), page faults, and each live thread's
    run and wait times (ns, ``schedstat``)."""
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                threads[tid] = [int(x) for x in f.read().split()[:2]]
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            continue
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read().rsplit(")", 1)[1].split()
    tick = 1e3 / os.sysconf("SC_CLK_TCK")
    return {"cpu_ms": (int(stat[11]) + int(stat[12])) * tick, "minflt": float(stat[7]),
            "majflt": float(stat[9]), "threads": threads}


def stats_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """``after - before``; run and wait (ms) summed over the threads alive at both ends."""
    both = before["threads"].keys() & after["threads"].keys()
    run = sum(after["threads"][t][0] - before["threads"][t][0] for t in both)
    wait = sum(after["threads"][t][1] - before["threads"][t][1] for t in both)
    return {"cpu_ms": after["cpu_ms"] - before["cpu_ms"], "run_ms": round(run / 1e6, 2),
            "wait_ms": round(wait / 1e6, 2), "minflt": after["minflt"] - before["minflt"],
            "majflt": after["majflt"] - before["majflt"]}


def _timed(phase: str, fn: Callable[..., Any], keep: Callable[..., bool]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.time()
        result = fn(*args, **kwargs)
        if keep(*args, result=result):
            _events.append((phase, start, time.time()))
        return result
    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


def _timed_async(phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.time()
        result = await fn(*args, **kwargs)
        _events.append((phase, start, time.time()))
        return result
    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


def _install_taskmill() -> None:
    from taskmill.comm import tcp
    from taskmill.protocol.framing import FrameParser

    import bench.tasks

    def large_start(self: Any, length: int, result: Any = None) -> bool:
        return length >= _PAYLOAD

    def frame_done(self: Any, frame: Any, result: Any = None) -> bool:
        return isinstance(frame, memoryview) and frame.nbytes >= _PAYLOAD

    def large_send(self: Any, msg: Any, result: Any = None) -> bool:
        return isinstance(result, int) and result >= _PAYLOAD

    def always(*args: Any, result: Any = None) -> bool:
        return True

    FrameParser._start_large = _timed("large_frame", FrameParser._start_large, large_start)
    FrameParser._finish_frame = _timed("frame_done", FrameParser._finish_frame, frame_done)
    tcp.TCPComm._send = _timed("send", tcp.TCPComm._send, large_send)
    tcp.backend_connect = _timed_async("connect", tcp.backend_connect)
    bench.tasks.nbytes_of = _timed("task", bench.tasks.nbytes_of, always)
    try:
        from taskmill.server.worker import Worker
    except ImportError:
        return
    Worker._get_data = _timed("serve", Worker._get_data, always)


def arm(system: str) -> None:
    """Start recording (idempotent): install the phase wrappers (taskmill),
    forget earlier events, note the threads and modules present now."""
    if system == "taskmill" and not _state.get("installed"):
        _install_taskmill()
        _state["installed"] = True
    _events.clear()
    _state["threads"] = sorted(t.name for t in threading.enumerate())
    _state["modules"] = set(sys.modules)


def collect() -> dict[str, Any]:
    """What this process recorded since :func:`arm`."""
    return {"events": list(_events),
            "threads_before": _state.get("threads", []),
            "threads_after": sorted(t.name for t in threading.enumerate()),
            "imported": sorted(m for m in set(sys.modules) - _state.get("modules", set())
                               if "." not in m)}
