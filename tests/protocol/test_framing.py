"""Framing: prefix format, incremental parsing into preallocated buffers, limits."""

from __future__ import annotations

import ctypes
import struct
import sys

import pytest

from taskmill.protocol import FrameLimits, FrameParser, ProtocolError, encode_frames, frame_prefix
from taskmill.protocol.framing import LARGE_FRAME, PREFAULT_FRAME

pytestmark = pytest.mark.timeout(10)


def test_prefix_is_count_then_lengths_little_endian_uint64() -> None:
    assert frame_prefix([b"ab", b"", memoryview(b"xyz")]) == struct.pack("<4Q", 3, 2, 0, 3)


def _parse(data: bytes, chunk: int, limits: FrameLimits = FrameLimits()) -> list[list[bytes]]:
    parser = FrameParser(limits)
    for i in range(0, len(data), chunk):
        parser.feed(data[i : i + chunk])
    assert parser.at_boundary()
    return [[bytes(f) for f in m] for m in parser.take_messages()]


@pytest.mark.parametrize("chunk", [1, 7, 4096, 10**7])
def test_parser_reassembles_messages_from_any_chunking(chunk: int) -> None:
    big = bytes(range(256)) * 2000  # > LARGE_FRAME
    messages = [[b"header"], [b"h", b"", big, b"tail"], [b"x" * 100] * 50, [big]]
    data = b"".join(encode_frames(m) for m in messages)
    assert _parse(data, chunk) == messages


def test_large_frames_land_in_one_writable_buffer() -> None:
    big = b"z" * (3 * LARGE_FRAME + 5)
    parser = FrameParser()
    parser.feed(encode_frames([b"h", big]))
    ((header, frame),) = parser.take_messages()
    assert header == b"h"
    assert isinstance(frame, memoryview) and not frame.readonly and frame == big


def test_too_many_frames() -> None:
    limits = FrameLimits(max_frames=3)
    with pytest.raises(ProtocolError, match="4 frames, more than the limit of 3"):
        frame_prefix([b""] * 4, limits)
    with pytest.raises(ProtocolError, match="4 frames"):
        FrameParser(limits).feed(encode_frames([b""] * 4))


def test_zero_frames_is_an_error() -> None:
    with pytest.raises(ProtocolError, match="at least one"):
        FrameParser().feed(struct.pack("<Q", 0))


def test_oversize_message_is_refused_before_allocation() -> None:
    limits = FrameLimits(max_message_bytes=1000)
    with pytest.raises(ProtocolError, match="exceeds the limit of 1000 bytes"):
        frame_prefix([b"h", b"x" * 1000], limits)
    parser = FrameParser(limits)
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        parser.feed(struct.pack("<3Q", 2, 1, 2**60))  # would be an exabyte


def test_oversize_header_frame() -> None:
    limits = FrameLimits(max_header_bytes=10)
    with pytest.raises(ProtocolError, match="header frame of 11 bytes"):
        frame_prefix([b"x" * 11], limits)


def test_truncated_stream_is_not_at_a_boundary() -> None:
    data = encode_frames([b"header", b"payload" * 10])
    parser = FrameParser()
    parser.feed(data[:-3])
    assert not parser.at_boundary() and parser.take_messages() == []
    assert "truncated after 1 of 2 frames" in parser.pending_description()
    parser.feed(data[-3:])
    assert parser.at_boundary() and len(parser.take_messages()) == 1


def _address(frame: memoryview) -> int:
    anchor = ctypes.c_char.from_buffer(frame)
    try:
        return ctypes.addressof(anchor)
    finally:
        del anchor  # releases its export of the buffer


def _mapping(address: int) -> dict[str, int] | None:
    """The kB counters of ``/proc/self/smaps`` for the mapping holding
    ``address`` (and its size in bytes), or None when nothing is mapped there."""
    with open("/proc/self/smaps") as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        span = line.split(" ", 1)[0]
        if "-" not in span or ":" in span:
            continue
        start, end = (int(x, 16) for x in span.split("-"))
        if start <= address < end:
            counters = {"size_bytes": end - start}
            for row in lines[i + 1:]:
                name, _, rest = row.partition(":")
                if not rest.strip().endswith("kB"):
                    break
                counters[name] = int(rest.split()[0])
            return counters
    return None


def _huge_pages_always() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[always]" in f.read()
    except OSError:
        return False


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")


@linux_only
def test_huge_frame_arrives_intact_in_its_own_resident_small_page_mapping() -> None:
    big = bytes(range(256)) * (PREFAULT_FRAME // 256 + 3)
    parser = FrameParser()
    data = encode_frames([b"h", big])
    for i in range(0, len(data), 1 << 20):  # in pieces, like a socket
        parser.feed(data[i : i + (1 << 20)])
    ((header, frame),) = parser.take_messages()
    assert header == b"h" and isinstance(frame, memoryview) and not frame.readonly
    assert frame == big
    mapping = _mapping(_address(frame))
    assert mapping is not None
    assert mapping["size_bytes"] >= len(big)  # its own mapping, not a heap chunk
    assert mapping["Rss"] * 1024 >= len(big)  # pre-faulted, all resident
    if not _huge_pages_always():  # else the kernel picks huge pages whatever we ask
        assert mapping.get("AnonHugePages", 0) == 0  # small pages: no dear huge-page first faults


@linux_only
def test_huge_frame_mappings_are_released_with_their_frames() -> None:
    parser = FrameParser()
    payload = b"q" * (PREFAULT_FRAME + 1)
    for _ in range(3):
        parser.feed(encode_frames([b"h", payload, payload]))
        ((_, first, second),) = parser.take_messages()
        assert first == payload and second == payload
        addresses = [_address(first), _address(second)]
        assert all(_mapping(a) is not None for a in addresses)
        del first, second
        assert [_mapping(a) for a in addresses] == [None, None]  # unmapped, nothing leaked
