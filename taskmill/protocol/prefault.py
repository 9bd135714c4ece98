"""Memory faulted in ahead of need, from a thread that does not stop the others.

Theory of operation
-------------------
The first large frame a process receives lands in memory it has never
touched, and faulting that in is half the receiver's cost: 40 ms per 200 MB
when the machine recycles freed memory, up to 550 ms when the pages are new
to the machine (docs/performance.md, "Cold transfers").  A process that has
nothing to do yet can pay it ahead of time
(:meth:`~taskmill.protocol.receive_pool.ReceivePool.prefault`), but not with
``mmap(..., MAP_POPULATE)``: CPython holds the GIL through the ``mmap``
call, so the event loop and every other thread of the process would stop
for as long as the kernel faults.

:func:`populated_mapping` maps without ``MAP_POPULATE`` (instant) and asks
the kernel to fault every page in with ``madvise(MADV_POPULATE_WRITE)``
(Linux 5.14 and later) through ``ctypes``, which releases the GIL for the
call: the faulting thread holds a core, the others run on.  It asks for
1 MiB at a time: the kernel holds the process's memory-map lock for reading
while it faults, and any thread that maps or unmaps memory meanwhile (a
large ``malloc``, a frame's buffer released) waits for that lock; one call
for 256 MiB made such a thread wait for all of it (start-up, measured
1.9x slower), one per MiB makes it wait for one step at most.  Where
``MADV_POPULATE_WRITE`` is missing (other systems, older kernels) it returns
``None``: nothing is faulted ahead, and the frames fault their pages in as
they come, as they would have anyway.

Faulting memory in is not free for the rest of the machine even at the
lowest priority: in a virtual machine the host backs fresh memory while the
guest's core waits, whoever else would have run on it.  A fault-in running
while the process computes made a fresh cluster's first tiny tasks 2.3x
slower (pure ``fib(20)`` through ``get_client``: 807 -> 343 tasks/s, medians
of 6 fresh clusters).  So :class:`QuietTurns` lets the background fault-in
take a step only when the process and the machine are quiet: the process's
other threads used less than a quarter of a core, and the machine's cores
(not counting niced work) had more than three quarters of one free, over the
last ``QUIET_WINDOW`` seconds (judged every such window while it steps).
A busy process waits for a quiet moment; a
large frame that comes first stops the fault-in, as before.
"""

from __future__ import annotations

import logging
import mmap
import os
import sys
import threading
import time
from typing import Any, Callable

logger = logging.getLogger("taskmill.comm")

#: ``MADV_POPULATE_WRITE`` of Linux's ``<sys/mman.h>`` (not in Python 3.11's ``mmap``)
MADV_POPULATE_WRITE = 23
#: bytes faulted in per system call (the memory-map lock is free between calls)
STEP = 2**20
#: seconds over which :class:`QuietTurns` judges the process and the machine
QUIET_WINDOW = 0.02
#: the longest window: after busy ones the window doubles up to this (a busy
#: process's fault-in wakes a few times a second, not fifty)
BUSY_WINDOW = 0.32
#: cores the process's other threads may use, at most, for a step to go ahead
PROCESS_BUSY = 0.25
#: cores that must be free on the machine (niced work counts as free) for a step to go ahead
MACHINE_FREE = 0.75

_madvise: list[Any] = []  # libc's madvise, looked up at first use


def _libc_madvise() -> Any:
    import ctypes  # here: a process that never faults ahead does not pay for the import

    if not _madvise:
        function = ctypes.CDLL(None, use_errno=True).madvise
        function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        function.restype = ctypes.c_int
        _madvise.append(function)
    return _madvise[0]


def populated_mapping(length: int, stop: Callable[[], bool] = lambda: False,
                      turn: Callable[[], bool] = lambda: True) -> mmap.mmap | None:
    """A private anonymous mapping of ``length`` bytes with all its pages
    faulted in, the GIL released meanwhile, step by step; when ``stop()``
    says so between two steps, the part faulted in so far.  Before each step
    ``turn()`` may wait (:meth:`QuietTurns.wait`); False from it stops too.
    ``None`` where the system cannot, or when stopped before the first step."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    madvise = _libc_madvise()
    mapping = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    holder = ctypes.c_char.from_buffer(mapping)  # an export, for the address only
    done = 0
    try:
        start = ctypes.addressof(holder)
        while done < length and not stop() and turn():
            step = min(STEP, length - done)
            if madvise(start + done, step, MADV_POPULATE_WRITE):
                logger.debug("cannot fault memory in ahead of need here: madvise: %s",
                             os.strerror(ctypes.get_errno()))
                done = 0
                break
            done += step
    finally:
        del holder  # no export left: the mapping can be resized and closed
    if not done:
        mapping.close()
        return None
    if done < length:
        mapping.resize(done)  # only what is faulted in: the memory it holds
    return mapping


def _machine_busy_seconds() -> float:
    """CPU seconds the machine's cores spent busy since boot, niced work not
    counted (``/proc/stat``: user, system, irq, softirq, steal)."""
    with open("/proc/stat", "rb") as f:
        fields = f.readline().split()
    user, _nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + system + irq + softirq + steal) / _TICKS


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class QuietTurns:
    """Paces a background fault-in (see the module docstring).  Time is cut
    into windows of ``QUIET_WINDOW`` (after busy ones, longer: up to
    ``BUSY_WINDOW``); at the end of each, the window is judged quiet or busy.  :meth:`wait` returns True at once while the last
    window judged was quiet (steps go back to back until the next judgement),
    and otherwise waits for a quiet window as long as it takes; it returns
    False once ``stopped`` is set."""

    def __init__(self, stopped: threading.Event) -> None:
        self.stopped = stopped
        self.cores = os.cpu_count() or 1
        self._mark = self._sample()  # the start of the window being watched
        self._quiet = False  # the last window's verdict (none yet: wait for one)
        self._window = QUIET_WINDOW  # doubled after each busy one, up to BUSY_WINDOW

    def _sample(self) -> tuple[float, float, float, float]:
        return (time.monotonic(), time.process_time(), time.thread_time(),
                _machine_busy_seconds())

    def wait(self) -> bool:
        """Return when a step may go (see the class docstring)."""
        while not self.stopped.is_set():
            elapsed = time.monotonic() - self._mark[0]
            if elapsed < self._window:
                if self._quiet:
                    return True
                self.stopped.wait(self._window - elapsed)
                continue
            now = self._sample()
            wall, process, own, machine = (b - a for a, b in zip(self._mark, now))
            self._mark = now
            others_here = process - own  # this process's other threads
            others_there = machine - own  # everyone else's busy cores, this thread's steps out
            self._quiet = (others_here <= PROCESS_BUSY * wall
                           and others_there <= (self.cores - MACHINE_FREE) * wall)
            if self._quiet:
                self._window = QUIET_WINDOW
                return True
            self._window = min(2 * self._window, BUSY_WINDOW)
        return False
