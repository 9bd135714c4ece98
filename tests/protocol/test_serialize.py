"""Serialized payloads: zero-copy buffers, cloudpickle fallback, clear errors."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest

from taskmill.protocol import SerializationError, Serialized, serialize, serialize_function

pytestmark = pytest.mark.timeout(10)


def test_numpy_array_is_zero_copy_on_both_sides() -> None:
    arr = np.arange(100_000, dtype="f8")
    ser = serialize(arr)
    assert len(ser.frames) == 2
    frame = ser.frames[1]
    assert isinstance(frame, memoryview)
    assert np.shares_memory(np.frombuffer(frame, dtype="f8"), arr)
    out = ser.deserialize()
    assert np.shares_memory(out, arr)
    assert ser.nbytes >= arr.nbytes


def test_pandas_and_bytearray_buffers_go_out_of_band() -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": np.arange(10_000), "b": np.ones(10_000)})
    ser = serialize(df)
    assert len(ser.frames) >= 2
    pd.testing.assert_frame_equal(ser.deserialize(), df)
    data = bytearray(b"x" * 100_000)
    ser = serialize(data)
    assert len(ser.frames) == 2 and ser.deserialize() == data


def test_large_bytes_are_not_copied_into_the_pickle_stream() -> None:
    data = b"y" * 1_000_000
    ser = serialize(data)
    assert len(ser.frames[0]) < 1000
    assert ser.frames[1].obj is data  # type: ignore[union-attr]
    out = ser.deserialize()
    assert type(out) is bytes and out == data


def test_lambdas_and_closures_fall_back_to_cloudpickle() -> None:
    offset = 10
    assert serialize(lambda x: x + offset).deserialize()(1) == 11

    class Local:
        def value(self) -> int:
            return 42

    assert serialize(Local()).deserialize().value() == 42


def test_serialization_error_names_the_object_and_the_reason() -> None:
    lock = threading.Lock()
    with pytest.raises(SerializationError) as info:
        serialize({"lock": lock})
    message = str(info.value)
    assert message.startswith("cannot serialize {'lock': <unlocked _thread.lock object")
    assert "cannot pickle '_thread.lock' object" in message
    assert isinstance(info.value, TypeError)


def test_serialization_error_truncates_long_reprs() -> None:
    with pytest.raises(SerializationError) as info:
        serialize([threading.Lock()] + list(range(1000)))
    assert len(str(info.value)) < 300


def test_serialized_is_picklable_and_nestable() -> None:
    inner = serialize(np.arange(1000))
    outer = serialize({"inner": inner})
    assert len(outer.frames) == 3  # the inner frames travel out-of-band
    restored = outer.deserialize()["inner"]
    assert isinstance(restored, Serialized)
    np.testing.assert_array_equal(restored.deserialize(), np.arange(1000))
    in_band = pickle.loads(pickle.dumps(inner, protocol=4))
    assert in_band == inner


def test_serialize_function_caches_and_tokens_are_stable() -> None:
    def double(x: int) -> int:
        return 2 * x

    token, payload = serialize_function(double)
    assert serialize_function(double)[1] is payload
    assert len(token) == 32 and int(token, 16) >= 0
    assert payload.deserialize()(4) == 8
    other_token, _ = serialize_function(lambda x: x)
    assert other_token != token


def test_serialize_function_handles_non_weakrefable_callables() -> None:
    token, payload = serialize_function(len)
    assert serialize_function(len) == (token, payload)
    assert payload.deserialize() is len


def test_serialize_function_error() -> None:
    class Bad:
        def __call__(self) -> None: ...

        def __reduce__(self) -> str:
            raise RuntimeError("no way")

    with pytest.raises(SerializationError, match="no way"):
        serialize_function(Bad())


def test_memoryview_round_trips_zero_copy() -> None:
    data = bytearray(b"abc" * 10)
    ser = serialize(memoryview(data))
    out = ser.deserialize()
    assert isinstance(out, memoryview) and out == data


def test_owned_copies_out_of_band_frames_and_keeps_in_band_ones() -> None:
    arr = np.arange(1000, dtype="i8")
    payload = serialize(arr)
    assert len(payload.frames) == 2 and type(payload.frames[1]) is not bytes
    owned = payload.owned()
    assert owned is not payload and all(type(f) is bytes for f in owned.frames)
    assert owned.frames[0] is payload.frames[0]
    arr[:] = -1  # the user changes the array after pickling it
    assert (owned.deserialize() == np.arange(1000)).all()
    assert (payload.deserialize() == -1).all()  # the view shares the user's memory
    small = serialize((1, "two"))
    assert small.owned() is small
