"""How many workers, and threads each, an embedded cluster has by default.

Its own small module: ``Executor()`` needs the answer before it imports the
cluster (to start the worker processes first, :mod:`taskmill.server.prestart`).
"""

from __future__ import annotations

import math
import os


def default_sizing(n_workers: int | None, threads_per_worker: int | None,
                   processes: bool) -> tuple[int, int]:
    """Workers and threads per worker that use every core once."""
    cpus = os.cpu_count() or 1
    if not processes:
        return n_workers if n_workers is not None else 1, threads_per_worker or cpus
    if n_workers is None and threads_per_worker is None:
        n_workers = cpus if cpus <= 4 else max(1, int(math.sqrt(cpus)))
    if n_workers is None:
        n_workers = max(1, cpus // (threads_per_worker or 1))
    if threads_per_worker is None:
        threads_per_worker = max(1, cpus // max(1, n_workers))
    return n_workers, threads_per_worker
