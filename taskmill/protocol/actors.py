"""The actor ops of the wire vocabulary: a proxy asks the worker holding its actor.

Theory of operation
-------------------
Part of the vocabulary of :mod:`taskmill.protocol.vocabulary`, which imports
this module (so its ops are registered with the others) and re-exports its
classes.  An actor is one object living on one worker under the key of the
task that made it (:mod:`taskmill.server.actors`).  Its proxy
(:class:`taskmill.client.actor.Actor`), in a client or in a task, sends these
requests straight to that worker, never through the scheduler.  The reply is
not raised as an error when the actor's method raises: it is the outcome,
``{"status": "OK", "result": Serialized}``, ``{"status": "error", ...}`` as
``error_reply`` builds it (so the proxy re-raises the original type with the
remote traceback), or ``{"status": "lost", "text": ...}`` when no actor of
that key lives on the worker (released, or the worker restarted).  An error
reply to the request itself is therefore always taskmill's, never the user's.
"""

from __future__ import annotations

from taskmill.frozen import frozen
from taskmill.protocol.serialize import Serialized
from taskmill.protocol.wire_types import ANY, WORKER, Key, Message, message

__all__ = ["ActorCall", "ActorAttribute"]


@message("actor-call", ANY, WORKER, kind="request")
@frozen
class ActorCall(Message):
    """Call method ``name`` of the actor ``key`` with the pickled ``(args, kwargs)``
    in the actor's own thread, after the calls that came before; -> the outcome
    (see the module)."""

    key: Key
    name: str
    call: Serialized


@message("actor-attribute", ANY, WORKER, kind="request")
@frozen
class ActorAttribute(Message):
    """Read attribute ``name`` of the actor ``key`` (in its thread, after the
    calls that came before); -> the outcome (see the module)."""

    key: Key
    name: str
