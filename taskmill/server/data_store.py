"""The worker's data store: values in memory, the least recently used ones
spilled to disk when memory runs short.

Theory of operation
-------------------
:class:`DataStore` is a ``MutableMapping`` from key to value.  With a target
of 0 it is a plain dict.  Otherwise it is a :class:`zict.Buffer`: a *fast*
LRU dict in memory over a *slow* mapping of files on disk
(:class:`SpillFiles`).  Each value is weighed once, with
:func:`~taskmill.server.sizeof.sizeof`, when it is stored.  When the weight
in memory plus ``offset`` passes ``target`` bytes, the least recently used
values are pickled (protocol 5, :func:`taskmill.protocol.serialize`) into one
file each and dropped from memory; reading a spilled key loads it back (and it
becomes the most recently used).  ``offset`` is the process's *unmanaged*
memory (RSS minus the bytes of values in memory), kept up to date by the
worker's memory monitor, so the target applies to the whole process and not
only to the values we know of.

The monitor can also spill explicitly (:meth:`DataStore.evict`) when the
process's RSS is high for reasons the weights do not see.

``get_serialized(key)`` gives the pickled form of a value; for a spilled key
it is read from its file without unpickling and without bringing the value
back into memory, so serving data to peers does not refill memory.

Only the worker's event loop thread uses a store (no locking of our own;
zict's own locks are harmless).  Files live under ``directory``, which
:meth:`DataStore.close` removes.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
from collections.abc import Iterator, MutableMapping
from typing import Any

import zict

from taskmill.protocol import Serialized, serialize
from taskmill.server.sizeof import sizeof

logger = logging.getLogger("taskmill.worker")

_COUNT = struct.Struct("!I")
_LENGTH = struct.Struct("!Q")


class SpillFiles(MutableMapping[str, Any]):
    """Values pickled into one file each under ``directory`` (created lazily).

    File names are a counter (keys can be long or contain any character);
    a file holds the frame count, the frame lengths, then the frames of the
    value's :class:`~taskmill.protocol.Serialized` form.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._files: dict[str, tuple[str, int]] = {}  # key -> (path, bytes on disk)
        self._counter = 0
        self.disk_bytes = 0

    def __setitem__(self, key: str, value: Any) -> None:
        frames = serialize(value).frames
        if key in self._files:
            del self[key]
        os.makedirs(self.directory, exist_ok=True)
        self._counter += 1
        path = os.path.join(self.directory, f"{self._counter}.pkl")
        header = _COUNT.pack(len(frames)) + b"".join(
            _LENGTH.pack(memoryview(f).nbytes) for f in frames)
        try:
            with open(path, "wb") as fh:
                fh.write(header)
                for frame in frames:
                    fh.write(frame)
                size = fh.tell()
        except BaseException:
            try:
                os.remove(path)
            except OSError:
                pass
            raise
        self._files[key] = (path, size)
        self.disk_bytes += size

    def get_serialized(self, key: str) -> Serialized:
        """The stored frames, without unpickling them."""
        path, size = self._files[key]
        buf = bytearray(size)
        with open(path, "rb") as fh:
            if fh.readinto(buf) != size:
                raise OSError(f"spill file {path} of {key!r} is truncated")
        view = memoryview(buf)
        (n,) = _COUNT.unpack_from(view, 0)
        pos = _COUNT.size
        lengths = [_LENGTH.unpack_from(view, pos + i * _LENGTH.size)[0] for i in range(n)]
        pos += n * _LENGTH.size
        frames: list[Any] = []
        for length in lengths:
            frames.append(view[pos:pos + length])
            pos += length
        return Serialized(frames)

    def __getitem__(self, key: str) -> Any:
        return self.get_serialized(key).deserialize()

    def __delitem__(self, key: str) -> None:
        path, size = self._files.pop(key)
        self.disk_bytes -= size
        try:
            os.remove(path)
        except FileNotFoundError:
            pass

    def __contains__(self, key: object) -> bool:
        return key in self._files

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def clear(self) -> None:
        for key in list(self._files):
            del self[key]


