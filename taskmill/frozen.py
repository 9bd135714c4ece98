"""Frozen, slotted value classes made cheaply: ``@frozen`` in place of
``@dataclass(frozen=True, slots=True)``.

Theory of operation
-------------------
The wire vocabulary and the state machines' events are some 250 small value
classes, all imported by every process at start.  ``dataclasses`` spends
about 0.3 ms on each (it generates and ``exec``s six methods one by one,
then builds the class a second time for ``slots=True``): a third of
``import taskmill``, paid again by every worker process.  ``@frozen`` makes
the same class for a tenth of that, by doing at declaration only what must
be done then:

* read the fields from the class's own annotations (strings, under
  ``from __future__ import annotations``; ``ClassVar`` ones are not fields)
  after those of the ``@frozen`` class it extends, with their defaults;
* build the class again with ``__slots__`` for its own fields, frozen
  ``__setattr__``/``__delattr__``, ``__match_args__``, and pickling support
  (``__getstate__``/``__setstate__``, as dataclasses give slotted frozen
  classes);
* give it stand-ins for ``__init__``, ``__repr__``, ``__eq__`` and
  ``__hash__`` that, on the first call of any of them, generate all four as
  straight-line code in one ``exec`` (what dataclasses would have made) and
  put them in their place.

What it keeps from ``dataclasses``' contract: the same methods and
semantics (equality and hash over the fields, for instances of the same
class only; ``FrozenInstanceError`` on assignment), ``dataclasses.fields``,
``replace``, ``asdict`` and ``is_dataclass`` work on the classes:
``__dataclass_fields__`` (and ``__dataclass_params__``) are built on first
access, by running ``dataclasses.dataclass`` on a plain stand-in class with
the same fields; so a ``@dataclass(frozen=True, slots=True)`` may extend a
``@frozen`` class too (the other way round is refused).
What it does not do: ``field(...)`` specifiers (``default_factory``,
``compare=False``...) and mutable defaults are refused with a ``TypeError``
that says so; keep ``@dataclass`` for such classes.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # pragma: no cover - Python 3.10: the marker only informs type checkers
    def dataclass_transform(**kwargs: Any) -> Callable[[Any], Any]:
        return lambda decorator: decorator

T = TypeVar("T")

#: the default of a field that has none
MISSING: Any = dataclasses.MISSING


class FieldInfo(NamedTuple):
    """One field of a ``@frozen`` class (or of a dataclass, see :func:`fields_of`)."""

    name: str
    #: its default, or :data:`MISSING`
    default: Any
    #: its annotation as written (a string under postponed annotations)
    annotation: Any


def fields_of(cls: Any) -> tuple[FieldInfo, ...]:
    """The fields of a ``@frozen`` class, or of a dataclass, in order; cheap
    for a ``@frozen`` class (``dataclasses.fields`` would build its
    ``__dataclass_fields__`` first)."""
    fields: tuple[FieldInfo, ...] | None = cls.__dict__.get("__frozen_fields__")
    if fields is not None:
        return fields
    return tuple(FieldInfo(f.name, f.default, f.type) for f in dataclasses.fields(cls))


@dataclass_transform(frozen_default=True)
def frozen(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen class with slots, like
    ``@dataclass(frozen=True, slots=True)`` (see the module docstring)."""
    namespace = dict(cls.__dict__)
    fields = _declared_fields(cls, namespace)
    own = tuple(f.name for f in fields[len(getattr(cls, "__frozen_fields__", ())):])
    for name in own:
        namespace.pop(name, None)  # the default moves to __frozen_fields__; the slot takes its place
    namespace.pop("__dict__", None)
    namespace.pop("__weakref__", None)
    names = tuple(f.name for f in fields)
    namespace.update(
        __slots__=own, __frozen_fields__=fields, __match_args__=names,
        __setattr__=_refuse_assignment, __delattr__=_refuse_deletion,
        __getstate__=_getstate, __setstate__=_setstate,
        __dataclass_fields__=_AsDataclass("__dataclass_fields__"),
        __dataclass_params__=_AsDataclass("__dataclass_params__"),
    )
    metaclass: Any = type(cls)
    made: Any = metaclass(cls.__name__, cls.__bases__, namespace)
    for method in _GENERATED:
        if method not in namespace:  # methods the class defines itself stay, as with dataclasses
            setattr(made, method, _stand_in(made, method))
    return made  # type: ignore[no-any-return]


