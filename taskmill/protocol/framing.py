"""Framing: how a list of frames travels over a byte stream.

Theory of operation
-------------------
A message on the wire is::

    uint64 n_frames | uint64 len(frame_0) ... uint64 len(frame_n-1) | frame_0 ... frame_n-1

all integers little-endian.  The sender writes ``frame_prefix(frames)`` and then
the frames themselves, unconcatenated.  The receiver runs a
:class:`FrameParser`, an incremental state machine with the same interface as
``asyncio.BufferedProtocol`` (``get_buffer`` / ``buffer_updated``): the socket
reads straight into the buffer the parser hands out.  Small items are parsed
out of a reusable scratch buffer; each large frame gets its own ``bytearray``
of the exact size, which the socket fills directly and which is handed out as
a ``memoryview`` (no per-chunk concatenation, no final copy).  Frames of
8 MiB and more get an anonymous mapping pre-faulted in one system call, in
ordinary 4 KiB pages (see :func:`allocate_frame` for why not huge pages);
a comm's parser takes them from its process's
:class:`~taskmill.protocol.receive_pool.ReceivePool` instead, which lends
the mappings of released frames again, already faulted in.

Limits (:class:`FrameLimits`) are checked as soon as the prefix is known, before
any frame memory is allocated, on both the sending and the receiving side.  A
violation raises :class:`ProtocolError`; a parser that raised is broken and
the connection must be dropped.
"""

from __future__ import annotations

import collections
import mmap
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from taskmill.protocol.serialize import Frame

_U64 = struct.Struct("<Q")
_PREFIX_1 = struct.Struct("<QQ")

#: Default maximum number of frames in one message.
MAX_FRAMES = 10_000
#: Default maximum size of the header (first) frame.
MAX_HEADER_BYTES = 64 * 2**20
#: Default maximum total size of one message; connections take theirs from
#: the option ``comm.max-message-bytes`` (``taskmill.comm.core.configured_limits``).
MAX_MESSAGE_BYTES = 2 * 2**30

#: Frames at least this large are received into their own buffer.
LARGE_FRAME = 64 * 1024
#: Frames at least this large land in their own anonymous mapping, faulted in
#: at once with ``MAP_POPULATE`` (Linux; elsewhere a ``bytearray``).
PREFAULT_FRAME = 8 * 1024 * 1024
_MAP_POPULATE: int = getattr(mmap, "MAP_POPULATE", 0)
_SCRATCH_SIZE = 2 * LARGE_FRAME


class ProtocolError(Exception):
    """A byte stream or message violates the wire protocol or its limits."""


@dataclass(frozen=True, slots=True)
class FrameLimits:
    """Hard limits on one message; violations raise :class:`ProtocolError`."""

    max_frames: int = MAX_FRAMES
    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_header_bytes: int = MAX_HEADER_BYTES

    def check_count(self, n_frames: int) -> None:
        """Validate a message's frame count."""
        if n_frames < 1:
            raise ProtocolError("a message needs at least one (header) frame, got 0")
        if n_frames > self.max_frames:
            raise ProtocolError(
                f"message has {n_frames} frames, more than the limit of {self.max_frames}"
            )

    def check_lengths(self, lengths: Sequence[int]) -> None:
        """Validate a message's frame lengths (count already checked)."""
        if lengths[0] > self.max_header_bytes:
            raise ProtocolError(
                f"header frame of {lengths[0]} bytes exceeds the limit of "
                f"{self.max_header_bytes} bytes (wrap large payloads with serialize())"
            )
        total = sum(lengths)
        if total > self.max_message_bytes:
            raise ProtocolError(
                f"message of {total} bytes exceeds the limit of "
                f"{self.max_message_bytes} bytes (option comm.max-message-bytes)"
            )


DEFAULT_LIMITS = FrameLimits()


def frame_lengths(frames: Sequence[Frame]) -> list[int]:
    """Byte length of each frame."""
    return [f.nbytes if isinstance(f, memoryview) else len(f) for f in frames]


