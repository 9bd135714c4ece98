"""How long a nanny waits before starting a worker process again after it died.

Theory of operation
-------------------
A worker process that dies once (a kill, a crash, its memory limit) is
started again at once, as it always was: one death says nothing about the
next.  A worker that keeps dying soon after it starts (a broken environment,
a preload that crashes, a machine out of memory) would otherwise be
restarted in a tight loop, each start costing a process and its imports, so
each further death in a row waits twice as long as the one before, from
``initial`` up to ``max`` seconds (options ``worker.restart-backoff.*``).  A
worker process that lived ``reset-after`` seconds or more ends the streak:
its death counts as the first again.

Deaths that are not failures never reach this: a worker that handed its data
over on SIGTERM is started again at once, and one that stopped on its own
(status 0) is not started again at all (see :mod:`taskmill.server.nanny`).
The machine here is pure (no clock of its own: the nanny passes how long the
process lived), so it is tested without processes.
"""

from __future__ import annotations

from dataclasses import dataclass

from taskmill import config, config_checks


def _seconds_or_zero(value: object) -> float:
    """0 or a duration in seconds (``off`` gives 0)."""
    return config_checks.duration(value) or 0.0


@dataclass(slots=True)
class RestartBackoff:
    """Delays between a worker's death and its next start, doubling while it keeps dying young."""

    #: seconds before the second start of a streak (the first is immediate)
    initial: float
    #: the longest delay, in seconds
    max: float
    #: a process that lived at least this long (seconds) ends the streak
    reset_after: float
    #: deaths in the current streak
    streak: int = 0

    def __post_init__(self) -> None:
        if self.initial < 0 or self.max < self.initial or self.reset_after < 0:
            raise ValueError(
                f"restart backoff: need 0 <= initial ({self.initial:g}s) <= max ({self.max:g}s) "
                f"and reset-after ({self.reset_after:g}s) >= 0; fix the options "
                f"worker.restart-backoff.initial, .max and .reset-after")

    @classmethod
    def from_config(cls) -> RestartBackoff:
        """The delays of the options ``worker.restart-backoff.*``."""
        return cls(config.read("worker.restart-backoff.initial", _seconds_or_zero),
                   config.read("worker.restart-backoff.max", _seconds_or_zero),
                   config.read("worker.restart-backoff.reset-after", _seconds_or_zero))

    def died(self, lived: float) -> float:
        """A worker process died after ``lived`` seconds: the seconds to wait
        before starting the next one."""
        self.streak = 1 if lived >= self.reset_after else self.streak + 1
        if self.streak == 1:
            return 0.0
        return min(self.max, self.initial * 2.0 ** (self.streak - 2))