def _declared_fields(cls: type, namespace: dict[str, Any]) -> tuple[FieldInfo, ...]:
    """The fields of the ``@frozen`` base (if any), then the class's own."""
    for base in cls.__mro__[1:]:
        if "__dataclass_fields__" in base.__dict__ and "__frozen_fields__" not in base.__dict__:
            raise TypeError(f"@frozen class {cls.__name__} extends the dataclass {base.__name__}: "
                            f"make {base.__name__} @frozen too")
    fields = list(getattr(cls, "__frozen_fields__", ()))
    for name, annotation in namespace.get("__annotations__", {}).items():
        if _is_classvar(annotation):
            continue
        if any(f.name == name for f in fields):
            raise TypeError(f"@frozen class {cls.__name__} declares the field {name!r} of its base again")
        default = namespace.get(name, MISSING)
        if isinstance(default, dataclasses.Field):
            raise TypeError(f"@frozen class {cls.__name__}, field {name!r}: field(...) is not "
                            f"supported; give a plain default or use @dataclass")
        if isinstance(default, (list, dict, set)):
            raise TypeError(f"@frozen class {cls.__name__}, field {name!r}: a mutable default "
                            f"({type(default).__name__}) would be shared; default to None instead")
        if default is MISSING and fields and fields[-1].default is not MISSING:
            raise TypeError(f"@frozen class {cls.__name__}: the field {name!r} without a default "
                            f"follows {fields[-1].name!r}, which has one")
        fields.append(FieldInfo(name, default, annotation))
    return tuple(fields)


def _is_classvar(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return annotation.startswith(("ClassVar", "typing.ClassVar"))
    return annotation is typing.ClassVar or typing.get_origin(annotation) is typing.ClassVar


def _refuse_assignment(self: Any, name: str, value: Any) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def _refuse_deletion(self: Any, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


def _getstate(self: Any) -> list[Any]:
    return [getattr(self, f.name) for f in self.__frozen_fields__]


def _setstate(self: Any, state: list[Any]) -> None:
    for field, value in zip(self.__frozen_fields__, state):
        object.__setattr__(self, field.name, value)


class _AsDataclass:
    """``__dataclass_fields__`` and ``__dataclass_params__`` on first access
    of either: what ``dataclasses`` makes for a plain frozen class with the
    same fields; then kept on the class (so that ``dataclasses.fields`` and
    ``replace`` work, and a ``@dataclass(frozen=True)`` may extend the class)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type) -> Any:
        fields: tuple[FieldInfo, ...] = owner.__dict__["__frozen_fields__"]
        shadow_ns: dict[str, Any] = {"__module__": owner.__module__,
                                     "__annotations__": {f.name: f.annotation for f in fields}}
        shadow_ns.update({f.name: f.default for f in fields if f.default is not MISSING})
        shadow: Any = dataclasses.dataclass(frozen=True)(type(owner.__name__, (), shadow_ns))
        for name in ("__dataclass_fields__", "__dataclass_params__"):
            type.__setattr__(owner, name, getattr(shadow, name))
        return getattr(shadow, self.name)


_GENERATED = ("__init__", "__repr__", "__eq__", "__hash__")


def _stand_in(cls: Any, method: str) -> Callable[..., Any]:
    def first_call(*args: Any, **kwargs: Any) -> Any:
        _generate(cls)
        return getattr(cls, method)(*args, **kwargs)

    first_call.__name__ = first_call.__qualname__ = method
    return first_call


#: the code of every stand-in (they differ only in their closure)
_STAND_IN_CODE = _stand_in(object, "__init__").__code__


def _generate(cls: Any) -> None:
    """Generate the class's ``__init__``, ``__repr__``, ``__eq__`` and
    ``__hash__`` (one ``exec``; two threads may both do it, with the same result)."""
    fields: tuple[FieldInfo, ...] = cls.__frozen_fields__
    ns: dict[str, Any] = {}
    params = ["self"]
    body = []
    for i, f in enumerate(fields):
        if f.default is MISSING:
            params.append(f.name)
        else:
            ns[f"_d{i}"] = f.default
            params.append(f"{f.name}=_d{i}")
        ns[f"_set{i}"] = getattr(cls, f.name).__set__  # the slot's descriptor
        body.append(f"    _set{i}(self, {f.name})")
    values = "".join(f"self.{f.name}, " for f in fields)
    others = "".join(f"other.{f.name}, " for f in fields)
    shown = ", ".join(f"{f.name}={{self.{f.name}!r}}" for f in fields)
    source = "\n".join([
        f"def __init__({', '.join(params)}):", *(body or ["    pass"]),
        "def __repr__(self):",
        f"    return f'{{type(self).__qualname__}}({shown})'",
        "def __eq__(self, other):",
        "    if other.__class__ is not self.__class__: return NotImplemented",
        f"    return ({values}) == ({others})",
        "def __hash__(self):",
        f"    return hash(({values}))",
    ])
    exec(compile(source, f"<frozen {cls.__qualname__}>", "exec"), ns)  # noqa: S102 - our own generated code
    for method in _GENERATED:
        if getattr(cls.__dict__.get(method), "__code__", None) is _STAND_IN_CODE:
            function = ns[method]
            function.__qualname__ = f"{cls.__qualname__}.{method}"
            type.__setattr__(cls, method, function)
