"""The scheduler machine's pins for shared values (``PinKeys``/``UnpinKeys``,
``handover-done``, ``stream-mark``): a pinned key's data stays while held."""

from __future__ import annotations

from scheduler_helpers import Sched, finished, sid, submit, task

from taskmill.core.scheduler.events import ClientDisconnected, PinKeys, StreamMarked, UnpinKeys
from taskmill.core.shared_values import SHARED_HOLDER, handover_holder
from taskmill.protocol.vocabulary import HandoverDone, ReleaseKeys, StreamMark, WantKeys


def held_in_memory() -> Sched:
    s = Sched("tcp://a")
    s(submit([task("x-1")], wanted=["x-1"]))
    s(finished("tcp://a", "x-1"))
    return s


def test_a_pinned_key_outlives_its_client_and_is_freed_when_unpinned() -> None:
    s = held_in_memory()
    s(PinKeys(sid(), SHARED_HOLDER, ("x-1",)))
    assert s.freed(s(ReleaseKeys(sid(), "c1", ("x-1",)))) == {}
    s(ClientDisconnected(sid(), "c1"))
    assert s.state.task_state("x-1") == "memory"
    cmds = s(UnpinKeys(sid(), SHARED_HOLDER, ("x-1",)))
    assert s.freed(cmds) == {"tcp://a": {"x-1"}} and s.state.tasks == {}


def test_a_handover_holds_the_key_until_the_receiver_wants_it() -> None:
    s = held_in_memory()
    s(PinKeys(sid(), SHARED_HOLDER, ("x-1",)))
    s(ReleaseKeys(sid(), "c1", ("x-1",)))
    # taken out of a queue by c2: handed over first, then unpinned, in one batch
    s(PinKeys(sid(), handover_holder("c2", "7"), ("x-1",)), UnpinKeys(sid(), SHARED_HOLDER, ("x-1",)))
    assert s.state.task_state("x-1") == "memory"
    cmds = s(WantKeys(sid(), "c2", ("x-1",)), HandoverDone(sid(), "c2", "7"))
    assert s.freed(cmds) == {}
    assert list(s.state.tasks["x-1"].who_wants) == ["c2"]
    assert handover_holder("c2", "7") not in s.state.clients  # no record left behind
    assert [r.client for r in s.reports() if r.key == "x-1"][-1] == "c2"  # c2's Future completes


def test_handover_pins_of_a_client_that_leaves_are_dropped() -> None:
    s = held_in_memory()
    s(PinKeys(sid(), handover_holder("c1", "1"), ("x-1",)),
      PinKeys(sid(), handover_holder("c1", "2"), ("x-1",)),
      PinKeys(sid(), handover_holder("c10", "1"), ("x-1",)))  # not c1's
    s(ReleaseKeys(sid(), "c1", ("x-1",)))
    s(HandoverDone(sid(), "c1", "1"))
    s(ClientDisconnected(sid(), "c10"))
    assert s.state.task_state("x-1") == "memory"
    cmds = s(ClientDisconnected(sid(), "c1"))
    assert s.freed(cmds) == {"tcp://a": {"x-1"}}


def test_pinning_an_unknown_key_tells_nobody() -> None:
    s = Sched("tcp://a")
    assert s(PinKeys(sid(), SHARED_HOLDER, ("ghost-1",))) == []
    assert [e[4] for e in s.state.story("ghost-1")] == ["ignored: shared-values pins an unknown key"]


def test_a_stream_mark_is_echoed_for_the_shell() -> None:
    s = Sched("tcp://a")
    mark = StreamMark(sid(), "c1", "m-1")
    assert s(mark) == [StreamMarked(mark.stimulus_id, "c1", "m-1")]
