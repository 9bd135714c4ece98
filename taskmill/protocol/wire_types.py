"""Typed wire messages: the machinery behind :mod:`taskmill.protocol.vocabulary`.

Theory of operation
-------------------
A message is a frozen value class (:func:`taskmill.frozen.frozen`, or a
frozen dataclass) declared with :func:`message`, which names
its ``op``, who sends it and who receives it, and which of its fields are
*local*: filled in by the receiving end (the peer it came from, the receiver's
own stimulus id and clock) and never sent.  From the field annotations the
decorator builds one checker per field, so both directions are checked:

* ``msg.to_wire()`` gives the plain dict that travels (``{"op": ..., field:
  value}``; local fields left out, fields equal to their default omitted,
  nested records as lists);
* ``Cls.from_wire(d, **local)`` checks every field's type (converting the
  lists msgpack returns into the tuples the annotations ask for), refuses
  missing and unknown fields, and builds the message; any problem is a
  :class:`~taskmill.protocol.framing.ProtocolError` naming the op and field;
* :func:`decode` does the same for any op of the vocabulary.

A *record* (:func:`record`) is a typed value nested inside messages (a task of
``update-graph``): no op, encoded positionally as a list, checked the same way.

Annotations understood: ``str``, ``int``, ``float`` (an int is accepted),
``bool``, ``bytes``, ``Serialized`` (an opaque payload), ``Any`` (unchecked),
``X | None``, ``tuple[X, ...]``, ``tuple[X, Y]``, ``dict[K, V]`` and records.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple, TypeVar

from taskmill.frozen import MISSING, fields_of
from taskmill.protocol.framing import ProtocolError
from taskmill.protocol.serialize import Serialized

#: The kinds of node a message travels between (for the docs and for routing).
CLIENT, SCHEDULER, WORKER, NANNY, ANY = "client", "scheduler", "worker", "nanny", "any"

Check = Callable[[Any], Any]  # returns the value, converted; raises TypeError/ValueError
M = TypeVar("M", bound="Message")
R = TypeVar("R", bound="Record")


class Message:
    """A message that crosses a process boundary (see the module docstring)."""

    __slots__ = ()
    op: ClassVar[str]
    sender: ClassVar[str]
    receiver: ClassVar[str]
    #: ``"stream"`` (on a batched stream), ``"request"`` (request/reply) or
    #: ``"greeting"`` (opens every connection, see ``comm/auth.py``)
    kind: ClassVar[str]
    #: fields the receiving end fills in; never on the wire
    local: ClassVar[tuple[str, ...]]
    _wire: ClassVar[tuple[Field, ...]]

    def to_wire(self) -> dict[str, Any]:
        """The plain dict that travels for this message (compiled per class by
        :func:`message`): ``{"op": op, field: value}`` without the local fields
        and the fields equal to their default, records as lists."""
        raise TypeError(f"{type(self).__name__} is not declared with @message")

    @classmethod
    def from_wire(cls: type[M], msg: dict[str, Any], **local: Any) -> M:
        """Check ``msg`` (a decoded wire dict of this op) and build the message;
        ``local`` gives the local fields (compiled per class by :func:`message`).
        Each field is checked against its annotation, lists become the tuples
        it asks for; a missing, unknown or mistyped field is a ``ProtocolError``
        naming the op and the field."""
        raise TypeError(f"{cls.__name__} is not declared with @message")


class Record:
    """A typed value nested in messages, encoded positionally as a list."""

    __slots__ = ()
    _wire: ClassVar[tuple[Field, ...]]

    def to_wire(self) -> list[Any]:
        """Its fields in order, as a list (compiled per class by :func:`record`)."""
        raise TypeError(f"{type(self).__name__} is not declared with @record")

    @classmethod
    def from_wire(cls: type[R], items: Any) -> R:
        """Check a list of its fields and build the record (compiled per class
        by :func:`record`); raises ``TypeError`` saying what was wrong."""
        raise TypeError(f"{cls.__name__} is not declared with @record")


_REQUIRED: Any = MISSING


class Field(NamedTuple):
    """One wire field's codec, built from its annotation."""

    name: str
    #: the type whose values pass unchecked (``type(v) is plain``), or None
    plain: type | None
    #: checks (and converts) any other value
    check: Check
    #: its default, or ``_REQUIRED``
    default: Any
    #: makes a field holding records wire-ready, or None
    encode: Callable[[Any], Any] | None
    #: ``X | None``: None passes unchecked
    nullable: bool


