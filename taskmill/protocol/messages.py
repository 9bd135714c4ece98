"""Messages: msgpack headers with opaque payload frames, and reply conventions.

Theory of operation
-------------------
``dumps(msg)`` encodes a message (dicts, lists, tuples, str, int, float, bool,
None, bytes) with msgpack into a header frame.  A :class:`Serialized` anywhere
inside is *not* re-pickled: its frames are appended after the header and the
header holds a msgpack ``ExtType(1, <uint32 index, uint32 count>)`` in its
place, where ``index`` counts frames from the start of the message (the header
is frame 0).  ``loads(frames)`` rebuilds the message with ``Serialized``
objects (slices of the received frame list, never unpickled) in place.

Decoding rules: tuples come back as lists, except inside dict keys, where
arrays come back as tuples so that keys like ``("x", 0)`` survive.  ``bytes``
values are copied into the header; use ``serialize()`` for large payloads
(zero-copy on both sides).  Anything else is a ``TypeError`` at ``dumps``.

The request/reply convention lives here too, as pure functions:
``error_reply(exc)`` builds ``{"status": "error", ...}`` and
``exception_from_reply(reply)`` turns it back into the original exception with
the remote traceback as ``__cause__`` (as ``concurrent.futures`` does).
"""

from __future__ import annotations

import struct
import threading
import traceback
from collections.abc import Sequence
from typing import Any

import msgpack

from taskmill.protocol.framing import ProtocolError
from taskmill.protocol.serialize import Frame, SerializationError, Serialized, serialize

EXT_SERIALIZED = 1  # a payload in frames of its own: (first frame index, frame count)
EXT_INLINE = 2  # a small one-frame payload carried inside the header itself
# Payloads up to this size ride in the header: a message of 20,000 small task
# arguments is then one frame, not 20,001, and costs no per-frame overhead.
INLINE_LIMIT = 4096
_EXT_REF = struct.Struct("<II")


class _Encoder(threading.local):
    """A reusable msgpack packer per thread (creating one costs more than packing)."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.packer = msgpack.Packer(default=self.default, use_bin_type=True)

    def default(self, obj: Any) -> msgpack.ExtType:
        if isinstance(obj, Serialized):
            if len(obj.frames) == 1 and len(obj.frames[0]) <= INLINE_LIMIT:
                return msgpack.ExtType(EXT_INLINE, bytes(obj.frames[0]))
            ref = _EXT_REF.pack(len(self.frames), len(obj.frames))
            self.frames.extend(obj.frames)
            return msgpack.ExtType(EXT_SERIALIZED, ref)
        raise TypeError(
            f"cannot encode {type(obj).__qualname__} object in a message; "
            "wrap it with taskmill.protocol.serialize()"
        )


_encoder = _Encoder()
_NO_FRAMES: list[Frame] = []  # an encoder's frames between messages (it only packs inside dumps)


def dumps(msg: Any) -> list[Frame]:
    """Encode ``msg`` into frames: a msgpack header, then any payload frames."""
    encoder = _encoder
    frames: list[Frame] = [b""]
    encoder.frames = frames
    frames[0] = encoder.packer.pack(msg)
    encoder.frames = _NO_FRAMES  # the thread must not keep the payload past the message
    return frames


def loads(frames: Sequence[Frame]) -> Any:
    """Decode frames made by :func:`dumps`; ``Serialized`` values stay opaque.

    Raises :class:`ProtocolError` when the frames are not a valid message.
    """
    if not frames:
        raise ProtocolError("a message needs at least one (header) frame, got 0")

    def ext_hook(code: int, data: bytes) -> Serialized:
        if code == EXT_INLINE:
            return Serialized([data])
        if code != EXT_SERIALIZED or len(data) != _EXT_REF.size:
            raise ProtocolError(f"unknown msgpack extension type {code}")
        index, count = _EXT_REF.unpack(data)
        if index < 1 or index + count > len(frames):
            raise ProtocolError(
                f"payload reference to frames {index}..{index + count - 1} "
                f"outside the message's {len(frames)} frames"
            )
        return Serialized(list(frames[index : index + count]))

    try:
        try:
            return msgpack.unpackb(frames[0], ext_hook=ext_hook, strict_map_key=False)
        except TypeError:  # an array used as a map key: rebuild keys as tuples
            return msgpack.unpackb(
                frames[0],
                ext_hook=ext_hook,
                strict_map_key=False,
                object_pairs_hook=_dict_with_tuple_keys,
            )
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(f"malformed message header: {exc!r}") from exc


def _hashable(key: Any) -> Any:
    return tuple(map(_hashable, key)) if isinstance(key, list) else key


def _dict_with_tuple_keys(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    return {_hashable(k): v for k, v in pairs}


class RemoteTraceback(Exception):
    """The ``__cause__`` of a re-raised remote exception: the remote traceback text."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


def error_reply(exc: BaseException) -> dict[str, Any]:
    """The reply reporting that a request raised ``exc``.

    ``exception`` is the pickled exception; when the exception itself cannot be
    pickled, a ``RuntimeError`` carrying its type name and text stands in.
    """
    text = str(exc)
    try:
        payload = serialize(exc)
    except SerializationError:
        payload = serialize(RuntimeError(f"{type(exc).__qualname__}: {text}"))
    return {
        "status": "error",
        "exception": payload,
        "text": text,
        "traceback": "".join(traceback.format_exception(exc)),
    }


def exception_from_reply(reply: dict[str, Any]) -> BaseException:
    """The original exception of an error reply, with the remote traceback as cause."""
    exc: BaseException
    payload = reply.get("exception")
    try:
        if not isinstance(payload, Serialized):
            raise TypeError(f"error reply carries no exception payload: {payload!r}")
        exc = payload.deserialize()
        if not isinstance(exc, BaseException):
            raise TypeError(f"error reply payload is a {type(exc).__qualname__}")
    except Exception as problem:
        exc = RuntimeError(f"{reply.get('text', 'remote error')} ({problem})")
    tb = reply.get("traceback")
    if isinstance(tb, str) and tb:
        exc.__cause__ = RemoteTraceback(tb)
    return exc
