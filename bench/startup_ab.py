"""Two taskmill checkouts side by side: ``import taskmill`` and start-up.

``python bench/startup_ab.py OLD_DIR NEW_DIR [--rounds 10]``

Each round runs, for each checkout in turn (ABBA order across rounds), the
two fresh-interpreter scripts of ``bench/startup.py`` with that checkout as
working directory and ``PYTHONPATH``: ``import taskmill`` (ms, timed inside
the child), and ``Executor(n_workers=2, threads_per_worker=1)`` to the first
``submit(inc, 1).result()`` (s, import excluded; close reported apart).
Both checkouts compile their bytecode in a private cache first (untimed), as
``bench/run.py`` does, so neither side measures the compiler.  It reports
each side's medians and, per round, the ratio NEW/OLD: the median of those
paired ratios and in how many rounds NEW was lower.  On this shared machine
the paired ratio shows a change long before absolute medians settle.

Make the old checkout with ``git worktree add --detach /tmp/old COMMIT``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import startup  # noqa: E402

PYCACHE = os.path.join(tempfile.gettempdir(), "taskmill-startup-ab-pycache")


def run_script(checkout: str, script: str) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(PYCACHE, os.path.basename(os.path.abspath(checkout)))
    env["PYTHONPATH"] = checkout
    done = subprocess.run([sys.executable, "-c", script], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=120)
    for line in done.stdout.splitlines():
        if line.startswith("@@BENCH "):
            return json.loads(line[len("@@BENCH "):])
    raise RuntimeError(f"{checkout}: no result (exit {done.returncode}):\n{done.stderr[-2000:]}")


def measure(checkout: str) -> dict[str, float]:
    imported = run_script(checkout, startup.import_script("taskmill"))
    started = run_script(checkout, startup.start_script("taskmill"))
    return {"import_ms": imported["value"], "startup_s": started["value"],
            "close_s": started["close_seconds"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args()
    for checkout in (args.old, args.new):  # fill the bytecode caches, untimed
        measure(checkout)
    rows: list[tuple[dict[str, float], dict[str, float]]] = []
    for i in range(args.rounds):
        order = (args.old, args.new) if i % 2 == 0 else (args.new, args.old)
        got = {checkout: measure(checkout) for checkout in order}
        rows.append((got[args.old], got[args.new]))
        print(f"round {i + 1}: old {got[args.old]}  new {got[args.new]}", flush=True)
    for name in ("import_ms", "startup_s", "close_s"):
        old = [o[name] for o, _ in rows]
        new = [n[name] for _, n in rows]
        ratios = [n / o for o, n in zip(old, new)]
        print(f"{name}: old median {statistics.median(old):.4g}, new median "
              f"{statistics.median(new):.4g}; paired new/old median {statistics.median(ratios):.3f}, "
              f"new lower in {sum(r < 1 for r in ratios)}/{len(ratios)} rounds")


if __name__ == "__main__":
    main()
