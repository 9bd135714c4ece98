"""Turning a Python call into a task: name it and serialize it once.

``pack_call`` walks the arguments once to replace Futures with TaskRefs
(collecting the dependencies; arguments of plain types only, such as
``submit(inc, 1)``'s, are not walked), pickles the arguments once, and names the
task.  A pure task is named by a hash of the function token and the pickled
arguments we had to produce anyway, so naming costs one hash of bytes already
in hand; large arguments (over ``HASH_LIMIT`` bytes) get a unique name instead
of paying for hashing them.

``submit_options`` checks the options of ``submit``/``map`` that are not the
task's own (``fifo_timeout``, ``actor``), and ``map_keys`` names ``map``'s calls.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taskmill.core.taskref import TaskRef, map_nested
from taskmill.protocol import SerializationError, Serialized, serialize

HASH_LIMIT = 1 << 20

# Unique names: a random per-process prefix and a counter (cheaper than uuid4,
# and as unique: 96 random bits, then never the same counter value twice).
_UNIQUE_PREFIX = os.urandom(12).hex()
_unique_counter = itertools.count()


def unique_token() -> str:
    """A token no other call, in this process or any other, will get."""
    return f"{_UNIQUE_PREFIX}{next(_unique_counter):x}"


@dataclass(frozen=True, slots=True)
class PackedCall:
    key: str
    args: Serialized
    dependencies: tuple[str, ...]


def funcname(fn: Callable[..., Any]) -> str:
    """A short readable prefix for keys: the function's name."""
    name = getattr(fn, "__name__", None) or type(fn).__name__
    if name == "<lambda>":
        return "lambda"
    return name.replace("-", "_")


#: argument types that never hold a Future: a call made only of these needs no walk
_PLAIN_ARGUMENTS = frozenset({int, float, str, bytes, bool, type(None), complex})


def replace_futures(obj: Any, is_future: Callable[[Any], bool], found: dict[str, Any]) -> Any:
    """Replace each future in ``obj`` by a TaskRef, recording it in ``found``."""
    if type(obj) is tuple and all(type(x) in _PLAIN_ARGUMENTS for x in obj):
        return obj  # the common ``submit(f, 1, "a")``: nothing to replace, nothing to rebuild

    def to_ref(fut: Any) -> TaskRef:
        found[fut.key] = fut
        return TaskRef(fut.key)

    return map_nested(obj, to_ref, is_future)


def _serialize_args(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Serialized:
    try:
        return serialize((args, kwargs))
    except SerializationError:
        pass
    # Find the culprit so the message names it.
    for where, value in [*((f"argument {i}", a) for i, a in enumerate(args)),
                         *((f"keyword argument {k!r}", v) for k, v in kwargs.items())]:
        try:
            serialize(value)
        except SerializationError as exc:
            raise SerializationError(
                f"cannot send {where} of {funcname(fn)}() to the cluster: {exc}. "
                "Pass something picklable, or build the object inside the task."
            ) from None
    raise SerializationError(f"cannot serialize the arguments of {funcname(fn)}()")


def pack_call(
    fn: Callable[..., Any],
    func_token: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    pure: bool,
    key: str | None,
    is_future: Callable[[Any], bool],
    found: dict[str, Any],
) -> PackedCall:
    """Serialize a call, collect its dependencies, and name it."""
    local: dict[str, Any] = {}
    args = replace_futures(args, is_future, local)
    kwargs = replace_futures(kwargs, is_future, local) if kwargs else kwargs
    found.update(local)
    payload = _serialize_args(fn, args, kwargs)
    if key is None:
        key = f"{funcname(fn)}-{call_token(func_token, payload) if pure else unique_token()}"
    return PackedCall(key, payload, tuple(local))


def call_token(func_token: str, payload: Serialized) -> str:
    """A deterministic token for a pure call, or a unique one when its
    arguments are too large to be worth hashing."""
    if payload.nbytes > HASH_LIMIT:
        return unique_token()
    h = hashlib.blake2b(func_token.encode(), digest_size=16)
    for frame in payload.frames:
        h.update(frame)
    return h.hexdigest()


def submit_options(fifo_timeout: Any, actor: bool, actors: bool, fn: Any) -> bool:
    """Check the options of ``submit``/``map`` that are not the task's own
    (see ``Executor.submit``); True: ``fn`` is to become an actor."""
    if fifo_timeout is not None and not isinstance(fifo_timeout, (str, int, float, datetime.timedelta)):
        raise TypeError(f"fifo_timeout must be a duration such as '100 ms' or a number of seconds, "
                        f"not {type(fifo_timeout).__name__}")
    if (actor or actors) and not isinstance(fn, type):
        raise TypeError(f"{'actor' if actor else 'actors'}=True needs a class to make the actor "
                        f"from, got {type(fn).__name__} {fn!r}; submit the class itself, e.g. "
                        "submit(Counter, 0, actor=True)")
    return bool(actor or actors)


def map_keys(key: str | list[str] | None, n: int) -> list[str | None]:
    """The keys of ``map``'s ``n`` calls: as given (a list), ``key-i`` (a
    string), or None (made from the function and arguments)."""
    if isinstance(key, (list, tuple)):
        if len(key) != n:
            raise ValueError(f"map got {len(key)} keys for {n} calls")
        return list(key)
    if isinstance(key, str):
        return [f"{key}-{i}" for i in range(n)]
    return [None] * n
