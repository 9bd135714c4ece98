"""Pickling of opaque payloads into frames, without copying large buffers.

Theory of operation
-------------------
``serialize(obj)`` pickles with protocol 5 and a ``buffer_callback``: every
object that supports out-of-band pickling (numpy arrays, pandas blocks,
``pickle.PickleBuffer``; also a top-level large ``bytes``/``bytearray`` or a
``memoryview``) hands its memory to the callback
instead of being copied into the pickle stream.  The result is a
:class:`Serialized`: frame 0 is the pickle stream, frames 1.. are memoryviews
of the original buffers (zero copies).  ``Serialized.deserialize()`` passes the
frames back to ``pickle.loads(..., buffers=...)``, so a received array is a view
of the received frame (again zero copies).

Plain ``pickle`` is tried first (fast, C).  Objects it cannot pickle (lambdas,
closures) and objects pickled *by reference to ``__main__``* (which would not
import on another machine) go through ``cloudpickle`` instead.  When both fail,
:class:`SerializationError` names the object and the reason.

A ``Serialized`` is what the scheduler stores and forwards without ever
unpickling it; it pickles itself with its frames out-of-band, so it can be
nested inside another pickled object.

``serialize_function`` adds a cache keyed by the function object, so sending
the same function for the 100,000th time costs a dictionary lookup.  The cache
holds the payload as it was when first serialized: a closure whose captured
state changes afterwards is not re-serialized.
"""

from __future__ import annotations

import hashlib
import operator
import pickle
import threading
import weakref
from collections import OrderedDict
from typing import Any, Callable, SupportsIndex

import cloudpickle

Frame = bytes | bytearray | memoryview

#: ``bytes`` and ``bytearray`` objects at least this large (and memoryviews of
#: any size) are pickled out-of-band when passed to ``serialize`` directly.
LARGE_BYTES = 64 * 1024

_REPR_LIMIT = 100
_FUNCTION_LRU_SIZE = 256


#: How payloads are unpickled: ``pickle.loads``, except in a worker process
#: while its warm-up thread imports heavy modules (:mod:`taskmill.server.warmup`
#: swaps in a loader that waits for those imports rather than race them).
_loads: Callable[..., Any] = pickle.loads


def set_loads(loads: Callable[..., Any] | None) -> None:
    """Unpickle payloads with ``loads`` from now on (``None``: ``pickle.loads``)."""
    global _loads
    _loads = pickle.loads if loads is None else loads


class SerializationError(TypeError):
    """An object could be pickled neither by ``pickle`` nor by ``cloudpickle``."""


