"""The receive pool: released large frames' mappings lent again, never while in use."""

from __future__ import annotations

import asyncio
import ctypes
import mmap
import sys
import threading
import time
from typing import Any

import numpy as np
import pytest

from taskmill.comm import Comm, connect, listen, run
from taskmill.comm.core import receive_pool, receive_prefault
from taskmill.protocol import FrameParser, encode_frames, serialize
from taskmill.protocol.framing import PREFAULT_FRAME
from taskmill.protocol.prefault import STEP, QuietTurns, populated_mapping
from taskmill.protocol.receive_pool import ReceivePool
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(30)

MIB = 2**20


def address_of(view: memoryview) -> int:
    holder = ctypes.c_char.from_buffer(view)
    try:
        return ctypes.addressof(holder)
    finally:
        del holder


def test_a_released_mapping_is_lent_again() -> None:
    pool = ReceivePool(64 * MIB, 4, 60)
    first = pool.allocate(PREFAULT_FRAME)
    where = address_of(first)
    assert pool.tracked_bytes() == PREFAULT_FRAME and pool.idle_bytes() == 0
    del first
    assert pool.idle_bytes() == PREFAULT_FRAME
    again = pool.allocate(PREFAULT_FRAME)
    assert address_of(again) == where and pool.idle_bytes() == 0


