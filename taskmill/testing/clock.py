"""Simulated time for a :class:`~taskmill.testing.SimCluster`.

The pure machines never read a clock: time reaches them on events
(``RegisterWorker.now``, ``Heartbeat.now``, ``WorkerLeft.now``, the
``start``/``stop`` of a finished task).  In a simulation that time comes from
a :class:`FakeClock`, which moves only when the simulation says so: to the
moment a message lands or a simulated task or transfer ends.  Nothing in
:mod:`taskmill.testing` reads the wall clock or sleeps.
"""

from __future__ import annotations


class FakeClock:
    """Simulated seconds since the start of the simulation; never goes back."""

    __slots__ = ("now",)

    def __init__(self, start: float = 0.0) -> None:
        #: the current simulated time (seconds)
        self.now = start

    def __call__(self) -> float:
        """The current simulated time (so a clock can stand in for ``time.time``)."""
        return self.now

    def advance(self, seconds: float) -> float:
        """Move ``seconds`` forward; returns the new time."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        self.now += seconds
        return self.now

    def advance_to(self, when: float) -> float:
        """Move forward to ``when`` (no change if that is already past); returns the time."""
        if when > self.now:
            self.now = when
        return self.now

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now:.6f})"
