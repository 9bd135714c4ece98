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
4 MiB at a time: the kernel holds the process's memory-map lock for reading
while it faults, and any thread that maps or unmaps memory meanwhile (a
large ``malloc``, a frame's buffer released) waits for that lock; one call
for 256 MiB made such a thread wait for all of it (start-up, measured
1.9x slower), one per 4 MiB makes it wait for one step at most.  Where
``MADV_POPULATE_WRITE`` is missing (other systems, older kernels) it returns
``None``: nothing is faulted ahead, and the frames fault their pages in as
they come, as they would have anyway.
"""

from __future__ import annotations

import logging
import mmap
import os
import sys
from typing import Any, Callable

logger = logging.getLogger("taskmill.comm")

#: ``MADV_POPULATE_WRITE`` of Linux's ``<sys/mman.h>`` (not in Python 3.11's ``mmap``)
MADV_POPULATE_WRITE = 23
#: bytes faulted in per system call (the memory-map lock is free between calls)
STEP = 4 * 2**20

_madvise: list[Any] = []  # libc's madvise, looked up at first use


def _libc_madvise() -> Any:
    import ctypes  # here: a process that never faults ahead does not pay for the import

    if not _madvise:
        function = ctypes.CDLL(None, use_errno=True).madvise
        function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        function.restype = ctypes.c_int
        _madvise.append(function)
    return _madvise[0]


def populated_mapping(length: int, stop: Callable[[], bool] = lambda: False) -> mmap.mmap | None:
    """A private anonymous mapping of ``length`` bytes with all its pages
    faulted in, the GIL released meanwhile, step by step; when ``stop()``
    says so between two steps, the part faulted in so far.  ``None`` where
    the system cannot, or when stopped before the first step."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    madvise = _libc_madvise()
    mapping = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    holder = ctypes.c_char.from_buffer(mapping)  # an export, for the address only
    done = 0
    try:
        start = ctypes.addressof(holder)
        while done < length and not stop():
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