def test_a_mapping_in_use_is_never_lent_again() -> None:
    pool = ReceivePool(64 * MIB, 4, 60)
    whole = pool.allocate(PREFAULT_FRAME)
    array = np.frombuffer(whole[: PREFAULT_FRAME // 2], dtype="u1")  # a view of the frame
    where = address_of(whole)
    del whole
    other = pool.allocate(PREFAULT_FRAME)
    assert address_of(other) != where and pool.tracked_bytes() == 2 * PREFAULT_FRAME
    del other, array
    assert pool.idle_bytes() == 2 * PREFAULT_FRAME


def test_parsed_arrays_stay_intact_while_more_frames_arrive() -> None:
    pool = ReceivePool(256 * MIB, 4, 60)
    parser = FrameParser(allocate=pool.allocate)
    size = PREFAULT_FRAME + 8

    def receive(fill: int) -> np.ndarray[Any, Any]:
        parser.feed(encode_frames([b"h", bytes([fill]) * size]))
        [[_, frame]] = parser.take_messages()
        return np.frombuffer(frame, dtype="u1")

    kept = receive(1)  # the user keeps this one
    for fill in (2, 3, 4):
        later = receive(fill)
        assert (later == fill).all() and later.size == size
        assert (kept == 1).all()  # a later frame never landed in the kept one's memory
        reused = later.ctypes.data
        del later
    assert receive(5).ctypes.data == reused  # released frames' memory is reused


def test_sizes_close_enough_share_a_mapping() -> None:
    pool = ReceivePool(256 * MIB, 4, 60)
    big = pool.allocate(12 * MIB)
    where = address_of(big)
    del big
    smaller = pool.allocate(9 * MIB)  # 3/4 of the mapping: it fits
    assert len(smaller) == 9 * MIB and address_of(smaller) == where
    del smaller
    much_smaller = pool.allocate(PREFAULT_FRAME)  # 2/3: a mapping of its own
    assert address_of(much_smaller) != where


def test_bounds_on_bytes_and_count_leave_extra_frames_untracked() -> None:
    pool = ReceivePool(20 * MIB, 2, 60)
    too_big = pool.allocate(24 * MIB)
    assert len(too_big) == 24 * MIB and pool.tracked_bytes() == 0
    a, b = pool.allocate(PREFAULT_FRAME), pool.allocate(PREFAULT_FRAME)
    c = pool.allocate(PREFAULT_FRAME)  # two lent already: untracked
    assert pool.tracked_bytes() == 2 * PREFAULT_FRAME
    del a, b, c
    assert pool.idle_bytes() == 2 * PREFAULT_FRAME
    d = pool.allocate(12 * MIB)  # room made by dropping an idle mapping
    assert pool.tracked_bytes() == PREFAULT_FRAME + 12 * MIB
    del d


def test_small_frames_and_a_disabled_pool_bypass_it() -> None:
    pool = ReceivePool(256 * MIB, 0, 60)
    assert len(pool.allocate(PREFAULT_FRAME)) == PREFAULT_FRAME and pool.tracked_bytes() == 0
    enabled = ReceivePool(256 * MIB, 4, 60)
    assert isinstance(enabled.allocate(1000).obj, bytearray) and enabled.tracked_bytes() == 0


def test_release_idle_and_trim_unmap_only_idle_mappings() -> None:
    pool = ReceivePool(256 * MIB, 4, 0.05)
    lent, idle = pool.allocate(PREFAULT_FRAME), pool.allocate(PREFAULT_FRAME)
    del idle
    assert pool.release_idle() == PREFAULT_FRAME
    assert pool.tracked_bytes() == PREFAULT_FRAME and pool.idle_bytes() == 0
    del lent
    assert pool.idle_bytes() == PREFAULT_FRAME  # first seen idle now
    assert pool.trim() == 0  # not idle long enough yet
    deadline = time.monotonic() + 5
    while pool.trim() == 0:
        assert time.monotonic() < deadline, "an idle mapping was not trimmed"
    assert pool.tracked_bytes() == 0


def test_the_event_loop_trims_idle_mappings() -> None:
    pool = ReceivePool(256 * MIB, 4, 0.05)

    async def main() -> None:
        frame = pool.allocate(PREFAULT_FRAME)
        del frame
        deadline = time.monotonic() + 5
        while pool.tracked_bytes():
            assert time.monotonic() < deadline, "the timer did not trim the idle mapping"
            await asyncio.sleep(0.01)

    run(main())


def test_bad_bounds_name_the_option() -> None:
    with pytest.raises(ValueError, match="comm.receive-pool.max-bytes"):
        ReceivePool(-1, 4, 10)
    with pytest.raises(ValueError, match="comm.receive-pool.idle"):
        ReceivePool(MIB, 4, 0)


def test_arrays_received_over_tcp_stay_intact() -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 255, size=PREFAULT_FRAME + i, dtype="u1") for i in range(4)]

    async def echo(comm: Comm) -> None:
        while True:
            await comm.write(await comm.read())

    async def main() -> None:
        listener = await listen("tcp://127.0.0.1:0", echo)
        try:
            comm = await connect(listener.address)
            kept = []
            for i, array in enumerate(arrays):
                await comm.write({"data": serialize(array)})
                got = (await comm.read())["data"].deserialize()
                if i % 2 == 0:
                    kept.append((array, got))  # held while the others arrive
            for sent, got in kept:
                assert np.array_equal(sent, got)
            await comm.close()
        finally:
            await listener.stop()

    run(main())
    assert receive_pool().tracked_bytes() <= receive_pool().max_bytes


def test_a_prefaulted_spare_takes_the_first_frame_resized_to_it() -> None:
    pool = ReceivePool(256 * MIB, 4, 60)
    assert pool.prefault(32 * MIB) == 32 * MIB
    assert pool.idle_bytes() == pool.tracked_bytes() == 32 * MIB  # held, used by nobody
    frame = pool.allocate(20 * MIB)  # not within a quarter of the spare's size: resized
    assert len(frame) == 20 * MIB and pool.tracked_bytes() == 20 * MIB
    assert pool.idle_bytes() == 0
    frame[:] = b"\x07" * len(frame)
    array = np.frombuffer(frame, dtype="u1")
    del frame
    assert (array == 7).all() and pool.idle_bytes() == 0  # the array holds the mapping
    del array
    assert pool.idle_bytes() == 20 * MIB  # an ordinary idle mapping from now on


