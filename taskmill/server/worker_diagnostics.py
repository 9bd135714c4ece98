"""What a worker tells the scheduler for diagnostics: how long it spent
fetching each task's inputs, the transfers it made, and its CPU use.

The worker shell calls ``fetched`` when a fetch from a peer succeeds,
``executing`` when a task starts (the seconds spent fetching its inputs are
charged to it, once), ``transfer_time`` when it reports the task's end and
``forget`` when keys are deleted (so nothing accumulates).  Transfers and
CPU ride on the next heartbeat (``heartbeat_fields``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MAX_PENDING_TRANSFERS = 10_000


class WorkerDiagnostics:
    def __init__(self, process: Any) -> None:
        self._process = process
        self._fetch_seconds: dict[str, float] = {}  # fetched key -> seconds its fetch took
        self._transfer_of: dict[str, float] = {}  # running key -> seconds spent fetching its inputs
        self._transfers: list[tuple[str, float, float, int, int]] = []
        try:
            process.cpu_percent()  # the first call only starts the measurement
        except Exception:
            pass

    def fetched(self, peer: str, nbytes: dict[str, int], start: float, stop: float) -> None:
        for key in nbytes:
            self._fetch_seconds[key] = stop - start
        if len(self._transfers) < MAX_PENDING_TRANSFERS:
            self._transfers.append((peer, start, stop, sum(nbytes.values()), len(nbytes)))

    def executing(self, key: str, dependencies: Iterable[str]) -> None:
        if self._fetch_seconds:
            seconds = sum(self._fetch_seconds.pop(d, 0.0) for d in dependencies)
            if seconds:
                self._transfer_of[key] = seconds

    def transfer_time(self, key: str) -> float:
        return self._transfer_of.pop(key, 0.0) if self._transfer_of else 0.0

    def forget(self, keys: Iterable[str]) -> None:
        if self._fetch_seconds or self._transfer_of:
            for key in keys:
                self._fetch_seconds.pop(key, None)
                self._transfer_of.pop(key, None)

    def heartbeat_figures(self) -> tuple[float, list[tuple[str, float, float, int, int]]]:
        """CPU percent, and the transfers since the last heartbeat."""
        transfers, self._transfers = self._transfers, []
        try:
            cpu = float(self._process.cpu_percent())
        except Exception:
            cpu = 0.0
        return cpu, transfers
