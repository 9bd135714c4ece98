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

:class:`FaultAhead` faults in the fresh mapping of a frame being received,
from a helper thread, the same way and at normal priority: it is on the
critical path, ahead of the reads that fill the frame.

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

import errno
import logging
import mmap
import os
import queue
import sys
import threading
import time
import weakref
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
    mapping = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        done = _populate(_address(mapping), 0, length, lambda: not stop() and turn())
    except OSError as exc:
        logger.debug("cannot fault memory in ahead of need here: %s", exc)
        done = 0
    if not done:
        mapping.close()
        return None
    if done < length:
        mapping.resize(done)  # only what is faulted in: the memory it holds
    return mapping


def _address(mapping: mmap.mmap) -> int:
    """Where ``mapping`` starts in memory."""
    import ctypes

    holder = ctypes.c_char.from_buffer(mapping)  # an export, for the address only
    try:
        return ctypes.addressof(holder)
    finally:
        del holder  # no export left: the mapping can be resized and closed


def _populate(start: int, done: int, length: int, proceed: Callable[[], bool]) -> int:
    """Fault in the ``length`` bytes of memory at address ``start`` from byte
    ``done`` on, a :data:`STEP` per call with the GIL released, while
    ``proceed()`` says so; return the bytes faulted in from the start.
    Raises :class:`OSError` when the kernel refuses (no
    ``MADV_POPULATE_WRITE``; ``ENOMEM``: nothing mapped there)."""
    import ctypes

    madvise = _libc_madvise()
    while done < length and proceed():
        step = min(STEP, length - done)
        if madvise(start + done, step, MADV_POPULATE_WRITE):
            code = ctypes.get_errno()
            raise OSError(code, f"madvise(MADV_POPULATE_WRITE): {os.strerror(code)}")
        done += step
    return done


class FaultAhead:
    """Faults in fresh mappings front to back, ahead of the socket reads that
    fill them, from one daemon thread of the process (started at first use).

    A large frame that finds no mapping faulted in already used to get one
    from ``mmap(..., MAP_POPULATE)``: 50-320 ms per 200 MB on the receiver's
    event loop, the GIL held, before the first byte was read, the sender
    stalled on a full socket meanwhile; then the copy out of the socket.
    :meth:`mapping` returns a mapping at once and hands it to this thread,
    which faults it in :data:`STEP` by :data:`STEP` with the GIL released
    while the loop reads into its front: the faults and the copy run on two
    cores at once, and the reader finds the pages it reaches faulted in
    (or faults them itself, if it overtakes: nothing waits for anything).

    The thread holds only a weak reference to the mapping: a frame released
    early (its connection lost) is unmapped as usual and the thread moves
    on, and a pooled mapping counts as idle as soon as its frame is released
    (faulting in pages changes no byte of them, so lending it again while the
    thread finishes is harmless).  Where the system cannot fault in ahead, the
    reads fault the pages as they come."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[weakref.ref[mmap.mmap], int, int, int]] = (
            queue.SimpleQueue())
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._able = sys.platform.startswith("linux")  # False once the kernel refused

    def mapping(self, length: int) -> mmap.mmap:
        """A private anonymous mapping of ``length`` bytes, returned at once,
        its pages faulted in by the thread meanwhile."""
        if not hasattr(mmap, "MAP_ANONYMOUS"):  # elsewhere than on POSIX systems
            return mmap.mmap(-1, length)
        mapping = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.fault(mapping)
        return mapping

    def fault(self, mapping: mmap.mmap, start: int = 0) -> None:
        """Have the thread fault ``mapping`` in from byte ``start`` on."""
        if not self._able:
            return
        self._jobs.put((weakref.ref(mapping), _address(mapping), start, len(mapping)))
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="taskmill-fault-ahead",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            ref, address, start, length = self._jobs.get()

            def alive() -> bool:  # checked between steps, with the GIL
                mapping = ref()
                return mapping is not None and not mapping.closed

            try:
                _populate(address, start, length, alive)
            except OSError as exc:
                if exc.errno != errno.ENOMEM:  # ENOMEM: unmapped during a step, which is fine
                    logger.debug("cannot fault frames in ahead of the reads here: %s", exc)
                    self._able = False


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
