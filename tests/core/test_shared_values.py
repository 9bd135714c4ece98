"""The pure shared-values machine (queues, variables, datasets), synchronously."""

from __future__ import annotations

import pytest

from taskmill.core.shared_values import (
    Fail,
    Given,
    Handover,
    Item,
    Pin,
    Reply,
    SharedValues,
    Unpin,
)


def plain(value: object) -> object:
    """A reply's value with the items given unwrapped."""
    if isinstance(value, Given):
        return value.item
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def replies(cmds: list[object]) -> dict[int, object]:
    return {c.waiter: plain(c.value) for c in cmds if isinstance(c, Reply)}


def test_queue_is_fifo_and_a_waiting_get_is_answered_by_the_next_put() -> None:
    sv = SharedValues()
    assert sv.queue_get("q", 0, "c1", 1, None, None) == []  # empty: waits
    out = sv.queue_put("q", 0, Item(b"a"), "c2", 2, None)
    assert replies(out) == {2: None, 1: Item(b"a")}
    sv.queue_put("q", 0, Item(b"b"), "c2", 3, None)
    sv.queue_put("q", 0, Item(b"c"), "c2", 4, None)
    assert sv.queue_size("q", 0) == 2
    assert replies(sv.queue_get("q", 0, "c1", 5, None, None)) == {5: Item(b"b")}
    assert replies(sv.queue_get("q", 0, "c1", 6, None, 0)) == {6: [Item(b"c")]}
    assert replies(sv.queue_get("q", 0, "c1", 7, None, 0)) == {7: []}  # batch=True never waits


def test_a_get_past_its_deadline_fails_with_a_timeout_naming_the_queue() -> None:
    sv = SharedValues()
    sv.queue_get("jobs", 0, "c", 1, 10.0, None)
    assert sv.next_deadline() == 10.0
    assert sv.expire(9.5) == []
    [fail] = sv.expire(10.0)
    assert isinstance(fail, Fail) and fail.waiter == 1
    assert isinstance(fail.error, TimeoutError) and "Queue 'jobs'" in str(fail.error)
    assert sv.next_deadline() is None
    # the timed-out getter is gone: a later put stays in the queue
    sv.queue_put("jobs", 0, Item(b"x"), "c", 2, None)
    assert sv.queue_size("jobs", 0) == 1


def test_a_full_queue_makes_put_wait_until_a_get_makes_room() -> None:
    sv = SharedValues()
    assert replies(sv.queue_put("q", 1, Item(b"a"), "c", 1, None)) == {1: None}
    assert replies(sv.queue_put("q", 1, Item(b"b"), "c", 2, 5.0)) == {}  # full: waits
    out = sv.queue_get("q", 1, "c", 3, None, None)
    assert replies(out) == {3: Item(b"a"), 2: None}
    assert sv.queue_size("q", 1) == 1
    sv.queue_put("q", 1, Item(b"c"), "c", 4, 5.0)
    [fail] = sv.expire(5.0)
    assert "put() found it full" in str(fail.error)  # type: ignore[union-attr]


def test_batch_of_n_waits_for_n_values_and_takes_them_together() -> None:
    sv = SharedValues()
    sv.queue_get("q", 0, "c", 1, None, 2)
    assert replies(sv.queue_put("q", 0, Item(b"a"), "c", 2, None)) == {2: None}
    assert replies(sv.queue_put("q", 0, Item(b"b"), "c", 3, None)) == {3: None, 1: [Item(b"a"), Item(b"b")]}


def test_keys_in_queued_values_are_pinned_until_taken_and_handed_over_first() -> None:
    sv = SharedValues()
    out = sv.queue_put("q", 0, Item(b"f", ("k",)), "c1", 1, None)
    assert Pin(("k",)) in out
    out = sv.queue_put("q", 0, Item(b"g", ("k",)), "c1", 2, None)
    assert not any(isinstance(c, Pin) for c in out)  # already pinned: counted
    out = sv.queue_get("q", 0, "c2", 3, None, None)
    assert out == [Handover("c2", "1", ("k",)), Reply(3, Given(Item(b"f", ("k",)), "1"))]
    out = sv.queue_get("q", 0, "c2", 4, None, None)
    assert out == [Handover("c2", "2", ("k",)), Unpin(("k",)),
                   Reply(4, Given(Item(b"g", ("k",)), "2"))]  # each handover its own token
    assert sv.pinned() == set()


