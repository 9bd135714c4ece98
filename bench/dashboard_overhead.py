"""What the dashboard costs the scheduler: scheduler-process CPU seconds for
20,000 tiny tasks, with the dashboard off (``--no-dashboard``) and on with a
status page open (polled once a second like the browser does) plus a
Prometheus scrape of ``/metrics`` every second.  Both run in one invocation,
alternating, on fresh schedulers (separate processes, so the figure is the
scheduler's own CPU time, not the client's).

    .venv/bin/python bench/dashboard_overhead.py [--tasks 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import timeit
import urllib.request

import psutil

BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def inc(x: int) -> int:
    return x + 1


def poll_dashboard(base: str, stop: threading.Event) -> int:
    after = after_t = 0
    n = 0
    while not stop.wait(1.0):
        try:
            d = json.load(urllib.request.urlopen(f"{base}/api/status?after={after}&after_transfer={after_t}"))
            after, after_t = d["stream"]["next"], d["stream"]["next_transfer"]
            urllib.request.urlopen(f"{base}/metrics").read()
            n += 1
        except OSError:
            pass
    return n


def one_run(tasks: int, dashboard: bool, watch: bool = True) -> tuple[float, float, int]:
    from taskmill import Executor

    port, dport = free_port(), free_port()
    args = [os.path.join(BIN, "taskmill-scheduler"), "--port", str(port), "--log-level", "WARNING"]
    args += ["--dashboard-port", str(dport)] if dashboard else ["--no-dashboard"]
    sched = subprocess.Popen(args)
    workers = subprocess.Popen([os.path.join(BIN, "taskmill-worker"), f"127.0.0.1:{port}", "--nworkers", "2",
                                "--nthreads", "1", "--no-nanny", "--log-level", "WARNING"])
    try:
        proc = psutil.Process(sched.pid)
        with Executor(f"127.0.0.1:{port}", timeout=30) as e:
            deadline = time.time() + 30
            while len(e.nthreads()) < 2 and time.time() < deadline:
                time.sleep(0.05)
            e.gather(e.map(inc, range(200), key=[f"warm-{i}" for i in range(200)]))
            stop = threading.Event()
            polls: list[int] = []
            poller = None
            if dashboard and watch:
                base = f"http://127.0.0.1:{dport}"
                poller = threading.Thread(target=lambda: polls.append(poll_dashboard(base, stop)))
                poller.start()
            c0 = proc.cpu_times()
            t0 = time.perf_counter()
            futures = e.map(inc, range(tasks))
            e.gather(futures)
            wall = time.perf_counter() - t0
            c1 = proc.cpu_times()
            stop.set()
            if poller is not None:
                poller.join()
            del futures
        return (c1.user + c1.system) - (c0.user + c0.system), wall, polls[0] if polls else 0
    finally:
        for p in (workers, sched):
            p.terminate()
        for p in (workers, sched):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", action="store_true", help="dashboard on but no page open, no scrapes")
    a = ap.parse_args()
    results: dict[bool, list[tuple[float, float, int]]] = {False: [], True: []}
    for r in range(a.rounds):
        for dashboard in ((False, True) if r % 2 == 0 else (True, False)):
            cpu, wall, polls = one_run(a.tasks, dashboard, watch=not a.idle)
            results[dashboard].append((cpu, wall, polls))
            print(f"round {r} dashboard={'on ' if dashboard else 'off'}: scheduler CPU {cpu:.2f}s, "
                  f"wall {wall:.2f}s, page polls {polls}", flush=True)
    off = statistics.median(c for c, _, _ in results[False])
    on = statistics.median(c for c, _, _ in results[True])
    print(f"\nmedian scheduler CPU for {a.tasks} tasks: without dashboard {off:.2f}s, "
          f"with dashboard {'on (nobody looking)' if a.idle else 'open + /metrics scraped'} {on:.2f}s: overhead {100 * (on - off) / off:+.1f}%")

    # the always-on recorder hook, alone
    from taskmill.dashboard.monitor import SchedulerMonitor

    mon = SchedulerMonitor()
    msg = {"key": "inc-0123456789abcdef", "start": 1.0, "stop": 1.0001, "transfer": 0.0}
    n = 200_000
    per = timeit.timeit(lambda: mon.task_done("tcp://127.0.0.1:1", msg, True), number=n) / n
    print(f"recorder hook (task_done): {per * 1e6:.2f} us per task "
          f"({per * a.tasks * 1e3:.1f} ms for {a.tasks} tasks)")


if __name__ == "__main__":
    main()
