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
call: the faulting thread holds a core, the others run on.  Where that call
is missing (other systems, older kernels) it returns ``None``: nothing is
faulted ahead, and the frames fault their pages in as they come, as they
would have anyway.
"""

from __future__ import annotations

import logging
import mmap
import os
import sys
from typing import Any

logger = logging.getLogger("taskmill.comm")

#: ``MADV_POPULATE_WRITE`` of Linux's ``<sys/mman.h>`` (not in Python 3.11's ``mmap``)
MADV_POPULATE_WRITE = 23

_madvise: list[Any] = []  # libc's madvise, looked up at first use


def _libc_madvise() -> Any:
    import ctypes  # here: a process that never faults ahead does not pay for the import

    if not _madvise:
        function = ctypes.CDLL(None, use_errno=True).madvise
        function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        function.restype = ctypes.c_int
        _madvise.append(function)
    return _madvise[0]


def populated_mapping(length: int) -> mmap.mmap | None:
    """A private anonymous mapping of ``length`` bytes with all its pages
    faulted in, the GIL released meanwhile; ``None`` where the system cannot."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    madvise = _libc_madvise()
    mapping = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    holder = ctypes.c_char.from_buffer(mapping)  # an export, for the address only
    try:
        failed = madvise(ctypes.addressof(holder), length, MADV_POPULATE_WRITE)
    finally:
        del holder  # no export left: the mapping can be resized and closed
    if failed:
        error = ctypes.get_errno()
        mapping.close()
        logger.debug("cannot fault memory in ahead of need here: madvise: %s", os.strerror(error))
        return None
    return mapping