def test_cancelled_waiting_put_drops_its_value_and_its_pin() -> None:
    sv = SharedValues()
    sv.queue_put("q", 1, Item(b"a"), "c", 1, None)
    out = sv.queue_put("q", 1, Item(b"b", ("k",)), "c", 2, None)
    assert Pin(("k",)) in out and replies(out) == {}
    assert sv.cancel(2) == [Unpin(("k",))]
    assert sv.cancel(2) == []  # idempotent
    assert sv.queue_size("q", 1) == 1


def test_variable_get_waits_for_set_and_set_replaces_releasing_the_old_value() -> None:
    sv = SharedValues()
    assert sv.variable_get("v", "c1", 1, None) == []
    out = sv.variable_set("v", Item(b"1", ("k1",)))
    assert out == [Pin(("k1",)), Handover("c1", "1", ("k1",)), Reply(1, Given(Item(b"1", ("k1",)), "1"))]
    out = sv.variable_set("v", Item(b"2", ("k2",)))
    assert out == [Pin(("k2",)), Unpin(("k1",))]
    assert replies(sv.variable_get("v", "c2", 2, None)) == {2: Item(b"2", ("k2",))}
    assert sv.variable_delete("v") == [Unpin(("k2",))]
    assert sv.pinned() == set()


def test_variable_read_before_any_set_times_out_naming_it() -> None:
    sv = SharedValues()
    sv.variable_get("stop", "c", 1, 3.0)
    [fail] = sv.expire(3.0)
    assert isinstance(fail, Fail)
    assert isinstance(fail.error, TimeoutError) and "Variable 'stop'" in str(fail.error)
    assert "never set" in str(fail.error)


def test_deleting_a_variable_fails_its_waiting_readers() -> None:
    sv = SharedValues()
    sv.variable_get("v", "c", 1, None)
    [fail] = sv.variable_delete("v")
    assert isinstance(fail, Fail) and "deleted" in str(fail.error)


def test_a_name_used_by_another_kind_of_primitive_is_a_clear_error() -> None:
    sv = SharedValues()
    sv.queue_size("x", 0)
    with pytest.raises(TypeError, match="'x' is already used by a Queue.*Variable"):
        sv.variable_set("x", Item(b"1"))
    sv.variable_set("y", Item(b"1"))
    with pytest.raises(TypeError, match="'y' is already used by a Variable"):
        sv.queue_get("y", 0, "c", 1, None, None)


def test_datasets_publish_get_unpublish_and_errors() -> None:
    sv = SharedValues()
    assert sv.publish({"a": Item(b"1", ("k",)), "b": Item(b"2")}, False) == [Pin(("k",))]
    with pytest.raises(KeyError, match="'a' is already published"):
        sv.publish({"a": Item(b"3"), "c": Item(b"4")}, False)
    assert "c" not in sv.datasets  # all or none
    item, out = sv.dataset_get("a", "c2")
    assert item == Given(Item(b"1", ("k",)), "1") and out == [Handover("c2", "1", ("k",))]
    with pytest.raises(KeyError, match="'zz' is not published"):
        sv.dataset_get("zz", "c2")
    assert sv.publish({"a": Item(b"5")}, True) == [Unpin(("k",))]
    assert sv.unpublish("a") == []
    with pytest.raises(KeyError, match="'a' is not published"):
        sv.unpublish("a")


def test_names_are_shared_with_the_locks_and_events() -> None:
    from taskmill.core.locks import Coordination

    sv, locks = SharedValues(), Coordination()
    sv.taken_elsewhere, locks.taken_elsewhere = locks.kind_of, sv.kind_of
    sv.queue_size("q", 0)
    with pytest.raises(ValueError, match="'q' is in use by a Queue; a Event cannot use it"):
        locks.set_event("q")
    locks.set_event("e")
    with pytest.raises(TypeError, match="'e' is already used by a Event, so it cannot be used for a Variable"):
        sv.variable_set("e", Item(b"1"))
    assert sv.kind_of("q") == "Queue" and locks.kind_of("e") == "Event" and sv.kind_of("e") is None