def frame_prefix(frames: Sequence[Frame], limits: FrameLimits = DEFAULT_LIMITS) -> bytes:
    """The wire prefix (frame count and lengths) announcing ``frames``.

    Raises :class:`ProtocolError` when the message would break ``limits``.
    """
    if len(frames) == 1:  # fast path: a header-only message
        header = frames[0]
        size = header.nbytes if isinstance(header, memoryview) else len(header)
        if size <= limits.max_header_bytes and size <= limits.max_message_bytes:
            return _PREFIX_1.pack(1, size)
    limits.check_count(len(frames))
    lengths = frame_lengths(frames)
    limits.check_lengths(lengths)
    return struct.pack(f"<{len(lengths) + 1}Q", len(lengths), *lengths)


def encode_frames(frames: Sequence[Frame], limits: FrameLimits = DEFAULT_LIMITS) -> bytes:
    """The complete wire bytes of one message (copies; for tests and tiny messages)."""
    return frame_prefix(frames, limits) + b"".join(frames)


def allocate_frame(length: int) -> memoryview:
    """A writable buffer for a large incoming frame.

    ``bytearray(n)`` zero-fills its memory, faulting in 4 KiB pages one at a
    time (200 MB: 48,829 faults, 70-80 ms of CPU here).  Huge frames instead
    get an anonymous mapping pre-faulted in one system call (``MAP_POPULATE``:
    37-48 ms).  They deliberately do not ask for transparent huge pages
    (``MADV_HUGEPAGE``): a huge page needs a free 2 MiB block, and in a
    virtual machine those are mostly guest memory the host has never backed,
    so the first fault of each costs the host's allocation too: 200 MB took
    226-452 ms of system time in 2 of 5 fresh processes (19-25 ms in the
    others), and the receiver of a fresh cluster's first 200 MB spent
    470-550 ms of CPU against 50-70 ms for the next.  4 KiB pages come from
    the small free blocks recently released, which are usually backed already
    (docs/performance.md, "Cold transfers").
    """
    if length >= PREFAULT_FRAME and _MAP_POPULATE:
        return memoryview(prefaulted_mapping(length))
    return memoryview(bytearray(length))


def prefaulted_mapping(length: int) -> mmap.mmap:
    """A private anonymous mapping of ``length`` bytes, its 4 KiB pages faulted
    in at once where the system can (``MAP_POPULATE``, Linux), else on first touch."""
    if _MAP_POPULATE:
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_POPULATE
        return mmap.mmap(-1, length, flags=flags)
    return mmap.mmap(-1, length)