def test_a_spare_grows_for_a_larger_frame_and_keeps_its_pages() -> None:
    pool = ReceivePool(256 * MIB, 4, 60)
    assert pool.prefault(PREFAULT_FRAME) == PREFAULT_FRAME
    frame = pool.allocate(3 * PREFAULT_FRAME)
    assert len(frame) == 3 * PREFAULT_FRAME and pool.tracked_bytes() == 3 * PREFAULT_FRAME
    frame[-1:] = b"\x01"  # the grown part is writable memory too
    assert frame[-1] == 1 and frame[0] == 0


def test_frames_received_into_a_spare_over_tcp_are_intact() -> None:
    pool = ReceivePool(256 * MIB, 4, 60)
    assert pool.prefault(24 * MIB) == 24 * MIB
    parser = FrameParser(allocate=pool.allocate)
    sent = np.random.default_rng(1).integers(0, 255, size=PREFAULT_FRAME + 3, dtype="u1")
    parser.feed(encode_frames([b"h", sent.tobytes()]))
    [[_, frame]] = parser.take_messages()
    assert np.array_equal(np.frombuffer(frame, dtype="u1"), sent)
    assert pool.tracked_bytes() == PREFAULT_FRAME + 3  # the spare, shrunk to the frame


def test_prefault_respects_the_pool_s_bounds() -> None:
    assert ReceivePool(256 * MIB, 0, 60).prefault(32 * MIB) == 0  # disabled pool
    assert ReceivePool(256 * MIB, 4, 60).prefault(MIB) == 0  # below a large frame
    capped = ReceivePool(16 * MIB, 4, 60)
    assert capped.prefault(64 * MIB) == 16 * MIB and capped.tracked_bytes() == 16 * MIB
    full = ReceivePool(16 * MIB, 4, 60)
    lent = full.allocate(16 * MIB)
    assert full.prefault(16 * MIB) == 0 and full.tracked_bytes() == 16 * MIB  # no room
    del lent


def test_an_idle_spare_is_released_like_any_idle_mapping() -> None:
    pool = ReceivePool(256 * MIB, 4, 60)
    pool.prefault(PREFAULT_FRAME)
    assert pool.release_idle() == PREFAULT_FRAME and pool.tracked_bytes() == 0


def test_the_background_prefault_runs_once_per_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    # every moment is quiet here (on a busy machine none might be for the test's 20 s)
    monkeypatch.setattr(QuietTurns, "wait", lambda self: not self.stopped.is_set())
    pool = ReceivePool(256 * MIB, 4, 60)
    thread = pool.prefault_in_background(PREFAULT_FRAME, delay=0.01)
    assert thread is not None
    thread.join(timeout=20)
    assert not thread.is_alive() and pool.idle_bytes() == PREFAULT_FRAME
    assert pool.prefault_in_background(PREFAULT_FRAME) is None  # asked already
    assert ReceivePool(256 * MIB, 4, 60).prefault_in_background(MIB) is None


def test_the_prefault_options_are_checked(set_options: Any) -> None:
    set_options({"comm.receive-pool.prefault": "off"})
    assert receive_prefault() == (0, 0.25)
    set_options({"comm.receive-pool.prefault": "64MiB", "comm.receive-pool.prefault-delay": 2})
    assert receive_prefault() == (64 * MIB, 2.0)
    assert receive_prefault(memory_limit=100 * MIB) == (25 * MIB, 2.0)  # a quarter of the limit
    set_options({"comm.receive-pool.prefault": "lots"})
    with pytest.raises(ValueError, match="comm.receive-pool.prefault.*a size such as"):
        receive_prefault()
    set_options({"comm.receive-pool.prefault": "4GiB"})
    with pytest.raises(ValueError, match="larger than option comm.receive-pool.max-bytes"):
        receive_prefault()
    set_options({"comm.receive-pool.prefault": "64MiB", "comm.receive-pool.prefault-delay": -1})
    with pytest.raises(ValueError, match="comm.receive-pool.prefault-delay.*seconds > 0"):
        receive_prefault()


