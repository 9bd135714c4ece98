"""Run one benchmark script's child code for several systems, alternating, and print the medians.

Used by the stand-alone side-by-side benchmarks (``actors.py``,
``joblib_backend.py``): each repetition runs each system's measurement in a
fresh interpreter (``CHILD`` code given the system's name as ``argv[1]``,
printing one ``@@BENCH {json}`` line of workload -> value), in alternating
order so neither system always goes first; then one Markdown table of
medians (with taskmill's ratio to dask when both ran) and every value.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_child(child: str, system: str) -> dict[str, float]:
    """One system's measurement in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", child, system], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    for line in done.stdout.splitlines():
        if line.startswith("@@BENCH "):
            return json.loads(line[len("@@BENCH "):])  # type: ignore[no-any-return]
    raise RuntimeError(f"{system} failed:\n{done.stderr[-3000:]}")


def main(description: str, child: str, units: dict[str, str], default_systems: str) -> None:
    """Parse ``--repeat``/``--systems``, run the repetitions, print the table."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--systems", default=default_systems)
    options = parser.parse_args()
    systems = [s for s in options.systems.split(",")
               if s != "dask" or importlib.util.find_spec("distributed") is not None]
    values: dict[str, dict[str, list[float]]] = {s: {w: [] for w in units} for s in systems}
    for rep in range(options.repeat):
        for system in systems if rep % 2 == 0 else reversed(systems):
            started = time.perf_counter()
            for workload, value in run_child(child, system).items():
                values[system][workload].append(value)
            print(f"repetition {rep + 1}: {system} in {time.perf_counter() - started:.1f} s", flush=True)
    ratio = "taskmill/dask" if "dask" in systems and "taskmill" in systems else ""
    print(f"\n| workload | unit | {' | '.join(systems)} |{f' {ratio} |' if ratio else ''}\n"
          f"|---|---|{'---|' * (len(systems) + bool(ratio))}")
    for workload, unit in units.items():
        medians = {s: statistics.median(values[s][workload]) for s in systems}
        cells = " | ".join(f"{m:,.3g}" for m in medians.values())
        extra = (f" {medians['taskmill'] / medians['dask']:.3g} |" if medians.get("dask") else " - |"
                 ) if ratio else ""
        print(f"| {workload} | {unit} | {cells} |{extra}")
    print("\nall values: " + json.dumps(values))
