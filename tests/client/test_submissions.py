"""A client keeps the specs of what it submitted while it holds a result that
needs them (``taskmill.client.submissions``)."""

from __future__ import annotations

from taskmill.client.submissions import Submissions
from taskmill.protocol.vocabulary import TaskSpec


def spec(key: str, *deps: str, func: str = "f") -> TaskSpec:
    return TaskSpec(key, func, None, tuple(deps))  # type: ignore[arg-type]



def test_a_held_result_keeps_its_whole_lineage() -> None:
    s = Submissions()
    s.record([spec("a")], {"f": "<f>"}, ["a"])  # type: ignore[dict-item]
    s.record([spec("b", "a", func="g")], {"g": "<g>"}, ["b"])  # type: ignore[dict-item]
    s.record([spec("c", "b")], {}, ["c"])
    s.released("a")
    s.released("b")  # their Futures went, but c needs them
    specs, funcs = s.replay()
    assert [t.key for t in specs] == ["a", "b", "c"]
    assert funcs == {"f": "<f>", "g": "<g>"}
    s.released("c")
    assert s.replay() == ([], {}) and len(s) == 0


def test_released_batches_are_not_replayed_and_keys_appear_once() -> None:
    s = Submissions()
    s.record([spec("x-0"), spec("x-1")], {}, ["x-0", "x-1"])
    s.record([spec("x-1")], {}, ["x-1"])
    s.record([spec("y")], {}, ["y"])
    s.released("y")
    assert [t.key for t in s.replay()[0]] == ["x-0", "x-1"]
    s.released("x-0")
    assert [t.key for t in s.replay()[0]] == ["x-0", "x-1"]  # x-1 still held
    s.released("x-1")
    assert len(s) == 0


def test_actors_are_not_replayed() -> None:
    s = Submissions()
    s.record([TaskSpec("counter", "Counter", None, (), actor=True)], {}, ["counter"])  # type: ignore[arg-type]
    s.record([spec("plain")], {}, ["plain"])
    assert [t.key for t in s.replay()[0]] == ["plain"]
