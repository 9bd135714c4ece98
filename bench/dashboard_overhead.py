"""What the dashboard costs the scheduler: scheduler-process CPU seconds for
20,000 tiny tasks, with the dashboard off (``--no-dashboard``) and on with the
status page open plus a Prometheus scrape of ``/metrics`` every second.  Both
run in one invocation, alternating (ABBA), on fresh schedulers (separate
processes, so the figure is the scheduler's own CPU time, not the client's).

The open page is, by default, a subscriber to the status page's event stream
(``/api/status/events``) that reads every update exactly as the page's
``EventSource`` does; ``--browser`` opens the real page in headless Chromium
instead (Playwright and Debian's ``chromium``).  Besides the difference of
medians (noisy on a shared machine), each dashboard run reports what the
scheduler itself accounted to the dashboard
(``taskmill_dashboard_cpu_seconds_total``: thread CPU time of building
updates and metrics, less garbage collections that happened to start during
them; it misses aiohttp's own request handling and socket writes, which the
difference includes).

    .venv/bin/python bench/dashboard_overhead.py [--tasks 20000] [--rounds 5] [--browser] [--idle]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import timeit
import urllib.request
from dataclasses import dataclass, field

import psutil

BIN = os.path.dirname(sys.executable)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def inc(x: int) -> int:
    return x + 1


@dataclass
class Watchers:
    """Who looks at the dashboard during a run, and what they saw."""

    updates: int = 0
    update_bytes: int = 0
    scrapes: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, base: str, browser: bool) -> None:
        page = self._browser if browser else self._subscribe
        for target in (page, self._scrape):
            t = threading.Thread(target=target, args=(base,), daemon=True)
            t.start()
            self.threads.append(t)

    def _subscribe(self, base: str) -> None:
        """Read the status page's event stream as the page does (until the scheduler ends)."""
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(f"{base}/api/status/events", timeout=60) as r:
                    for line in r:
                        if line.startswith(b"data: "):
                            self.updates += 1
                            self.update_bytes += len(line)
                return
            except OSError:  # the dashboard is still starting
                self.stop.wait(0.1)

    def _browser(self, base: str) -> None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                   args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = b.new_page(viewport={"width": 1366, "height": 800})
            page.on("console", lambda msg: None)
            page.goto(f"{base}/status")
            last = None
            while not self.stop.wait(0.25):
                stamp = page.evaluate("document.body.dataset.updated")
                if stamp != last:
                    self.updates, last = self.updates + 1, stamp
            b.close()

    def _scrape(self, base: str) -> None:
        while not self.stop.wait(1.0):
            try:
                urllib.request.urlopen(f"{base}/metrics", timeout=10).read()
                self.scrapes += 1
            except OSError:
                pass


def dashboard_cpu(base: str) -> float:
    """The scheduler's own account of its dashboard CPU seconds (waits for the dashboard)."""
    deadline = time.time() + 30
    while True:
        try:
            text = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    m = re.search(r"^taskmill_dashboard_cpu_seconds_total (\S+)$", text, re.M)
    return float(m.group(1)) if m else float("nan")


@dataclass
class Run:
    cpu: float
    wall: float
    accounted: float = 0.0  # dashboard CPU the scheduler accounted
    updates: int = 0
    update_bytes: int = 0
    scrapes: int = 0


