"""The taskmill wire protocol: pure functions over bytes, no sockets.

* :mod:`~taskmill.protocol.serialize`: pickle protocol 5 payloads (``Serialized``)
* :mod:`~taskmill.protocol.messages`: msgpack message headers referencing payload frames
* :mod:`~taskmill.protocol.framing`: frames on a byte stream, with hard limits

See ``docs/protocol.md`` for the exact wire format.
"""

from taskmill.protocol.framing import (
    DEFAULT_LIMITS,
    MAX_FRAMES,
    MAX_HEADER_BYTES,
    MAX_MESSAGE_BYTES,
    FrameLimits,
    FrameParser,
    ProtocolError,
    encode_frames,
    frame_prefix,
)
from taskmill.protocol.messages import (
    RemoteTraceback,
    dumps,
    error_reply,
    exception_from_reply,
    loads,
)
from taskmill.protocol.serialize import (
    Frame,
    SerializationError,
    Serialized,
    serialize,
    serialize_function,
)

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_FRAMES",
    "MAX_HEADER_BYTES",
    "MAX_MESSAGE_BYTES",
    "Frame",
    "FrameLimits",
    "FrameParser",
    "ProtocolError",
    "RemoteTraceback",
    "SerializationError",
    "Serialized",
    "dumps",
    "encode_frames",
    "error_reply",
    "exception_from_reply",
    "frame_prefix",
    "loads",
    "serialize",
    "serialize_function",
]
