"""A small pool of already-faulted mappings for large incoming frames.

Theory of operation
-------------------
Receiving a large frame costs the receiver two things of about equal size:
faulting in the fresh memory it lands in (about 40 ms per 200 MB in 4 KiB
pages) and the kernel's copy out of the socket (about 35 ms).  The first is
paid again for every frame, because a released frame's mapping is unmapped.
:class:`ReceivePool` keeps a few mappings whose pages are faulted in already
and lands the next large frame in one of them, so a repeated transfer pays
the copy alone.

*Lending.*  :meth:`ReceivePool.allocate` hands out a ``memoryview`` of an
``mmap`` the pool keeps a reference to ("tracked").  The frame, and
everything decoded from it (a numpy array is a view of it), holds that
memoryview, and every buffer export holds a reference to the exporting
``mmap``.  So a tracked mapping whose only reference is the pool's
(``sys.getrefcount``) is used by nobody: it is *idle* and may be lent again.
A mapping still referenced anywhere is never handed out twice; it is lent
again only once every view of it, and every array on top, is gone.

*Bounds.*  Tracked mappings (lent or idle) total at most ``max_bytes`` and
number at most ``max_buffers``; a frame that does not fit gets a mapping of
its own, untracked, unmapped on release as before.  An idle mapping is
reused for a frame of its size up to 25 % smaller (the rest of it stays
unused while lent).  To make room, idle mappings are dropped oldest first.
Mappings idle for ``idle`` seconds are unmapped by a timer on the event loop
that allocated last (checked every ``idle`` seconds: an idle mapping lives
``idle`` to ``2 * idle`` seconds), and at once by :meth:`release_idle`
(which a closing Executor calls: the loop that ran its timer closes too).

*Fresh mappings.*  A frame that no mapping of the pool fits gets a fresh
one, returned at once, whose pages a helper thread faults in while the
socket fills its front (:class:`~taskmill.protocol.prefault.FaultAhead`):
the faults and the copy out of the socket run side by side instead of one
after the other (``mmap(..., MAP_POPULATE)`` used to stall the event loop,
the GIL held, before the first byte was read).  The same goes for a frame
larger than the pool, and for the fresh tail of a grown spare.

*Ahead of need.*  The first large frame of a process finds the pool empty
and still pays for faulting its memory in, if no longer all on the
critical path.
:meth:`ReceivePool.prefault_in_background` (called by a worker process once
registered and by an Executor once connected; options
``comm.receive-pool.prefault`` and ``.prefault-delay``) faults a mapping in
ahead of time, a short delay later (past a cluster's start and its first
tiny task), in a thread of the lowest priority (nice 19: it gets a core
when nothing else wants one, and is never starved, since it holds the
process's memory-map lock in short steps), each step only when the process
and the machine are quiet (``QuietTurns``: a busy process's work is slowed
by a fault-in even at nice 19), with the GIL released
(:mod:`taskmill.protocol.prefault`), and keeps it idle as a *spare*.  The
first frame of 8 MiB or more that no idle mapping fits takes the spare,
resized to the frame's size (``mremap``: shrinking gives the rest back to
the system, growing keeps the faulted pages and adds fresh ones); from then
on it is an ordinary mapping.  A frame that comes before the spare is ready
does not wait for it (a lowest-priority thread may get little CPU on a busy
machine): it gets memory as if there were no spare, and the fault-in stops
after its current 1 MiB step (:meth:`ReceivePool.stop_prefault`, also
called when the process sends a large frame, and when a worker or an
Executor closes), so as not to compete with the transfer for the cores; the
part faulted in so far is the spare.  A process
that moved a large frame before its fault-in began faults nothing ahead.
An unused spare is unmapped like any idle mapping.

*Accounting.*  Idle mappings are process memory (RSS) that holds no value.
A worker's memory monitor (``taskmill.server.memory``) subtracts
:meth:`idle_bytes` from its unmanaged memory and calls :meth:`release_idle`
before it spills or pauses, so pooled bytes never look like a leak nor push
a worker to spill or pause.

The pool is thread-safe (a lock).  Frames below :data:`PREFAULT_FRAME` go to
:func:`~taskmill.protocol.framing.allocate_frame` untouched.  The process's
pool, configured by the options ``comm.receive-pool.*``, is
``taskmill.comm.core.receive_pool()``.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import sys
import threading
import time
from dataclasses import dataclass

from taskmill.protocol.framing import PREFAULT_FRAME, allocate_frame
from taskmill.protocol.prefault import FaultAhead, QuietTurns, populated_mapping

logger = logging.getLogger("taskmill.comm")

#: An idle mapping is reused for frames down to this fraction of its size.
_SMALLEST_FIT = 0.75


@dataclass(slots=True, eq=False)
class _Entry:
    mapping: mmap.mmap
    idle_since: float | None = None  # when first seen idle; None while lent
    spare: bool = False  # faulted in ahead of need, never lent yet: resized to fit a frame


def _in_use(entry: _Entry) -> bool:
    # references: the entry's field and getrefcount's argument; any more is a view
    return sys.getrefcount(entry.mapping) > 2


class ReceivePool:
    """Pre-faulted mappings for large incoming frames, lent and taken back.

    ``max_bytes`` and ``max_buffers`` bound the tracked mappings (0: no pool,
    every frame gets fresh memory); ``idle`` is the seconds after which an
    unused mapping is unmapped.
    """

    def __init__(self, max_bytes: int, max_buffers: int, idle: float) -> None:
        if max_bytes < 0 or max_buffers < 0:
            raise ValueError(
                f"receive pool bounds must be >= 0, got max_bytes={max_bytes} and "
                f"max_buffers={max_buffers} (options comm.receive-pool.max-bytes, .max-buffers)"
            )
        if not idle > 0:
            raise ValueError(
                f"receive pool idle time must be > 0 seconds, got {idle} "
                "(option comm.receive-pool.idle)"
            )
        self.max_bytes = max_bytes
        self.max_buffers = max_buffers
        self.idle = idle
        self._entries: list[_Entry] = []
        self._lock = threading.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self._prefault_asked = False  # prefault_in_background was called
        self._prefault_stop = threading.Event()  # set: a fault-in in progress stops
        self._fault_ahead = FaultAhead()  # fresh mappings for frames, faulted in as they fill

    def allocate(self, length: int) -> memoryview:
        """A writable buffer of ``length`` bytes for an incoming frame."""
        if length < PREFAULT_FRAME:
            return allocate_frame(length)
        self.stop_prefault()
        if not self.max_buffers or length > self.max_bytes:
            return memoryview(self._fault_ahead.mapping(length))
        with self._lock:
            self._scan(time.monotonic())
            entry = self._best_idle(length) or self._resized_spare(length)
            if entry is None:
                mapping = self._fault_ahead.mapping(length)
                entry = self._track(mapping)
                if entry is None:  # no room: memory of its own, untracked
                    return memoryview(mapping)
                del mapping  # the entry's reference is the pool's only one
            entry.idle_since, entry.spare = None, False
            view = memoryview(entry.mapping)  # lent from here on
        self._schedule_trim()
        return view if len(view) == length else view[:length]

    def prefault(self, nbytes: int, loop: asyncio.AbstractEventLoop | None = None,
                 quiet: bool = False) -> int:
        """Fault in a spare mapping of ``nbytes`` (at most ``max_bytes``) for
        the first large frame to come; return its size (less when
        :meth:`stop_prefault` stopped it; 0 when the pool is disabled or
        full, a large frame came first, or the system cannot fault memory
        in with the GIL released).  Blocks while the kernel faults: call it
        from a thread of its own.  With ``loop``, the idle timer runs there.
        With ``quiet``, each step waits for a moment when the process and
        the machine are quiet (:class:`~taskmill.protocol.prefault.QuietTurns`)."""
        nbytes = min(nbytes, self.max_bytes)
        if nbytes < PREFAULT_FRAME or not self.max_buffers:
            return 0
        if self._prefault_stop.is_set():  # large frames came first: too late to help
            return 0
        turn = QuietTurns(self._prefault_stop).wait if quiet else (lambda: True)
        mapping = populated_mapping(nbytes, self._prefault_stop.is_set, turn)
        if mapping is None:
            return 0
        with self._lock:
            self._scan(time.monotonic())
            entry = self._track(mapping)
            if entry is None:  # the pool's room is taken by frames
                mapping.close()
                return 0
            nbytes = len(mapping)  # less if stopped early
            del mapping  # the entry's reference is the pool's only one
            entry.idle_since, entry.spare = time.monotonic(), True
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._schedule_trim)
        return nbytes

    def stop_prefault(self) -> None:
        """A fault-in in progress stops after its current step, and none starts
        later: a large frame is on its way (the transfer needs the cores
        more), or the process closes."""
        self._prefault_stop.set()

    def prefault_in_background(self, nbytes: int, delay: float = 0.0,
                               loop: asyncio.AbstractEventLoop | None = None
                               ) -> threading.Thread | None:
        """:meth:`prefault` in a daemon thread of the lowest priority (nice
        19), ``delay`` seconds from now, once per pool (a process's
        Executors and its worker share one spare); None when ``nbytes`` is
        below a large frame or a spare was asked for already."""
        with self._lock:
            if nbytes < PREFAULT_FRAME or not self.max_buffers or self._prefault_asked:
                return None
            self._prefault_asked = True
        thread = threading.Timer(delay, self._prefault_idle, args=(nbytes, loop))
        thread.name, thread.daemon = "taskmill-prefault", True
        thread.start()
        return thread

    def _prefault_idle(self, nbytes: int, loop: asyncio.AbstractEventLoop | None) -> None:
        try:  # this thread only, on Linux (its id is a process id there)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):  # elsewhere: nothing is faulted ahead anyway
            pass
        try:
            self.prefault(nbytes, loop, quiet=True)
        except (OSError, SystemError) as exc:  # speculative: the first frame faults its own
            logger.debug("could not fault %d bytes in ahead of need: %s", nbytes, exc)

    def idle_bytes(self) -> int:
        """Bytes held in mappings nobody uses (process memory holding no value)."""
        with self._lock:
            self._scan(time.monotonic())
            return sum(len(e.mapping) for e in self._entries if e.idle_since is not None)

    def tracked_bytes(self) -> int:
        """Bytes of all tracked mappings, lent or idle."""
        with self._lock:
            return sum(len(e.mapping) for e in self._entries)

    def release_idle(self) -> int:
        """Unmap every idle mapping now; return the bytes released."""
        with self._lock:
            self._scan(time.monotonic())
            return self._drop([e for e in self._entries if e.idle_since is not None])

    def trim(self) -> int:
        """Unmap the mappings idle for ``idle`` seconds; return the bytes released."""
        with self._lock:
            now = time.monotonic()
            self._scan(now)
            return self._drop([e for e in self._entries
                               if e.idle_since is not None and now - e.idle_since >= self.idle])

    # -- internals (under the lock) ----------------------------------------- #

    def _scan(self, now: float) -> None:
        for entry in self._entries:
            if entry.idle_since is None and not _in_use(entry):
                entry.idle_since = now

    def _best_idle(self, length: int) -> _Entry | None:
        fits = [e for e in self._entries if e.idle_since is not None
                and length <= len(e.mapping) and _SMALLEST_FIT * len(e.mapping) <= length]
        return min(fits, key=lambda e: len(e.mapping)) if fits else None

    def _resized_spare(self, length: int) -> _Entry | None:
        """The idle spare resized to ``length`` bytes, if there is one and room."""
        spares = [e for e in self._entries if e.spare and e.idle_since is not None]
        if not spares:
            return None
        entry = spares[0]
        tracked = sum(len(e.mapping) for e in self._entries)
        if tracked - len(entry.mapping) + length > self.max_bytes:
            return None
        faulted = len(entry.mapping)
        try:
            entry.mapping.resize(length)
        except (OSError, SystemError):  # no mremap on this system: an ordinary idle mapping
            entry.spare = False
            return None
        if length > faulted:  # grown: the new pages are fresh
            self._fault_ahead.fault(entry.mapping, faulted)
        return entry

    def _track(self, mapping: mmap.mmap) -> _Entry | None:
        """Track a new mapping, dropping idle ones (oldest first) to make room."""
        idle = sorted((e for e in self._entries if e.idle_since is not None),
                      key=lambda e: e.idle_since or 0.0)
        tracked = sum(len(e.mapping) for e in self._entries)
        count = len(self._entries)
        victims: list[_Entry] = []
        while idle and (tracked + len(mapping) > self.max_bytes or count + 1 > self.max_buffers):
            victim = idle.pop(0)
            victims.append(victim)
            tracked -= len(victim.mapping)
            count -= 1
        if tracked + len(mapping) > self.max_bytes or count + 1 > self.max_buffers:
            return None
        self._drop(victims)
        entry = _Entry(mapping)
        self._entries.append(entry)
        return entry

    def _drop(self, entries: list[_Entry]) -> int:
        released = 0
        for entry in entries:
            self._entries.remove(entry)
            released += len(entry.mapping)
            entry.mapping.close()  # idle: no exports, so this unmaps
        return released

    # -- the idle timer ------------------------------------------------------ #

    def _schedule_trim(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (tests feeding a parser): trimmed at the next allocate
            return
        loop_alive = self._timer_loop is not None and not self._timer_loop.is_closed()
        if self._timer is not None and loop_alive:
            return
        self._timer_loop = loop
        self._timer = loop.call_later(self.idle, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.trim()
        if self._entries:
            self._schedule_trim()