#: the names the vocabulary's fields use
Key = str
Address = str
Priority = tuple[int, ...]

#: every op of the vocabulary -> its message class
REGISTRY: dict[str, type[Message]] = {}


def message(op: str, sender: str, receiver: str, *, kind: str = "stream",
            local: tuple[str, ...] = ()) -> Callable[[type[M]], type[M]]:
    """Declare a frozen class (``@frozen``, or a frozen dataclass) as the message ``op``."""

    def declare(cls: type[M]) -> type[M]:
        if op in REGISTRY:
            raise ValueError(f"op {op!r} is declared twice ({REGISTRY[op].__name__}, {cls.__name__})")
        names = {f.name for f in fields_of(cls)}
        if not set(local) <= names:
            raise ValueError(f"{cls.__name__}: local fields {set(local) - names} are not fields")
        cls.op, cls.sender, cls.receiver, cls.kind, cls.local = op, sender, receiver, kind, local
        _compile_on_first_use(cls, _compile_message)
        REGISTRY[op] = cls
        return cls

    return declare


def record(cls: type[R]) -> type[R]:
    """Declare a frozen class (``@frozen``, or a frozen dataclass) as a :class:`Record`."""
    _compile_on_first_use(cls, _compile_record)
    return cls


def wire_fields(cls: Any) -> tuple[Field, ...]:
    """The fields of a message or record class that travel, in wire order
    (read from its annotations on first use)."""
    fields: tuple[Field, ...] | None = cls.__dict__.get("_wire")
    if fields is None:
        fields = cls._wire = _spec(cls, skip=set(getattr(cls, "local", ())))
    return fields


def _compile_on_first_use(cls: Any, compile_codec: Callable[[Any], None]) -> None:
    """Give ``cls`` stand-in codecs that read its fields and generate the real
    codecs when first called: doing both for every op at import took most of
    ``import taskmill``, and a process uses few of the ops.  (Two threads may
    both generate them; either result is the same.)"""

    def to_wire(self: Any) -> Any:
        wire_fields(cls)
        compile_codec(cls)
        return self.to_wire()

    def from_wire(klass: Any, *args: Any, **kwargs: Any) -> Any:
        wire_fields(cls)
        compile_codec(cls)
        return cls.from_wire(*args, **kwargs)

    cls.to_wire = to_wire
    cls.from_wire = classmethod(from_wire)


def arrived(msg: Any, sender: str, receiver: str, **local: Any) -> Message:
    """A message taken off the stream a ``sender`` keeps with a ``receiver``:
    decoded from its wire form (see :func:`decode`), or, when a same-loop link
    handed the message object over as it is, that object with the receiver's
    local fields set.  An op that does not travel on such a stream (a request,
    a message of other peers) is a ``ProtocolError`` like a malformed one,
    found before anything is decoded."""
    cls = type(msg) if isinstance(msg, Message) else _class_of(msg)
    if cls.kind != "stream" or cls.sender != sender or cls.receiver != receiver:
        raise ProtocolError(f"{cls.op!r} is not a message a {sender} sends a {receiver} on its stream")
    if not isinstance(msg, Message):
        return cls.from_wire(msg, **local)
    # the sender handed it over and never touches it again: the receiver owns
    # it, so its local fields are set in place (no copy)
    for name in msg.local:
        if name in local:
            object.__setattr__(msg, name, local[name])
    return msg