class FrameParser:
    """Incremental decoder of the byte stream into messages (lists of frames).

    Use like an ``asyncio.BufferedProtocol``: write up to ``len(get_buffer())``
    bytes into the returned buffer, then call ``buffer_updated(n)``; completed
    messages are appended to ``messages`` (a deque, possibly the caller's own).  Small frames are
    ``bytes``; large ones are ``memoryview`` objects over a writable
    ``bytearray`` or mapping, from ``allocate(length)`` (default
    :func:`allocate_frame`; a comm passes its process's receive pool).  After a
    :class:`ProtocolError` the parser must be discarded.
    """

    def __init__(
        self,
        limits: FrameLimits = DEFAULT_LIMITS,
        messages: collections.deque[list[Frame]] | None = None,
        allocate: Callable[[int], memoryview] = allocate_frame,
    ) -> None:
        self.limits = limits
        self._allocate = allocate
        #: Completed messages are appended here (pass your own queue to share it).
        self.messages: collections.deque[list[Frame]] = (
            collections.deque() if messages is None else messages
        )
        self._small_max = min(LARGE_FRAME - 1, limits.max_header_bytes, limits.max_message_bytes)
        self._scratch = bytearray(_SCRATCH_SIZE)
        self._view = memoryview(self._scratch)
        self._start = 0  # unparsed bytes are self._scratch[_start:_end]
        self._end = 0
        self._lengths: list[int] | None = None  # lengths of the message being read
        self._frames: list[Frame] = []  # frames of the message being read, so far
        self._large: memoryview | None = None  # large frame being filled directly
        self._large_filled = 0

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where the next incoming bytes should be written."""
        if self._large is not None:
            return self._large[self._large_filled :]
        if self._end == 0:
            return self._view
        if self._end == len(self._scratch):
            self._compact()
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        """Account for ``nbytes`` written into the last ``get_buffer()``."""
        if self._large is not None:
            self._large_filled += nbytes
            if self._large_filled < len(self._large):
                return
            self._finish_frame(self._large)
            self._large = None
            self._parse()
            return
        start, end = self._start, self._end + nbytes
        if self._lengths is None:
            # Fast path: whole single-frame small messages, parsed in place.
            scratch, view, small_max = self._scratch, self._view, self._small_max
            append = self.messages.append
            while end - start >= 16:
                count, length = _PREFIX_1.unpack_from(scratch, start)
                if count != 1 or length > small_max or end - start < 16 + length:
                    break
                start += 16 + length
                append([bytes(view[start - length : start])])
            if start == end:
                self._start = self._end = 0
                return
        self._start, self._end = start, end
        self._parse()

    def feed(self, data: bytes) -> None:
        """Copy ``data`` in through ``get_buffer``/``buffer_updated`` (for tests)."""
        view = memoryview(data)
        while view:
            buf = self.get_buffer()
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            view = view[n:]
            self.buffer_updated(n)

    def take_messages(self) -> list[list[Frame]]:
        """Return and forget the messages completed so far."""
        messages = list(self.messages)
        self.messages.clear()
        return messages

    def at_boundary(self) -> bool:
        """True when no partial message is buffered (a clean place for EOF)."""
        return self._start == self._end and self._lengths is None and self._large is None

    def pending_description(self) -> str:
        """Human description of the partial message, for truncation errors."""
        if self._lengths is None:
            return f"{self._end - self._start} bytes of an incomplete frame prefix"
        return (
            f"message truncated after {len(self._frames)} of {len(self._lengths)} frames"
        )

    # -- internals ---------------------------------------------------------- #

    def _compact(self) -> None:
        n = self._end - self._start
        self._scratch[:n] = self._scratch[self._start : self._end]
        self._start, self._end = 0, n

    def _need(self, n: int) -> bool:
        """Are ``n`` unparsed bytes buffered?  Make room for them if not."""
        if self._end - self._start >= n:
            return True
        if self._start + n > len(self._scratch):
            if n > len(self._scratch):
                self._grow(n)
            self._compact()
        return False

    def _grow(self, n: int) -> None:
        # Only frame-length tables can need this (at most 8 * max_frames bytes).
        scratch = bytearray(n)
        scratch[: self._end - self._start] = self._scratch[self._start : self._end]
        self._scratch, self._view = scratch, memoryview(scratch)
        self._start, self._end = 0, self._end - self._start

    def _parse(self) -> None:
        while True:
            if self._lengths is None:
                if not self._need(8):
                    return
                (count,) = _U64.unpack_from(self._scratch, self._start)
                self.limits.check_count(count)
                if not self._need(8 + 8 * count):
                    return
                lengths = list(struct.unpack_from(f"<{count}Q", self._scratch, self._start + 8))
                self.limits.check_lengths(lengths)
                self._start += 8 + 8 * count
                self._lengths = lengths
                self._frames = []
                if self._start == self._end:
                    self._start = self._end = 0
            length = self._lengths[len(self._frames)]
            if length >= LARGE_FRAME:
                self._start_large(length)
                if self._large is not None:
                    return
            else:
                if not self._need(length):
                    return
                frame = bytes(self._view[self._start : self._start + length])
                self._start += length
                if self._start == self._end:
                    self._start = self._end = 0
                self._finish_frame(frame)

    def _start_large(self, length: int) -> None:
        buf = self._allocate(length)
        have = min(self._end - self._start, length)
        buf[:have] = self._view[self._start : self._start + have]
        self._start += have
        if self._start == self._end:
            self._start = self._end = 0
        if have == length:
            self._finish_frame(buf)
        else:
            self._large, self._large_filled = buf, have

    def _finish_frame(self, frame: Frame) -> None:
        assert self._lengths is not None
        self._frames.append(frame)
        if len(self._frames) == len(self._lengths):
            self.messages.append(self._frames)
            self._frames = []
            self._lengths = None