def test_a_large_frame_stops_a_prefault_and_the_part_done_is_the_spare() -> None:
    pool = ReceivePool(256 * MIB, 4, 60)
    steps = []

    def stop_after_two_steps() -> bool:
        steps.append(1)
        return len(steps) > 2
    partial = populated_mapping(10 * STEP, stop_after_two_steps)
    assert partial is not None and len(partial) == 2 * STEP  # what was faulted in, no more
    partial.close()
    pool.stop_prefault()  # a large frame came (or went) first
    assert pool.prefault(32 * MIB) == 0 and pool.tracked_bytes() == 0


def test_a_stopped_fault_in_gets_no_more_turns() -> None:
    stopped = threading.Event()
    stopped.set()
    assert QuietTurns(stopped).wait() is False


def test_a_fault_in_waits_while_another_thread_of_the_process_computes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A background fault-in slows a busy process even at nice 19, so it
    takes no step while another thread computes, looking less and less often
    (a few times a second, not fifty); the stop ends the wait."""
    from taskmill.protocol import prefault

    looks = []
    machine = prefault._machine_busy_seconds

    def counted() -> float:
        looks.append(1)
        return machine()
    monkeypatch.setattr(prefault, "_machine_busy_seconds", counted)
    stopped, done = threading.Event(), threading.Event()

    def compute() -> None:
        while not done.is_set():
            sum(range(1000))
    busy = threading.Thread(target=compute)
    busy.start()
    try:
        timer = threading.Timer(1.0, stopped.set)
        timer.start()
        assert QuietTurns(stopped).wait() is False  # no quiet moment before the stop
        timer.join()
        assert len(looks) <= 10  # windows of 20, 40, 80, 160, 320, 320 ms: 7 looks (50 at 20 ms)
    finally:
        done.set()
        busy.join()



def resident_bytes(mapping: Any) -> int:
    """Bytes of ``mapping`` in memory (``mincore`` of its pages: a neighbouring
    mapping the kernel merged with it in ``/proc/self/smaps`` is not counted)."""
    page = mmap.PAGESIZE
    pages = (len(mapping) + page - 1) // page
    vector = (ctypes.c_ubyte * pages)()
    mincore = ctypes.CDLL(None, use_errno=True).mincore
    mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    view = memoryview(mapping)
    try:
        assert mincore(address_of(view), len(mapping), vector) == 0, ctypes.get_errno()
    finally:
        view.release()
    return page * sum(v & 1 for v in vector)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's madvise")
def test_a_fresh_frame_is_faulted_in_by_the_helper_thread_not_the_reader() -> None:
    pool = ReceivePool(256 * MIB, 4, 60)
    frame = pool.allocate(32 * MIB)  # returned at once, nothing faulted in by this thread
    wait_for(lambda: resident_bytes(frame.obj) == 32 * MIB,
             timeout=20.0, interval=0.005, message="the frame's pages faulted in")
    assert bytes(frame[:4]) == b"\0\0\0\0" and pool.idle_bytes() == 0  # lent
    del frame
    assert pool.idle_bytes() == 32 * MIB  # released: idle at once
    grown = ReceivePool(256 * MIB, 4, 60)
    assert grown.prefault(PREFAULT_FRAME) == PREFAULT_FRAME
    frame = grown.allocate(3 * PREFAULT_FRAME)  # the spare, grown: its fresh tail faulted too
    wait_for(lambda: resident_bytes(frame.obj) == 3 * PREFAULT_FRAME,
             timeout=20.0, interval=0.005, message="the grown tail faulted in")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's madvise")
def test_a_frame_released_while_faulted_in_is_unmapped_and_the_helper_goes_on() -> None:
    pool = ReceivePool(16 * MIB, 1, 60)  # room for one: the others are untracked
    kept = pool.allocate(16 * MIB)
    for _ in range(5):  # untracked, released at once: unmapped under the helper
        assert pool.allocate(256 * MIB).nbytes == 256 * MIB
    last = pool.allocate(64 * MIB)
    wait_for(lambda: resident_bytes(last.obj) == 64 * MIB,
             timeout=20.0, interval=0.005, message="the next frame faulted in")
    assert resident_bytes(kept.obj) == 16 * MIB and pool.idle_bytes() == 0