def _class_of(msg: Any) -> type[Message]:
    if not isinstance(msg, dict):
        raise ProtocolError(f"a message must be a map, got {type(msg).__name__}")
    cls = REGISTRY.get(msg.get("op"))  # type: ignore[arg-type]
    if cls is None:
        raise ProtocolError(f"unknown op {msg.get('op')!r}")
    return cls


def decode(msg: Any, **local: Any) -> Message:
    """The message of any op in the vocabulary; ``local`` gives the receiver's
    local fields (those the op does not declare are ignored)."""
    return _class_of(msg).from_wire(msg, **local)


# --------------------------------------------------------------------------- #
# Field checkers, built once per class from the annotations
# --------------------------------------------------------------------------- #
def _spec(cls: type, skip: set[str]) -> tuple[Field, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields_of(cls):
        if f.name in skip:
            continue
        default = f.default
        hint = hints[f.name]
        out.append(Field(f.name, _passes(hint), _checker(hint), default, _encoder(hint),
                         _nullable(hint)))
    return tuple(out)


_PLAIN = (str, int, float, bool, bytes, Serialized)


def _nullable(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _passes(hint: Any) -> type | None:
    """The type whose values need no check nor conversion for ``hint`` (the
    common case of a plain field, tested with one ``type(v) is t``), or None."""
    if hint in _PLAIN:
        return hint  # type: ignore[no-any-return]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(options) == 1 and options[0] in _PLAIN:
            return options[0]  # type: ignore[no-any-return]
    return None


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _exact(expected: type) -> Check:
    def check(value: Any) -> Any:
        if type(value) is not expected:
            raise TypeError(f"expected {expected.__name__}, got {_show(value)}")
        return value

    return check


def _float(value: Any) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise TypeError(f"expected a number, got {_show(value)}")


def _any(value: Any) -> Any:
    return value


def _checker(hint: Any) -> Check:
    if hint is Any:
        return _any
    if hint is float:
        return _float
    if hint is int:
        return _exact(int)
    if hint in (str, bool, bytes, Serialized):
        return _exact(hint)
    if isinstance(hint, type) and issubclass(hint, Record):
        # the record's real codec, generated now: its first-use stand-in, kept
        # here, would generate the codec again at every call (~400 us a record)
        wire_fields(hint)
        _compile_record(hint)
        return hint.from_wire
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"no wire checker for the annotation {hint!r}: a union is X | None")
        inner = _checker(options[0])

        def optional(value: Any) -> Any:
            return None if value is None else inner(value)

        return optional
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _tuple_of(_checker(args[0]), _passes(args[0]))
        return _fixed_tuple([_checker(a) for a in args])
    if origin is dict:
        return _dict_of(_checker(args[0]), _checker(args[1]), _passes(args[0]), _passes(args[1]))
    raise TypeError(f"no wire checker for the annotation {hint!r}")


def _tuple_of(item: Check, plain: type | None) -> Check:
    def check(value: Any) -> tuple[Any, ...]:
        if type(value) is not list and type(value) is not tuple:
            raise TypeError(f"expected a list, got {_show(value)}")
        if plain is not None:
            for v in value:
                if type(v) is not plain:
                    break
            else:  # the common case: every item already of its type
                return tuple(value)
        return tuple([item(v) for v in value])

    return check


def _fixed_tuple(items: list[Check]) -> Check:
    def check(value: Any) -> tuple[Any, ...]:
        if type(value) not in (list, tuple) or len(value) != len(items):
            raise TypeError(f"expected a list of {len(items)} items, got {_show(value)}")
        return tuple([c(v) for c, v in zip(items, value)])

    return check


def _dict_of(key: Check, item: Check, key_plain: type | None, item_plain: type | None) -> Check:
    def check(value: Any) -> dict[Any, Any]:
        if type(value) is not dict:
            raise TypeError(f"expected a map, got {_show(value)}")
        if key_plain is not None and item_plain is not None:
            for k, v in value.items():
                if type(k) is not key_plain or type(v) is not item_plain:
                    break
            else:  # the common case: nothing to check further or convert
                return value
        return {key(k): item(v) for k, v in value.items()}

    return check


def _encoder(hint: Any) -> Callable[[Any], Any] | None:
    """How a field's value becomes its wire form: None when it already is one;
    records (and tuples of records, possibly None) become lists."""
    if isinstance(hint, type) and issubclass(hint, Record):
        return _record_wire
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [_encoder(a) for a in args if a is not type(None)]
        if any(e is not None for e in inner):
            if len(inner) != 1:
                raise TypeError(f"no wire encoder for the annotation {hint!r}")
            encode = inner[0]
            assert encode is not None
            return lambda value: None if value is None else encode(value)
        return None
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and _encoder(args[0]) is not None:
        return _records_wire
    if any(_encoder(a) is not None for a in args):
        raise TypeError(f"no wire encoder for records inside {hint!r}")
    return None


def _record_wire(value: Record) -> list[Any]:
    return value.to_wire()


def _records_wire(values: tuple[Record, ...]) -> list[list[Any]]:
    return [v.to_wire() for v in values]


# --------------------------------------------------------------------------- #
# The per-class codec, compiled once per class from its field specs
# --------------------------------------------------------------------------- #
# ``to_wire`` and ``from_wire`` run for every message, so each class gets its
# own straight-line pair (as dataclasses and attrs generate ``__init__``):
# the base classes' methods document what they do.  tests/protocol/
# test_vocabulary.py checks them on every message of the vocabulary.

def _not_a_map(cls: type, msg: Any) -> None:
    raise ProtocolError(f"a {cls.op!r} message must be a map, got {type(msg).__name__}")  # type: ignore[attr-defined]


def _wrong_op(cls: type, op: Any) -> None:
    raise ProtocolError(f"expected a {cls.op!r} message, got {op!r}")  # type: ignore[attr-defined]


def _lacks(cls: type, name: str) -> None:
    raise ProtocolError(f"{cls.op!r} message lacks the field {name!r}")  # type: ignore[attr-defined]


def _unknown_fields(cls: type, msg: dict[str, Any]) -> None:
    known = {field.name for field in cls._wire}  # type: ignore[attr-defined]
    extra = sorted(str(k) for k in msg if k != "op" and k not in known)
    raise ProtocolError(f"{cls.op!r} message has unknown fields {extra}")  # type: ignore[attr-defined]


def _bad_record(cls: type, items: Any) -> None:
    raise TypeError(f"a {cls.__name__} is a list of {len(cls._wire)} items, got {_show(items)}")  # type: ignore[attr-defined]


def _namespace(cls: type) -> dict[str, Any]:
    ns: dict[str, Any] = {"_MISSING": _REQUIRED, "_lacks": _lacks,
                          "_not_a_map": _not_a_map, "_wrong_op": _wrong_op,
                          "_unknown_fields": _unknown_fields, "_bad_record": _bad_record}
    for i, field in enumerate(cls._wire):  # type: ignore[attr-defined]
        ns.update({f"_f{i}": field.plain, f"_c{i}": field.check, f"_d{i}": field.default,
                   f"_e{i}": field.encode})
    return ns


def _compile(source: str, ns: dict[str, Any], name: str) -> Any:
    exec(compile(source, f"<wire codec {name}>", "exec"), ns)  # noqa: S102 - our own generated code
    return ns


def _check_line(i: int, field: Field, var: str, call: str) -> str:
    """One field's check: nothing to do for a value of its plain type (or None
    where None is allowed), else the checker ``call``."""
    conditions = []
    if field.nullable:
        conditions.append(f"{var} is not None")
    if field.plain is not None:
        conditions.append(f"type({var}) is not _f{i}")
    if not conditions:
        return f"{var} = {call}"
    return f"if {' and '.join(conditions)}: {var} = {call}"


def _construct(cls: type, values: list[str], ns: dict[str, Any]) -> list[str]:
    """Lines that build the instance from checked ``values`` (one per field,
    in order) by setting its slots directly: a frozen class's
    ``__init__`` goes through ``object.__setattr__`` once per field, which
    costs more than decoding the field did."""
    ns["_new"] = object.__new__
    lines = ["    obj = _new(cls)"]
    for i, (f, value) in enumerate(zip(fields_of(cls), values)):
        ns[f"_set{i}"] = getattr(cls, f.name).__set__  # the slot's descriptor
        lines.append(f"    _set{i}(obj, {value})")
    return lines + ["    return obj"]


def _compile_message(cls: type[Message]) -> None:
    ns = _namespace(cls)
    ns["_OP"] = cls.op
    ns["ProtocolError"] = ProtocolError
    to = ["def to_wire(self):", "    out = {'op': _OP}"]
    frm = ["def from_wire(cls, msg, **local):",
           "    if type(msg) is not dict: _not_a_map(cls, msg)",
           "    get = msg.get",
           "    seen = 0",
           "    op = get('op', _MISSING)",
           "    if op is not _MISSING:",
           "        seen = 1",
           "        if op != _OP: _wrong_op(cls, op)",
           "    field = ''",
           "    try:"]
    wire_index = {}
    for i, field in enumerate(cls._wire):
        name, default = field.name, field.default
        wire_index[name] = i
        value = f"_e{i}(v)" if field.encode is not None else "v"
        to.append(f"    v = self.{name}")
        if default is _REQUIRED:
            to.append(f"    out[{name!r}] = {value}")
        else:
            to.append(f"    if v is not _d{i}: out[{name!r}] = {value}")
        line = _check_line(i, field, f"a{i}", f"_c{i}(a{i})")
        frm += [f"        a{i} = get({name!r}, _MISSING)",
                f"        if a{i} is _MISSING:",
                f"            {'_lacks(cls, ' + repr(name) + ')' if default is _REQUIRED else f'a{i} = _d{i}'}",
                "        else:",
                "            seen += 1",
                f"            field = {name!r}",
                f"            {line}"]
    frm += ["        pass",  # a message without fields
            "    except (TypeError, ValueError) as exc:",
            "        raise ProtocolError(f'{_OP!r} message: field {field!r}: {exc}') from None",
            "    if seen != len(msg): _unknown_fields(cls, msg)"]
    args = []
    for f in fields_of(cls):
        if f.name in wire_index:
            args.append(f"a{wire_index[f.name]}")
        elif f.default is MISSING:
            args.append(f"local[{f.name!r}]")
        else:
            ns[f"_local_default_{f.name}"] = f.default
            args.append(f"local.get({f.name!r}, _local_default_{f.name})")
    frm += _construct(cls, args, ns)
    to.append("    return out")
    _compile("\n".join(to + frm), ns, cls.__name__)
    cls.to_wire = ns["to_wire"]  # type: ignore[method-assign]
    cls.from_wire = classmethod(ns["from_wire"])  # type: ignore[assignment]


def _compile_record(cls: type[Record]) -> None:
    ns = _namespace(cls)
    n = len(cls._wire)
    values = [f"_e{i}(self.{field.name})" if field.encode is not None else f"self.{field.name}"
              for i, field in enumerate(cls._wire)]
    variables = [f"a{i}" for i in range(n)]
    lines = ["def to_wire(self):", f"    return [{', '.join(values)}]",
             "def from_wire(cls, items):",
             f"    if (type(items) is not list and type(items) is not tuple) or len(items) != {n}:",
             "        _bad_record(cls, items)",
             f"    {', '.join(variables)}{',' if n == 1 else ''} = items"]
    for i, field in enumerate(cls._wire):
        lines.append("    " + _check_line(i, field, f"a{i}", f"_c{i}(a{i})"))
    lines += _construct(cls, variables, ns)
    _compile("\n".join(lines), ns, cls.__name__)
    cls.to_wire = ns["to_wire"]  # type: ignore[method-assign]
    cls.from_wire = classmethod(ns["from_wire"])  # type: ignore[assignment]
