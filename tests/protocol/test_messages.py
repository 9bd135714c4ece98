"""dumps/loads: msgpack headers, Serialized payloads as frames, reply conventions."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from taskmill.protocol import (
    ProtocolError,
    RemoteTraceback,
    Serialized,
    dumps,
    error_reply,
    exception_from_reply,
    loads,
    serialize,
)

pytestmark = pytest.mark.timeout(10)


def test_plain_message_round_trip_tuples_become_lists() -> None:
    msg = {"op": "x", "n": 1, "f": 1.5, "b": b"raw", "none": None, "t": (1, (2, 3)), "ok": True}
    frames = dumps(msg)
    assert len(frames) == 1
    out = loads(frames)
    assert out == {**msg, "t": [1, [2, 3]]}


def test_tuple_dict_keys_survive_as_tuples() -> None:
    out = loads(dumps({"who_has": {("x", 0): ["a"], ("y", (1, 2)): [], "z": []}}))
    assert out["who_has"] == {("x", 0): ["a"], ("y", (1, 2)): [], "z": []}


def test_serialized_values_become_frames_and_stay_opaque() -> None:
    arr = np.arange(50_000)
    a, b = serialize(arr), serialize("small")
    frames = dumps({"op": "put", "data": [a, {"deep": b}], "again": a})
    assert len(frames) == 1 + 2 + 2  # the small payload rides inside the header
    assert frames[1] is a.frames[0] and frames[2] is a.frames[1]  # not re-pickled
    out = loads(frames)
    data = out["data"][0]
    assert isinstance(data, Serialized) and isinstance(out["data"][1]["deep"], Serialized)
    assert data.frames[1] is frames[2]
    np.testing.assert_array_equal(data.deserialize(), arr)
    assert out["data"][1]["deep"].deserialize() == "small"


def test_many_small_payloads_stay_one_frame() -> None:
    payloads = [serialize(i) for i in range(20_000)]
    frames = dumps({"op": "update-graph", "args": payloads})
    assert len(frames) == 1
    out = loads(frames)["args"]
    assert [p.deserialize() for p in out[:3]] == [0, 1, 2] and out[-1].deserialize() == 19_999


def test_unencodable_objects_raise_type_error_naming_the_type() -> None:
    with pytest.raises(TypeError, match="cannot encode object object.*serialize"):
        dumps({"x": object()})


@pytest.mark.parametrize(
    "frames",
    [
        [],
        [b"\xc1"],  # never-used msgpack byte
        [msgpack.packb(msgpack.ExtType(7, b"??"))],
        [msgpack.packb(msgpack.ExtType(1, b"\x05\x00\x00\x00\x01\x00\x00\x00"))],
        [msgpack.packb([1, 2]) + b"trailing"],
    ],
)
def test_malformed_headers_raise_protocol_error(frames: list[bytes]) -> None:
    with pytest.raises(ProtocolError):
        loads(frames)


class CustomError(Exception):
    pass


def test_error_reply_round_trip_keeps_type_and_remote_traceback() -> None:
    try:
        raise CustomError("boom")
    except CustomError as exc:
        reply = loads(dumps(error_reply(exc)))
    assert reply["status"] == "error" and reply["text"] == "boom"
    exc2 = exception_from_reply(reply)
    assert type(exc2) is CustomError and str(exc2) == "boom"
    assert isinstance(exc2.__cause__, RemoteTraceback)
    assert "raise CustomError" in str(exc2.__cause__)


def test_error_reply_of_unpicklable_exception_stands_in_runtime_error() -> None:
    class Local(Exception):
        def __reduce__(self) -> str:
            raise TypeError("nope")

    exc = exception_from_reply(loads(dumps(error_reply(Local("bad")))))
    assert type(exc) is RuntimeError and "Local: bad" in str(exc)


def test_received_array_is_a_view_of_the_received_frame() -> None:
    from taskmill.protocol import FrameParser, encode_frames

    arr = np.arange(100_000, dtype="i8")
    parser = FrameParser()
    parser.feed(encode_frames(dumps({"x": serialize(arr)})))
    (frames,) = parser.take_messages()
    out = loads(frames)["x"].deserialize()
    np.testing.assert_array_equal(out, arr)
    assert np.shares_memory(out, np.frombuffer(frames[2], dtype="u1"))
    assert out.flags.writeable
