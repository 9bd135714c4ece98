"""The wire vocabulary: every message round-trips, and decoding checks every field."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import pytest

from taskmill.protocol import ProtocolError, dumps, loads, serialize
from taskmill.protocol import vocabulary as v
from taskmill.protocol.serialize import Serialized
from taskmill.protocol.wire_types import Record, record

pytestmark = pytest.mark.timeout(10)


def example(hint: Any, seed: int = 1) -> Any:
    """A value of the annotated type (not the default), for round trips."""
    if hint is str:
        return f"s{seed}"
    if hint is int:
        return 7 + seed
    if hint is float:
        return 1.5 + seed
    if hint is bool:
        return True
    if hint is bytes:
        return b"\x00\xffbytes"
    if hint is Serialized:
        return serialize(("payload", seed))
    if hint is Any:
        return [1, "x"]
    if isinstance(hint, type) and issubclass(hint, v.Record):
        return build(hint, seed)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return example(next(a for a in args if a is not type(None)), seed)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return (example(args[0], seed), example(args[0], seed + 1))
        return tuple(example(a, seed) for a in args)
    if origin is dict:
        return {example(args[0], seed): example(args[1], seed),
                example(args[0], seed + 1): example(args[1], seed + 1)}
    raise AssertionError(f"no example for {hint!r}")


def build(cls: type, seed: int = 1) -> Any:
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: example(hints[f.name], seed) for f in dataclasses.fields(cls)})


def local_fields(msg: v.Message) -> dict[str, Any]:
    return {name: getattr(msg, name) for name in msg.local}


@pytest.mark.parametrize("op", list(v.REGISTRY))
def test_every_message_round_trips_through_the_wire(op: str) -> None:
    cls = v.REGISTRY[op]
    msg = build(cls)
    wire = msg.to_wire()
    assert wire["op"] == op
    assert not set(msg.local) & set(wire), "local fields never travel"
    received = loads(dumps(wire))  # msgpack turns tuples into lists
    assert v.decode(received, **local_fields(msg)) == msg
    assert cls.from_wire(received, **local_fields(msg)) == msg


@pytest.mark.parametrize("op", list(v.REGISTRY))
def test_defaults_are_left_out_and_restored(op: str) -> None:
    cls = v.REGISTRY[op]
    required = {f.name: example(typing.get_type_hints(cls)[f.name])
                for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    msg = cls(**required)
    wire = msg.to_wire()
    assert set(wire) - {"op"} <= set(required), "fields at their default are not sent"
    assert v.decode(loads(dumps(wire)), **local_fields(msg)) == msg


def test_ops_are_unique_and_kebab_case() -> None:
    assert len(set(v.REGISTRY)) == len(v.REGISTRY)
    for op, cls in v.REGISTRY.items():
        assert op == op.lower() and " " not in op and "_" not in op, op
        assert cls.op == op
        assert cls.kind in ("stream", "request", "greeting")


def test_missing_field_is_named() -> None:
    wire = build(v.ComputeTask).to_wire()
    del wire["args"]
    with pytest.raises(ProtocolError, match="'compute-task' message lacks the field 'args'"):
        v.decode(wire, worker="w")


def test_unknown_field_is_refused() -> None:
    wire = build(v.FreeKeys).to_wire()
    wire["surprise"] = 1
    with pytest.raises(ProtocolError, match=r"unknown fields \['surprise'\]"):
        v.decode(wire, worker="w")


@pytest.mark.parametrize("field, bad", [
    ("key", 5),                       # not a str
    ("nbytes", "many"),               # not an int
    ("nbytes", True),                 # a bool is not an int on the wire
    ("start", "noon"),                # not a number
    ("value", b"raw"),                # a payload must be a Serialized
])
def test_wrong_types_are_refused_with_the_field(field: str, bad: Any) -> None:
    wire = build(v.TaskFinished).to_wire()
    wire[field] = bad
    with pytest.raises(ProtocolError, match=f"'task-finished' message: field '{field}'"):
        v.decode(wire, worker="w", stimulus_id="s")


def test_nested_records_are_checked() -> None:
    wire = build(v.UpdateGraph).to_wire()
    wire["tasks"][0][2] = "not a payload"
    with pytest.raises(ProtocolError, match="field 'tasks'"):
        v.decode(wire, client="c", stimulus_id="s")
    wire["tasks"][0] = ["too", "short"]
    with pytest.raises(ProtocolError, match="TaskSpec is a list of 10 items"):
        v.decode(wire, client="c", stimulus_id="s")


def test_unknown_op_and_non_maps_are_refused() -> None:
    with pytest.raises(ProtocolError, match="unknown op 'launch-missiles'"):
        v.decode({"op": "launch-missiles"})
    with pytest.raises(ProtocolError, match="must be a map"):
        v.decode(["compute-task"])
    with pytest.raises(ProtocolError, match="expected a 'free-keys' message, got 'add-keys'"):
        v.FreeKeys.from_wire({"op": "add-keys", "keys": []}, worker="w")


def test_integers_pass_for_floats_and_lists_become_tuples() -> None:
    msg = v.decode({"op": "task-finished", "key": "k", "nbytes": 1, "type_name": "int",
                    "start": 1, "stop": 2}, worker="w", stimulus_id="s")
    assert isinstance(msg, v.TaskFinished) and msg.start == 1.0 and isinstance(msg.start, float)
    free = v.decode({"op": "free-keys", "stimulus_id": "s", "keys": ["a", "b"]}, worker="w")
    assert isinstance(free, v.FreeKeys) and free.keys == ("a", "b")


def test_local_fields_come_from_the_receiver_not_the_wire() -> None:
    wire = v.ReleaseKeys("s", "client-a", ("k",)).to_wire()
    assert wire == {"op": "release-keys", "keys": ("k",)}
    wire_with_claim = {**wire, "client": "client-b"}  # a peer cannot speak for another
    with pytest.raises(ProtocolError, match="unknown fields"):
        v.decode(wire_with_claim, client="client-a", stimulus_id="s2")
    assert v.decode(wire, client="client-a", stimulus_id="s2") == v.ReleaseKeys("s2", "client-a", ("k",))


def test_a_stream_takes_only_the_stream_messages_of_its_route() -> None:
    with pytest.raises(ProtocolError, match="'has-what' is not a message a client sends a scheduler"):
        v.arrived(v.HasWhat().to_wire(), v.CLIENT, v.SCHEDULER, client="c", stimulus_id="s")
    with pytest.raises(ProtocolError, match="'free-keys' is not a message a worker sends a scheduler"):
        v.arrived(v.FreeKeys("s", "w", ("k",)).to_wire(), v.WORKER, v.SCHEDULER, worker="w",
                  stimulus_id="s")
    handed_over = v.ReleaseKeys("", "c", ("k",))  # as a same-loop link hands it over
    got = v.arrived(handed_over, v.CLIENT, v.SCHEDULER, client="c", stimulus_id="s2", now=1.0)
    assert got is handed_over and got.stimulus_id == "s2"


def test_codecs_are_generated_on_first_use_from_either_side() -> None:
    @record
    @dataclasses.dataclass(frozen=True, slots=True)
    class Pair(Record):
        name: str
        size: int = 0

    stand_in = Pair.__dict__["from_wire"]
    assert Pair.from_wire(["a", 3]) == Pair("a", 3)  # decoding first generates both
    assert Pair.__dict__["from_wire"] is not stand_in
    assert Pair("b").to_wire() == ["b", 0]
    with pytest.raises((TypeError, ValueError)):  # the generated checks
        Pair.from_wire(["a", "not a size"])


@record
@dataclasses.dataclass(frozen=True, slots=True)
class _Inner(Record):
    name: str


@record
@dataclasses.dataclass(frozen=True, slots=True)
class _Outer(Record):
    items: tuple[_Inner, ...]


def test_a_nested_record_is_decoded_by_its_generated_codec() -> None:
    # a record inside another (TaskSpec inside update-graph): the outer codec
    # must keep the inner one's generated decoder, not its first-use stand-in,
    # which generated the codec again for every record decoded (~400 us each)
    assert _Outer.from_wire([[["a"]]]) == _Outer((_Inner("a"),))
    inner_codec = _Inner.__dict__["from_wire"]
    assert _Outer.from_wire([[["b"], ["c"]]]) == _Outer((_Inner("b"), _Inner("c")))
    assert _Inner.__dict__["from_wire"] is inner_codec
