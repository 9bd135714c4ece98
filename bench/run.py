#!/usr/bin/env python
"""Side-by-side benchmarks: taskmill against dask.distributed (and, where a
pool fits, the standard library's ProcessPoolExecutor).

    .venv/bin/python bench/run.py                      # full run, 5 repetitions
    .venv/bin/python bench/run.py --quick              # smoke run: small sizes, 2 repetitions
    .venv/bin/python bench/run.py --only map --repeat 3
    .venv/bin/python bench/run.py --markdown bench/RESULTS.md

Both systems run the same workloads through their public APIs on a local
cluster of 2 worker processes with 1 thread each.  Repetitions alternate
between the systems (ABBA order) and the report quotes medians over the
repetitions and the taskmill/dask and taskmill/PPE ratios.  Each cluster lives in its own
subprocess (bench/runner.py) so every measurement has a timeout and a hung
system is killed and reported instead of stalling the run.  See README.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import cold_transfers, startup, tasks_in_tasks  # noqa: E402

TAG = "@@BENCH "
MB = 1_000_000


@dataclass
class Workload:
    name: str
    kind: str                 # "cluster" (runner), "import", "start" or "script" (fresh subprocess)
    metric: str
    unit: str
    higher_is_better: bool
    full: int = 0             # size: calls / tasks / bytes
    quick: int = 0
    target: str = ""
    pool_fits: bool = False   # ProcessPoolExecutor ("ppe") runs it too: plain calls, no futures as inputs

    def check(self, tm: float | None, dk: float | None, pp: float | None = None) -> bool | None:
        """Whether taskmill meets its target (None: cannot tell)."""
        if tm is None:
            return False
        ratio = tm / dk if dk else None
        pool = tm / pp if pp else None
        n = self.name
        if n == "roundtrip":
            return tm <= 1.0 and (ratio is None or ratio <= 0.2) and (pool is None or pool <= 1.2)
        if n == "map":
            return tm >= 3000 and (ratio is None or ratio >= 5) and (pool is None or pool >= 1.5)
        if n == "chain":
            return tm >= 5000 and (None if ratio is None else ratio >= 5)
        if n in ("fib", "fib_impure"):
            return None if ratio is None else ratio >= 5
        if n == "transfer":
            return tm >= 1000
        if n in cold_transfers.WORKLOADS:
            return tm >= 2000
        if n == "import":
            return tm <= 60
        if n == "startup":
            return tm <= 0.3
        return None


WORKLOADS = [
    Workload("import", "import", "`import` in a fresh interpreter", "ms", False,
             target="taskmill <= 60 ms"),
    Workload("startup", "start", "`Executor()`/`Client()` to first result, fresh interpreter", "s",
             False, target="taskmill <= 0.3 s"),
    Workload("roundtrip", "cluster", "`submit(inc, i).result()` latency, median per call", "ms",
             False, full=1000, quick=200, target="<= 1 ms, <= 0.2x dask, <= 1.2x PPE",
             pool_fits=True),
    Workload("map", "cluster", "`map(inc, range(N))` + `gather` throughput", "tasks/s", True,
             full=20_000, quick=2_000, target=">= 3,000/s, >= 5x dask, >= 1.5x PPE", pool_fits=True),
    Workload("chain", "cluster", "chain `f = submit(inc, f)` then `f.result()`", "tasks/s", True,
             full=5_000, quick=500, target=">= 5,000/s and >= 5x dask"),
    Workload("transfer", "cluster", "numpy array worker A -> task on worker B", "MB/s", True,
             full=200 * MB, quick=20 * MB, target=">= 1,000 MB/s"),
    Workload("fib", "script", "recursive fib(N), tasks submit their children via get_client, "
             "secede/rejoin; 1 worker x 1 thread, pure (N+1 tasks)", "tasks/s", True,
             full=20, quick=12, target=">= 5x dask"),
    Workload("fib_impure", "script", "the same with pure=False: every call its own task",
             "tasks/s", True, full=14, quick=10, target=">= 5x dask"),
    *(Workload(name, "script", metric, "MB/s", True, full=200 * MB, quick=20 * MB,
               target=">= 2,000 MB/s") for name, metric in cold_transfers.WORKLOADS.items()),
]
BY_NAME = {w.name: w for w in WORKLOADS}


@dataclass
class Cell:
    values: list = field(default_factory=list)
    extras: list = field(default_factory=list)
    errors: list = field(default_factory=list)

    @property
    def median(self):
        return statistics.median(self.values) if self.values else None


# Children keep compiled bytecode in a private cache outside the repository:
# the environment may set PYTHONDONTWRITEBYTECODE, and an uncached import
# measures the compiler, not the package.  The first (untimed) run fills it.
PYCACHE = os.path.join(tempfile.gettempdir(), "taskmill-bench-pycache")


def child_env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = PYCACHE
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def kill_group(proc: subprocess.Popen) -> None:
    """Kill a child we started (it leads its own session) and its descendants."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def tail(path: str, n: int = 25) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