def one_run(tasks: int, dashboard: bool, watch: bool, browser: bool) -> Run:
    from taskmill import Executor

    port, dport = free_port(), free_port()
    base = f"http://127.0.0.1:{dport}"
    args = [os.path.join(BIN, "taskmill-scheduler"), "--port", str(port), "--log-level", "WARNING"]
    args += ["--dashboard-port", str(dport)] if dashboard else ["--no-dashboard"]
    sched = subprocess.Popen(args)
    workers = subprocess.Popen([os.path.join(BIN, "taskmill-worker"), f"127.0.0.1:{port}", "--nworkers", "2",
                                "--nthreads", "1", "--no-nanny", "--log-level", "WARNING"])
    watchers = Watchers()
    try:
        proc = psutil.Process(sched.pid)
        with Executor(f"127.0.0.1:{port}", timeout=30) as e:
            deadline = time.time() + 30
            while len(e.nthreads()) < 2 and time.time() < deadline:
                time.sleep(0.05)
            e.gather(e.map(inc, range(200), key=[f"warm-{i}" for i in range(200)]))
            if dashboard and watch:
                watchers.start(base, browser)
                deadline = time.time() + 30
                while not watchers.updates and time.time() < deadline:  # the page is open
                    time.sleep(0.05)
            accounted0 = dashboard_cpu(base) if dashboard else 0.0
            c0 = proc.cpu_times()
            t0 = time.perf_counter()
            futures = e.map(inc, range(tasks))
            e.gather(futures)
            wall = time.perf_counter() - t0
            c1 = proc.cpu_times()
            accounted = dashboard_cpu(base) - accounted0 if dashboard else 0.0
            watchers.stop.set()
            del futures
        return Run((c1.user + c1.system) - (c0.user + c0.system), wall, accounted,
                   watchers.updates, watchers.update_bytes, watchers.scrapes)
    finally:
        watchers.stop.set()
        for p in (workers, sched):
            p.terminate()
        for p in (workers, sched):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for t in watchers.threads:
            t.join(30)


def hook_costs(tasks: int) -> None:
    """The always-on recorder hook alone, and the lazy fold of its records."""
    from taskmill.dashboard.monitor import SchedulerMonitor

    mon = SchedulerMonitor()
    mon._fold_every = 1 << 62  # time the hook alone; the fold separately below
    msgs = [{"key": f"inc-{i:032x}", "start": 1.0, "stop": 1.0001, "transfer": 0.0} for i in range(4096)]
    it = iter(msgs * 50)
    n = 4096 * 50
    hook = timeit.timeit(lambda: mon.task_done("tcp://127.0.0.1:1", next(it), True), number=n) / n
    fold = timeit.timeit(mon.fold, number=1) / n
    print(f"recorder hook (task_done): {hook * 1e6:.2f} us per task, fold {fold * 1e6:.2f} us per task "
          f"({(hook + fold) * tasks * 1e3:.1f} ms for {tasks} tasks, with or without the dashboard)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--idle", action="store_true", help="dashboard on but no page open, no scrapes")
    ap.add_argument("--browser", action="store_true", help="the page open in headless Chromium")
    a = ap.parse_args()
    runs: dict[bool, list[Run]] = {False: [], True: []}
    for r in range(a.rounds):
        for dashboard in ((False, True) if r % 2 == 0 else (True, False)):
            run = one_run(a.tasks, dashboard, watch=not a.idle, browser=a.browser)
            runs[dashboard].append(run)
            extra = (f", accounted to the dashboard {run.accounted * 1e3:.0f} ms, page updates {run.updates}"
                     f" ({run.update_bytes / 1e6:.1f} MB), scrapes {run.scrapes}") if dashboard else ""
            print(f"round {r} dashboard={'on ' if dashboard else 'off'}: scheduler CPU {run.cpu:.2f}s, "
                  f"wall {run.wall:.2f}s{extra}", flush=True)
    off = statistics.median(r.cpu for r in runs[False])
    on = statistics.median(r.cpu for r in runs[True])
    paired = statistics.median(b.cpu / a.cpu for a, b in zip(runs[False], runs[True]))
    accounted = statistics.median(r.accounted / r.cpu for r in runs[True])
    looking = "on (nobody looking)" if a.idle else \
        f"on, {'Chromium' if a.browser else 'status stream'} open + /metrics scraped"
    print(f"\nmedian scheduler CPU for {a.tasks} tasks: without dashboard {off:.2f}s, with dashboard "
          f"{looking} {on:.2f}s: overhead {100 * (on - off) / off:+.1f}% (on/off {on / off:.3f}; "
          f"median of the per-round on/off ratios {paired:.3f}); accounted by the dashboard itself: "
          f"median {100 * accounted:.1f}% of scheduler CPU")
    hook_costs(a.tasks)


if __name__ == "__main__":
    main()
