"""``@frozen`` classes behave as ``@dataclass(frozen=True, slots=True)`` ones."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import subprocess
import sys
from typing import ClassVar

import pytest

from taskmill.frozen import MISSING, fields_of, frozen


@frozen
class Event:
    """An event."""

    stimulus_id: str


@frozen
class Finished(Event):
    """A subclass with fields of its own."""

    key: str
    nbytes: dict[str, int] | None = None
    worker: str = ""
    kind: ClassVar[str] = "finished"


@dataclasses.dataclass(frozen=True, slots=True)
class Twin:
    stimulus_id: str
    key: str
    nbytes: dict[str, int] | None = None
    worker: str = ""


def test_construction_repr_equality_and_hash_match_a_dataclass() -> None:
    ours, theirs = Finished("s", "x", worker="w"), Twin("s", "x", worker="w")
    assert repr(ours) == repr(theirs).replace("Twin", "Finished")
    assert ours == Finished("s", "x", None, "w")
    assert ours != Finished("s", "y", None, "w")
    assert hash(ours) == hash(Finished("s", "x", worker="w")) == hash(theirs)
    assert ours != theirs and Event("s") != Finished("s", "x")  # other classes are never equal
    assert Finished.__match_args__ == ("stimulus_id", "key", "nbytes", "worker")
    assert Finished.kind == "finished" and Finished.__doc__ == "A subclass with fields of its own."
    with pytest.raises(TypeError, match="key"):
        Finished("s")  # type: ignore[call-arg]


def test_instances_are_frozen_and_slotted() -> None:
    event = Finished("s", "x")
    with pytest.raises(dataclasses.FrozenInstanceError, match="'key'"):
        event.key = "y"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        event.other = 1  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del event.key  # type: ignore[misc]
    assert not hasattr(event, "__dict__")


def test_pickle_copy_and_the_dataclasses_functions_work() -> None:
    event = Finished("s", "x", {"x": 8})
    assert pickle.loads(pickle.dumps(event)) == event
    assert copy.deepcopy(event) == event and copy.copy(event) == event
    assert dataclasses.is_dataclass(event)
    assert [f.name for f in dataclasses.fields(Finished)] == ["stimulus_id", "key", "nbytes", "worker"]
    assert dataclasses.replace(event, worker="w") == Finished("s", "x", {"x": 8}, "w")
    assert dataclasses.asdict(event) == {"stimulus_id": "s", "key": "x", "nbytes": {"x": 8}, "worker": ""}
    assert [(f.name, f.default) for f in fields_of(Finished)] == [
        ("stimulus_id", MISSING), ("key", MISSING), ("nbytes", None), ("worker", "")]
    assert fields_of(Twin) == fields_of(Finished)


def test_what_it_does_not_support_is_refused_clearly() -> None:
    with pytest.raises(TypeError, match="field\\(...\\) is not supported"):
        @frozen
        class WithFactory:
            items: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match="mutable default"):
        @frozen
        class WithList:
            items: list[int] = []  # noqa: RUF012

    with pytest.raises(TypeError, match="'b' without a default follows 'a'"):
        @frozen
        class Misordered:
            a: int = 0
            b: int  # type: ignore[misc]

    with pytest.raises(TypeError, match="make Twin @frozen too"):
        @frozen
        class OnADataclass(Twin):
            more: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Tick(Event):
    n: int = 0


def test_a_dataclass_may_extend_a_frozen_class() -> None:
    tick = Tick("s", 3)
    assert tick == Tick("s", 3) != Tick("s", 4) and repr(tick) == "Tick(stimulus_id='s', n=3)"
    assert dataclasses.replace(tick, n=5).n == 5 and pickle.loads(pickle.dumps(tick)) == tick
    assert [f.name for f in fields_of(Tick)] == ["stimulus_id", "n"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        tick.n = 1  # type: ignore[misc]


def test_a_method_the_class_defines_is_kept() -> None:
    @frozen
    class Shown:
        name: str

        def __repr__(self) -> str:
            return f"<{self.name}>"

    assert repr(Shown("a")) == "<a>" and Shown("a") == Shown("a")


def test_import_taskmill_makes_no_dataclass_of_the_vocabulary() -> None:
    """The import budget: every op is a ``@frozen`` class (a dataclass costs
    ten times as much to create, in every process at start)."""
    code = ("import taskmill; from taskmill.protocol.vocabulary import REGISTRY; "
            "print([c.__name__ for c in REGISTRY.values() if '__frozen_fields__' not in c.__dict__])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=True)
    assert done.stdout.strip() == "[]"
