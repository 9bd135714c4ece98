"""What a task record keeps, and shares, to stay small (records.py's module docstring)."""

from __future__ import annotations

import pytest

from taskmill.core.scheduler.records import EMPTY, Frozen, TaskRecord, key_prefix, sort_key
from taskmill.protocol.serialize import Serialized
from taskmill.protocol.vocabulary import ComputeTask, ReleaseKeys, TaskSpec, WantKeys

from tests.core.scheduler_helpers import Sched, finished, of, sid, submit, task


def test_frozen_maps_refuse_every_change_but_allow_what_changes_nothing() -> None:
    one = Frozen({"c1": ""})
    for change in (lambda: one.__setitem__("c2", ""), lambda: one.update(c2=""),
                   lambda: one.setdefault("c2", ""), lambda: one.pop("c1"), one.popitem,
                   one.clear, lambda: one.__delitem__("c1")):
        with pytest.raises(TypeError, match="never changes"):
            change()
    assert one == {"c1": ""}
    assert EMPTY.pop("x", None) is None
    EMPTY.clear()
    with pytest.raises(KeyError):
        del EMPTY["x"]
    with pytest.raises(TypeError, match="never changes"):
        EMPTY["x"] = 1
    assert EMPTY == {}


def test_a_map_task_shares_its_link_maps_and_its_clients_report_map() -> None:
    s = Sched("w1")
    s(submit([task("inc-1"), task("inc-2")], ["inc-1", "inc-2"]))
    a, b = s.state.tasks["inc-1"], s.state.tasks["inc-2"]
    for ts in (a, b):
        for links in (ts.dependencies, ts.dependents, ts.waiters, ts.waiting_on, ts.who_has,
                      ts.acquiring_on):
            assert links is EMPTY
    assert a.who_wants == {"c1": ""} and a.who_wants is b.who_wants  # one map for both
    s(finished("w1", "inc-1"))
    assert a.who_wants == {"c1": "memory"} and b.who_wants == {"c1": ""}
    w1 = s.state.workers["w1"]
    assert a.who_has == {w1: None} and a.who_has is w1.alone  # the worker's one map
    assert w1.has_what[a] == s.epoch  # the copy's epoch, kept by its holder
    s(finished("w1", "inc-2"))
    assert b.who_has is a.who_has


def test_a_second_client_gets_the_task_its_own_map_and_each_report_once() -> None:
    s = Sched("w1")
    s(submit([task("inc-1")], ["inc-1"]))
    s(WantKeys(sid(), "c2", ("inc-1",)))
    ts = s.state.tasks["inc-1"]
    assert type(ts.who_wants) is dict and ts.who_wants == {"c1": "", "c2": ""}
    cmds = s(finished("w1", "inc-1"))
    assert sorted(r.client for r in s.reports()) == ["c1", "c2"]
    assert cmds and ts.who_wants == {"c1": "memory", "c2": "memory"}
    s(ReleaseKeys(sid(), "c1", ("inc-1",)))
    assert ts.who_wants == {"c2": "memory"}
    s(ReleaseKeys(sid(), "c2", ("inc-1",)))
    assert "inc-1" not in s.state.tasks


def test_links_go_back_to_empty_once_the_inputs_are_used() -> None:
    s = Sched(("w1", 4))
    s(submit([task("x-1"), task("x-2"), task("y-1", "x-1", "x-2")], ["y-1"]))
    x1, y1 = s.state.tasks["x-1"], s.state.tasks["y-1"]
    assert type(x1.waiters) is dict and set(y1.waiting_on) == {x1, s.state.tasks["x-2"]}
    s(finished("w1", "x-1"))
    s(finished("w1", "x-2"))
    assert y1.waiting_on is EMPTY  # all in memory: the dict is dropped
    s(finished("w1", "y-1"))
    assert x1.state == "released" and x1.waiters is EMPTY  # lineage kept, waiter gone
    assert y1 in x1.dependents


def test_the_record_keeps_the_args_frame_and_an_interned_token_not_the_spec() -> None:
    payload = Serialized([b"pickled args"])
    token = "".join(["tok", "en-1"])  # a fresh string, as decoding makes one
    run = TaskRecord("inc-1", TaskSpec("inc-1", token, payload), (0,), 1)
    assert run.args == b"pickled args" and run.payload() == payload and not run.actor
    other = TaskRecord("inc-2", TaskSpec("inc-2", "".join(["tok", "en-1"]), payload), (0,), 2)
    assert run.func_token is other.func_token
    two_frames = Serialized([b"a", b"b"])
    assert TaskRecord("inc-3", TaskSpec("inc-3", token, two_frames), (0,), 3).payload() is two_frames
    scattered = TaskRecord("x", None, (0,), 4)
    assert scattered.func_token is None and scattered.args is None
    s = Sched("w1")
    cmds = s(submit([TaskSpec("inc-1", token, payload)], ["inc-1"]))
    (compute,) = of(cmds, ComputeTask)
    assert compute.args == payload and compute.func_token == token


def test_prefixes_are_one_string_per_name() -> None:
    assert key_prefix("".join(["inc", "-1"])) is key_prefix("".join(["inc", "-2"]))
    assert key_prefix("('sum-4f', 3)") is key_prefix("('sum-4f', 4)") == "sum"
    whole = "nodash"
    assert key_prefix(whole) is whole


def test_the_inputs_of_a_reduction_share_its_one_entry_dependents_map() -> None:
    s = Sched(("w1", 4))
    s(submit([task("x-1"), task("x-2"), task("y-1", "x-1", "x-2")], ["y-1"]))
    x1, x2, y1 = (s.state.tasks[k] for k in ("x-1", "x-2", "y-1"))
    assert x1.dependents == {y1: None} and x1.dependents is x2.dependents is y1.alone
    s(submit([task("z-1", "x-1")], ["z-1"]))  # a second dependent: x-1 gets a map of its own
    z1 = s.state.tasks["z-1"]
    assert type(x1.dependents) is dict and x1.dependents == {y1: None, z1: None}
    assert x2.dependents is y1.alone == {y1: None}  # the shared map did not change
    for key in ("x-1", "x-2", "y-1", "z-1"):
        s(finished("w1", key))
    s(ReleaseKeys(sid(), "c1", ("y-1",)))  # y-1 forgotten: unlinked from both inputs
    assert "y-1" not in s.state.tasks and "x-2" not in s.state.tasks
    assert x1.dependents == {z1: None}
    s(ReleaseKeys(sid(), "c1", ("z-1",)))
    assert s.state.tasks == {}


def test_the_flat_sort_key_orders_as_priority_then_seq_and_gives_both_back() -> None:
    s = Sched()
    s(submit([task("inc-1", priority=(0, 1, 5)), task("inc-2", priority=(0,)),
              task("inc-3", priority=(0, 1, 5)), task("inc-4", priority=(-1, 9))],
             ["inc-1", "inc-2", "inc-3", "inc-4"]))
    a, b, c, d = (s.state.tasks[f"inc-{i}"] for i in range(1, 5))
    assert (a.priority, b.priority, d.priority) == ((0, 1, 5), (0,), (-1, 9))
    assert (b.seq, c.seq) == (a.seq + 1, a.seq + 2)
    nested = sorted([a, b, c, d], key=lambda ts: (ts.priority, ts.seq))
    assert sorted([a, b, c, d], key=lambda ts: ts.sort_key) == nested == [d, b, a, c]
    assert sort_key((0, 1), 7) < sort_key((0, 1, -5), 1) < sort_key((0, 2), 0)
