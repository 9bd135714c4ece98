"""When the scheduler handled its events: a bounded ring of (stimulus number,
wall time) stamps kept in two arrays.

Theory of operation
-------------------
The scheduler shell stamps each batch of events it handles
(``SchedulerMonitor.stamp``): the number of the batch's last stimulus id and
the wall time then.  A key's story says when each of its transitions happened
through ``SchedulerMonitor.when``: the time of the first stamp whose number
is not below the stimulus's own.

There is one stamp per batch: with 1,000 workers, thousands a second.  As
``(int, float)`` tuples in a deque, the last 200,000 cost about 110 bytes each
(a tuple, an int and a float object, and the deque's slot): 22 MB, the
largest of the scheduler's bounded diagnostics, paid by every run that lasts
long enough.  :class:`StampRing` keeps them in two ``array`` objects of
machine numbers used as a ring: 16 bytes a stamp (3.2 MB when full), and no
objects for the garbage collector to walk.

The shell numbers its stimulus ids in order, so the ring read from its
oldest stamp (``ordered``) is sorted by number and ``when`` bisects it.
"""

from __future__ import annotations

from array import array

__all__ = ["StampRing"]


class StampRing:
    """The last ``capacity`` stamps ``(number, wall time)``, oldest first when
    read (see the module docstring).  Filled in order; once full, each new
    stamp overwrites the oldest (``start`` is where the oldest is)."""

    __slots__ = ("capacity", "numbers", "times", "start")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a stamp ring holds at least 1 stamp, not {capacity!r}")
        self.capacity = capacity
        self.numbers = array("q")
        self.times = array("d")
        #: index of the oldest stamp once the ring is full (0 until then)
        self.start = 0

    def append(self, number: int, when: float) -> None:
        """Stamp ``number`` (not below the last one's) handled at ``when``."""
        numbers = self.numbers
        if len(numbers) < self.capacity:
            numbers.append(number)
            self.times.append(when)
            return
        i = self.start
        numbers[i] = number
        self.times[i] = when
        i += 1
        self.start = 0 if i == self.capacity else i

    @property
    def full(self) -> bool:
        """Whether older stamps have been overwritten (or are about to be)."""
        return len(self.numbers) == self.capacity

    def last(self) -> int:
        """The newest stamp's number (0 if none)."""
        numbers = self.numbers
        if not numbers:
            return 0
        return numbers[self.start - 1]

    def ordered(self) -> tuple[array[int], array[float]]:
        """The numbers and the times, oldest first (copies)."""
        i = self.start
        return self.numbers[i:] + self.numbers[:i], self.times[i:] + self.times[:i]

    def __len__(self) -> int:
        return len(self.numbers)