class DataStore(MutableMapping[str, Any]):
    """Values by key, spilling the least recently used to ``directory``
    when ``target`` bytes (plus ``offset``) would be exceeded; ``target=0``:
    never spill.

    Figures: ``memory_bytes`` (weight of the values in memory),
    ``spilled_bytes`` (their weight when in memory, of the values on disk),
    ``disk_bytes`` (file sizes), ``spill_count`` (values spilled so far).
    """

    def __init__(self, directory: str, target: int = 0) -> None:
        self.directory = directory
        self.target = target
        self.nbytes: dict[str, int] = {}
        self.spilled_bytes = 0
        self.spill_count = 0
        self._plain_bytes = 0  # weight held when not spilling (plain dict)
        self._files: SpillFiles | None = None
        self._buffer: zict.Buffer[str, Any] | None = None
        self._dict: dict[str, Any] | MutableMapping[str, Any]
        if target > 0:
            self._files = SpillFiles(directory)
            self._buffer = zict.Buffer(
                {}, self._files, target, weight=self._weight,
                fast_to_slow_callbacks=[self._spilled], slow_to_fast_callbacks=[self._unspilled])
            self._dict = self._buffer
        else:
            self._dict = {}

    # weights and figures ------------------------------------------------ #
    def _weight(self, key: str, value: Any) -> int:
        return self.nbytes[key]

    def _spilled(self, key: str, value: Any) -> None:
        self.spilled_bytes += self.nbytes[key]
        self.spill_count += 1

    def _unspilled(self, key: str, value: Any) -> None:
        self.spilled_bytes -= self.nbytes[key]

    @property
    def memory_bytes(self) -> int:
        """Total weight of the values held in memory."""
        if self._buffer is None:
            return self._plain_bytes
        return int(self._buffer.fast.total_weight)

    @property
    def disk_bytes(self) -> int:
        return self._files.disk_bytes if self._files is not None else 0

    @property
    def offset(self) -> int:
        """Bytes counted against ``target`` besides the values (unmanaged memory)."""
        return int(self._buffer.offset) if self._buffer is not None else 0

    @offset.setter
    def offset(self, value: int) -> None:
        if self._buffer is not None:
            self._buffer.offset = max(0, value)

    def is_spilled(self, key: str) -> bool:
        return self._files is not None and key in self._files

    # the mapping -------------------------------------------------------- #
    def put(self, key: str, value: Any, nbytes: int | None = None) -> int:
        """Store ``value`` (weighed with ``sizeof`` unless given); return its weight.

        A value that cannot be spilled (unpicklable, disk full) stays in
        memory; the failure is logged."""
        if nbytes is None:
            nbytes = sizeof(value)
        if key in self.nbytes:
            del self[key]
        self.nbytes[key] = nbytes
        if self._buffer is None:
            self._plain_bytes += nbytes
            self._dict[key] = value
            return nbytes
        try:  # a new key: straight into the in-memory LRU, which spills others if need be
            self._buffer.fast[key] = value
        except Exception as exc:
            logger.warning("could not spill to %s (%s: %s): keeping the data in memory",
                           self.directory, type(exc).__name__, exc)
            if key not in self._dict:  # not stored at all: keep it in memory
                assert self._buffer is not None
                self._buffer.fast.set_noevict(key, value)
        return nbytes

    def __setitem__(self, key: str, value: Any) -> None:
        self.put(key, value)

    def __getitem__(self, key: str) -> Any:
        return self._dict[key]

    def __delitem__(self, key: str) -> None:
        nbytes = self.nbytes.pop(key)
        if self._buffer is None:
            del self._dict[key]
            self._plain_bytes -= nbytes
        elif self.is_spilled(key):
            self.spilled_bytes -= nbytes
            del self._buffer.slow[key]
        else:
            del self._buffer.fast[key]

    def __contains__(self, key: object) -> bool:
        return key in self.nbytes

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._dict)

    def clear(self) -> None:
        for key in list(self._dict):
            del self[key]

    def discard(self, key: str) -> None:
        """Drop ``key`` if present (a spilled value is not loaded to do so)."""
        if key in self.nbytes:
            del self[key]

    def get_serialized(self, key: str) -> Serialized:
        """The pickled value; read from disk as is when spilled."""
        if self._files is not None and key in self._files:
            return self._files.get_serialized(key)
        return serialize(self._dict[key])

    def evict(self) -> int:
        """Spill the least recently used value held in memory; return its
        weight, or -1 when nothing is left in memory to spill."""
        if self._buffer is None:
            return -1
        fast = self._buffer.fast
        while len(fast):
            try:
                key, _, weight = fast.evict()
            except KeyError:
                return -1
            except Exception as exc:  # unpicklable, disk full: keep it, stop trying
                logger.warning("could not spill to %s (%s: %s)", self.directory,
                               type(exc).__name__, exc)
                return -1
            if key is not None:
                return int(weight)
        return -1

    def close(self) -> None:
        """Drop everything and remove the spill directory."""
        self._dict.clear()
        self.nbytes.clear()
        self.spilled_bytes = self._plain_bytes = 0
        shutil.rmtree(self.directory, ignore_errors=True)