class Serialized:
    """An opaque pickled payload: frames that ``deserialize()`` turns back into
    the object.

    ``frames[0]`` is the pickle protocol-5 stream; ``frames[1:]`` are its
    out-of-band buffers.  Holding and forwarding a ``Serialized`` never
    unpickles it.
    """

    __slots__ = ("frames",)

    def __init__(self, frames: list[Frame]) -> None:
        self.frames: list[Frame] = frames if type(frames) is list else list(frames)

    @property
    def nbytes(self) -> int:
        """Total size of the frames in bytes."""
        return sum(len(f) if type(f) is bytes else memoryview(f).nbytes for f in self.frames)

    def owned(self) -> Serialized:
        """This payload, or a copy of it whose frames are private ``bytes``
        when some frame may share memory with another object (an out-of-band
        buffer of a numpy array, say)."""
        frames = self.frames
        if all(type(f) is bytes for f in frames):
            return self
        return Serialized([f if type(f) is bytes else bytes(f) for f in frames])

    def deserialize(self) -> Any:
        """Unpickle the payload; out-of-band buffers are used in place (small
        read-only ones are copied, so arrays come back writeable as they went)."""
        return _loads(self.frames[0], buffers=[_writable(f) for f in self.frames[1:]])

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        if operator.index(protocol) >= 5:
            frames: list[Any] = [_as_pickle_buffer(f) for f in self.frames]
        else:
            frames = [bytes(f) for f in self.frames]
        return (Serialized, (frames,))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Serialized):
            return NotImplemented
        return len(self.frames) == len(other.frames) and all(
            memoryview(a).cast("B") == memoryview(b).cast("B")
            for a, b in zip(self.frames, other.frames)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Serialized: {len(self.frames)} frames, {self.nbytes} bytes>"


def _writable(frame: Frame) -> Frame:
    return bytearray(frame) if memoryview(frame).readonly else frame


def _as_pickle_buffer(frame: Frame) -> pickle.PickleBuffer | bytes:
    view = memoryview(frame)
    return pickle.PickleBuffer(view) if view.contiguous else view.tobytes()


class _RawBuffer:
    """Pickles a bytes-like object out-of-band; unpickles to its original type."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = data

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self.data), (pickle.PickleBuffer(self.data),))


def _buffer_frame(buf: pickle.PickleBuffer) -> Frame:
    try:
        return buf.raw()
    except BufferError:  # non-contiguous: one copy is unavoidable
        return memoryview(buf).tobytes()


def _describe(obj: Any) -> str:
    try:
        text = repr(obj)
    except Exception:  # a broken __repr__ must not hide the real error
        text = f"<{type(obj).__qualname__} object>"
    if len(text) > _REPR_LIMIT:
        text = text[:_REPR_LIMIT] + "...>"
    return text


def _dump(dumps: Callable[..., bytes], obj: Any) -> Serialized:
    buffers: list[pickle.PickleBuffer] = []
    header = dumps(obj, protocol=5, buffer_callback=buffers.append)
    return Serialized([header, *map(_buffer_frame, buffers)])


def serialize(obj: Any) -> Serialized:
    """Pickle ``obj`` into a :class:`Serialized` with zero-copy buffers.

    Raises :class:`SerializationError` (a ``TypeError``) naming the object's
    type, a truncated repr and the reason when it cannot be pickled.
    """
    kind = type(obj)
    if kind is memoryview or (kind in (bytes, bytearray) and len(obj) >= LARGE_BYTES):
        obj = _RawBuffer(obj)
    try:
        result = _dump(pickle.dumps, obj)
        if b"__main__" not in result.frames[0]:
            return result
    except Exception:
        pass
    try:
        return _dump(cloudpickle.dumps, obj)
    except Exception as exc:
        raise SerializationError(f"cannot serialize {_describe(obj)}: {exc}") from exc


class _FunctionCache:
    """Serialized functions keyed by the function object.

    Weakly referenceable callables live in a ``WeakKeyDictionary`` (entries go
    away with the function); others in a small LRU keyed by ``id`` that keeps
    the object alive so the id cannot be reused while cached.
    """

    def __init__(self, lru_size: int) -> None:
        self._weak: weakref.WeakKeyDictionary[Any, tuple[str, Serialized]] = (
            weakref.WeakKeyDictionary()
        )
        self._lru: OrderedDict[int, tuple[Any, str, Serialized]] = OrderedDict()
        self._lru_size = lru_size
        self._lock = threading.Lock()

    def get(self, fn: Any) -> tuple[str, Serialized] | None:
        with self._lock:
            try:
                return self._weak.get(fn)
            except TypeError:  # not weakly referenceable, or unhashable
                entry = self._lru.get(id(fn))
                if entry is None:
                    return None
                self._lru.move_to_end(id(fn))
                return entry[1], entry[2]

    def put(self, fn: Any, value: tuple[str, Serialized]) -> None:
        with self._lock:
            try:
                self._weak[fn] = value
            except TypeError:
                self._lru[id(fn)] = (fn, *value)
                if len(self._lru) > self._lru_size:
                    self._lru.popitem(last=False)


_function_cache = _FunctionCache(_FUNCTION_LRU_SIZE)


def serialize_function(fn: Callable[..., Any]) -> tuple[str, Serialized]:
    """Cloudpickle ``fn`` once; return ``(token, payload)``.

    The token is a 32-hex-digit digest of the pickled bytes, so equal functions
    get equal tokens and a receiver can cache deserialized functions by token.
    Repeated calls with the same function object hit a cache.
    """
    cached = _function_cache.get(fn)
    if cached is not None:
        return cached
    try:
        payload = _dump(cloudpickle.dumps, fn)
    except Exception as exc:
        raise SerializationError(f"cannot serialize {_describe(fn)}: {exc}") from exc
    digest = hashlib.blake2b(digest_size=16)
    for frame in payload.frames:
        digest.update(frame)
    value = (digest.hexdigest(), payload)
    _function_cache.put(fn, value)
    return value