class Timeout(Exception):
    pass


class Runner:
    """A bench/runner.py subprocess holding one system's cluster."""

    def __init__(self, system: str, logdir: str) -> None:
        self.system = system
        self.log_path = os.path.join(logdir, f"runner-{system}-{int(time.time() * 1000)}.log")
        self.proc: subprocess.Popen | None = None
        self.q: queue.Queue = queue.Queue()

    def start(self, timeout: float) -> dict:
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.runner", self.system], cwd=ROOT, env=child_env(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
            start_new_session=True)
        log.close()
        threading.Thread(target=self._read, daemon=True).start()
        msg = self._next(timeout)
        if not msg.get("ready"):
            raise RuntimeError(msg.get("error", "runner did not start"))
        return msg

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith(TAG):
                self.q.put(json.loads(line[len(TAG):]))
        self.q.put(None)          # EOF: the runner died

    def _next(self, timeout: float) -> dict:
        try:
            msg = self.q.get(timeout=timeout)
        except queue.Empty:
            raise Timeout(f"no answer within {timeout:.0f} s") from None
        if msg is None:
            self.proc.wait(5)
            raise RuntimeError(f"runner exited (code {self.proc.returncode})")
        return msg

    def run(self, workload: str, size: int, timeout: float) -> dict:
        self.proc.stdin.write(json.dumps({"cmd": "run", "workload": workload, "size": size}) + "\n")
        self.proc.stdin.flush()
        return self._next(timeout)

    def close(self, timeout: float = 60) -> dict | None:
        if self.proc is None or self.proc.poll() is not None:
            return None
        try:
            self.proc.stdin.write(json.dumps({"cmd": "close"}) + "\n")
            self.proc.stdin.flush()
            msg = self._next(timeout)
            self.proc.wait(timeout)
            return msg
        except (Timeout, RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            self.kill()
            return {"closed": False, "error": f"close failed: {exc!r}; killed"}

    def kill(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)


def run_script(code: str, timeout: float, logdir: str, label: str) -> dict:
    """Run ``code`` in a fresh interpreter; returns its @@BENCH message."""
    fd, path = tempfile.mkstemp(suffix=".py", prefix=f"{label}-", dir=logdir)
    with os.fdopen(fd, "w") as f:
        f.write(code)
    log_path = path[:-3] + ".log"
    t = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, path], cwd=ROOT, env=child_env(),
                                stdout=subprocess.PIPE, stderr=log, text=True,
                                start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            raise Timeout(f"no result within {timeout:.0f} s; log {log_path}:\n{tail(log_path)}")
    wall = time.perf_counter() - t
    for line in out.splitlines():
        if line.startswith(TAG):
            msg = json.loads(line[len(TAG):])
            msg["process_ms"] = wall * 1e3
            return msg
    raise RuntimeError(f"exit code {proc.returncode}, no result; log {log_path}:\n{tail(log_path)}")


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "FAILED"
    if unit == "tasks/s" or unit == "MB/s":
        return f"{v:,.0f}"
    if unit == "ms":
        return f"{v:.3g}" if v < 10 else f"{v:,.1f}"
    return f"{v:.3g}"


def compare(w: Workload, tm: float | None, dk: float | None) -> tuple[str, str]:
    if tm is None or dk is None or dk == 0 or tm == 0:
        return "n/a", "n/a"
    ratio = tm / dk
    speed = ratio if w.higher_is_better else 1 / ratio
    return f"{ratio:.3g}", (f"{speed:.3g}x faster" if speed >= 1 else f"{1 / speed:.3g}x slower")


class Bench:
    def __init__(self, args: argparse.Namespace, systems: list[str], logdir: str) -> None:
        self.args = args
        self.systems = systems
        self.logdir = logdir
        self.cells = {w.name: {s: Cell() for s in systems} for w in WORKLOADS}
        self.runners: dict[str, Runner] = {}
        self.notes: list[str] = []

    def size(self, w: Workload) -> int:
        return w.quick if self.args.quick else w.full

    def systems_for(self, w: Workload) -> list[str]:
        """The systems that run ``w``: the pool only the workloads it fits."""
        return [s for s in self.systems if s != "ppe" or (w.pool_fits and w.kind == "cluster")]

    def orders(self, w: Workload):
        systems = self.systems_for(w)
        for rep in range(self.args.repeat):
            yield rep, (systems if rep % 2 == 0 else systems[::-1])

    def log(self, msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def record(self, w: Workload, system: str, rep: int, result: dict) -> None:
        cell = self.cells[w.name][system]
        value = result.pop("value")
        cell.values.append(value)
        cell.extras.append(result)
        self.log(f"  {w.name:<9} rep {rep + 1}  {system:<8} {fmt(value, w.unit):>10} {w.unit}"
                 + (f"   {json.dumps(result)}" if result else ""))

    def fail(self, w: Workload, system: str, rep: int, err: str) -> None:
        self.cells[w.name][system].errors.append(f"rep {rep + 1}: {err}")
        self.log(f"  {w.name:<9} rep {rep + 1}  {system:<8} FAILED: {err.strip().splitlines()[-1]}")

    # -- fresh-interpreter workloads --------------------------------------------------------
    def fresh_script(self, w: Workload, s: str) -> str:
        if w.kind == "import":
            return startup.import_script(s)
        if w.kind == "start":
            return startup.start_script(s)
        if w.name in cold_transfers.WORKLOADS:
            return cold_transfers.script(s, w.name, self.size(w))
        return tasks_in_tasks.script(s, w.name, self.size(w))

    def run_fresh(self, w: Workload) -> None:
        failed: set[str] = set()
        for s in self.systems_for(w):   # untimed: fills the bytecode cache, warms the OS page cache
            if w.kind == "script":
                break                   # its script warms its own cluster; imports are not timed
            try:
                run_script(self.fresh_script(w, s), self.args.timeout, self.logdir, f"{w.name}-{s}-warmup")
            except (Timeout, RuntimeError) as exc:
                self.log(f"  {s}: warm-up run failed: {str(exc).splitlines()[0]}")
        for rep, order in self.orders(w):
            for s in order:
                if s in failed:
                    continue
                code = self.fresh_script(w, s)
                try:
                    self.record(w, s, rep, run_script(code, self.args.timeout, self.logdir, f"{w.name}-{s}"))
                except (Timeout, RuntimeError) as exc:
                    self.fail(w, s, rep, str(exc))
                    failed.add(s)

    # -- cluster workloads -------------------------------------------------------------------
    def runner(self, s: str) -> Runner | None:
        r = self.runners.get(s)
        if r is not None and r.proc.poll() is None:
            return r
        r = Runner(s, self.logdir)
        try:
            msg = r.start(self.args.timeout)
        except (Timeout, RuntimeError) as exc:
            r.kill()
            self.notes.append(f"{s}: cluster failed to start: {exc}\n{tail(r.log_path)}")
            self.log(f"  {s}: cluster failed to start: {exc}")
            return None
        self.log(f"  {s}: cluster up in {msg['start_seconds']:.2f} s (+ warm-up), workers {msg['workers']}")
        self.runners[s] = r
        return r

    def run_cluster(self, w: Workload) -> None:
        failed: set[str] = set()
        for rep, order in self.orders(w):
            for s in order:
                if s in failed:
                    continue
                r = self.runner(s)
                if r is None:
                    self.fail(w, s, rep, "cluster did not start (see notes)")
                    failed.add(s)
                    continue
                try:
                    res = r.run(w.name, self.size(w), self.args.timeout)
                except Timeout as exc:
                    self.fail(w, s, rep, f"hung: {exc}; runner killed. log tail:\n{tail(r.log_path)}")
                    r.kill()
                    failed.add(s)
                    continue
                except RuntimeError as exc:
                    self.fail(w, s, rep, f"{exc}. log tail:\n{tail(r.log_path)}")
                    failed.add(s)
                    continue
                if res.pop("ok"):
                    self.record(w, s, rep, res)
                else:
                    self.fail(w, s, rep, res["error"] + f"\nlog tail:\n{tail(r.log_path, 8)}")
                    failed.add(s)     # do not repeat a deterministic failure N times
                    # the cluster may be broken now: the next workload gets a fresh one
                    r.close(timeout=30)
                    self.runners.pop(s, None)

    def close_runners(self) -> None:
        for s, r in self.runners.items():
            msg = r.close()
            if msg and not msg.get("closed"):
                self.notes.append(f"{s}: closing the cluster failed: {msg.get('error')}")
            elif msg:
                self.log(f"  {s}: cluster closed in {msg['close_seconds']:.2f} s")
        self.runners.clear()

    def run(self, names: list[str]) -> None:
        try:
            for w in WORKLOADS:
                if w.name not in names:
                    continue
                self.log(f"== {w.name}" + (f" (size {self.size(w):,})" if w.kind in ("cluster", "script")
                                           else ""))
                if w.kind == "cluster":
                    self.run_cluster(w)
                else:
                    self.run_fresh(w)
        finally:
            self.close_runners()

    # -- reporting -----------------------------------------------------------------------------
    def table(self, names: list[str]) -> str:
        dk_on = "dask" in self.systems
        pp_on = any("ppe" in self.systems_for(w) for w in WORKLOADS if w.name in names)
        head = ["Workload", "Metric", "Unit", "taskmill (median)"]
        if dk_on:
            head += ["dask (median)", "taskmill/dask", "taskmill vs dask"]
        if pp_on:
            head += ["PPE (median)", "taskmill/PPE", "taskmill vs PPE"]
        head += ["Target", "Met?"]
        rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for w in WORKLOADS:
            if w.name not in names:
                continue
            tm = self.cells[w.name]["taskmill"].median
            dk = self.cells[w.name]["dask"].median if dk_on else None
            pp = self.cells[w.name]["ppe"].median if "ppe" in self.systems_for(w) else None
            size = self.size(w)
            label = w.name + (f" ({size // MB} MB)" if w.unit == "MB/s" else
                              f" (N={size:,})" if size else "")
            row = [label, w.metric, w.unit + (" (higher is better)" if w.higher_is_better else
                                              " (lower is better)"), fmt(tm, w.unit)]
            if dk_on:
                row += [fmt(dk, w.unit), *compare(w, tm, dk)]
            if pp_on:
                row += ([fmt(pp, w.unit), *compare(w, tm, pp)] if "ppe" in self.systems_for(w)
                        else ["-", "-", "-"])
            ok = w.check(tm, dk, pp)
            row += [w.target, {True: "yes", False: "**no**", None: "?"}[ok]]
            rows.append("| " + " | ".join(row) + " |")
        return "\n".join(rows)

    def raw(self, names: list[str]) -> str:
        lines = []
        for w in WORKLOADS:
            if w.name not in names:
                continue
            for s in self.systems_for(w):
                c = self.cells[w.name][s]
                vals = ", ".join(fmt(v, w.unit) for v in c.values) or "-"
                lines.append(f"- {w.name} / {s}: [{vals}] {w.unit}")
                keys = sorted({k for e in c.extras for k in e if isinstance(e[k], (int, float))})
                for k in keys:
                    vs = [e[k] for e in c.extras if isinstance(e.get(k), (int, float))]
                    lines.append(f"  - {k}: median {statistics.median(vs):.4g} over {len(vs)}")
                others = {k for e in c.extras for k in e if not isinstance(e[k], (int, float))}
                for k in sorted(others):
                    lines.append(f"  - {k}: {c.extras[0].get(k)}")
        return "\n".join(lines)

    def failures(self) -> str:
        out = []
        for w in WORKLOADS:
            for s in self.systems:
                for e in self.cells[w.name][s].errors:
                    out.append(f"### {w.name} / {s}\n\n```\n{e.strip()}\n```")
        for n in self.notes:
            out.append(f"### note\n\n```\n{n.strip()}\n```")
        return "\n\n".join(out)


def versions(systems: list[str]) -> str:
    out = [f"Python {platform.python_version()}"]
    for mod in ["taskmill"] + (["dask", "distributed"] if "dask" in systems else []) + ["numpy"]:
        try:
            m = __import__(mod)
            out.append(f"{mod} {getattr(m, '__version__', '?')}")
        except Exception as exc:       # noqa: BLE001
            out.append(f"{mod} not importable ({exc.__class__.__name__})")
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "taskmill"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        out.append(f"git {rev}" + (" (taskmill/ has uncommitted changes)" if dirty else ""))
    except Exception:                  # noqa: BLE001
        pass
    return ", ".join(out)


def machine() -> str:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}), load average at end {load}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=None, help="repetitions per system (default 5; 2 with --quick)")
    p.add_argument("--quick", action="store_true", help="small sizes and 2 repetitions: a smoke run")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help=f"run only these workloads (repeatable or comma-separated): {', '.join(BY_NAME)}")
    p.add_argument("--systems", default="taskmill,dask,ppe",
                   help="comma-separated (default taskmill,dask,ppe; ppe = the standard library's "
                        "ProcessPoolExecutor(2), on roundtrip and map only)")
    p.add_argument("--timeout", type=float, default=300, help="seconds allowed per measurement (default 300)")
    p.add_argument("--markdown", metavar="PATH", help="write the results as Markdown to PATH")
    p.add_argument("--json", metavar="PATH", help="write every measured value as JSON to PATH")
    args = p.parse_args(argv)
    if args.repeat is None:
        args.repeat = 2 if args.quick else 5
    names = [n.strip() for o in args.only for n in o.split(",") if n.strip()] or list(BY_NAME)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        p.error(f"unknown workload(s) {unknown}; choose from {list(BY_NAME)}")
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if "taskmill" not in systems:
        p.error("--systems must include taskmill")
    strange = [s for s in systems if s not in ("taskmill", "dask", "ppe")]
    if strange:
        p.error(f"unknown system(s) {strange}; choose from taskmill, dask, ppe")
    if "dask" in systems and importlib.util.find_spec("distributed") is None:
        print("dask.distributed is not installed: reporting taskmill only", file=sys.stderr)
        systems = [s for s in systems if s != "dask"]

    logdir = tempfile.mkdtemp(prefix="taskmill-bench-")
    command = " ".join([os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(ROOT) else
                        sys.executable, os.path.relpath(os.path.abspath(__file__), ROOT), *sys.argv[1:]]
                       if argv is None else ["bench/run.py", *argv])
    started = datetime.datetime.now().astimezone()
    print(f"taskmill bench: systems {systems}, workloads {names}, {args.repeat} repetitions, "
          f"{'quick' if args.quick else 'full'} sizes; logs in {logdir}", file=sys.stderr, flush=True)
    bench = Bench(args, systems, logdir)
    t = time.perf_counter()
    try:
        bench.run(names)
    except KeyboardInterrupt:
        bench.notes.append("interrupted by the user: partial results")
    elapsed = time.perf_counter() - t

    table = bench.table(names)
    print()
    print(table)
    fails = bench.failures()
    if fails:
        print("\nFailures:\n" + fails)
    if args.markdown:
        md = [
            "# taskmill vs dask.distributed: benchmark results",
            "",
            f"- Command: `{command}`",
            f"- Date: {started:%Y-%m-%d %H:%M %Z} (run took {elapsed / 60:.1f} min)",
            f"- Machine: {machine()}",
            f"- Software: {versions(systems)}",
            f"- Setup: local cluster of 2 worker processes x 1 thread for each system (fib workloads: "
            "a fresh cluster of 1 worker process x 1 thread per repetition), "
            f"{args.repeat} repetitions alternating between the systems (ABBA), medians over repetitions. "
            "Both clusters stay up during the cluster workloads (each idles while the other is measured).",
            "",
            "## Results",
            "",
            table,
            "",
            "Ratios are taskmill/dask and taskmill/PPE (the standard library's ProcessPoolExecutor(2)) "
            "of the medians; \"taskmill vs ...\" turns that into faster/slower whatever the direction of "
            "the unit.",
            "",
            "## Every repetition",
            "",
            bench.raw(names),
        ]
        if fails:
            md += ["", "## Failures", "", fails]
        with open(args.markdown, "w") as f:
            f.write("\n".join(md) + "\n")
        print(f"\nwrote {args.markdown}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({w: {s: c.__dict__ for s, c in d.items()} for w, d in bench.cells.items()}, f, indent=1)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
