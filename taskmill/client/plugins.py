"""Client side of plugins: ``Executor.register_plugin`` / ``unregister_plugin``.

Theory of operation
-------------------
The plugin's class (:mod:`taskmill.plugins`) says where it goes: a
``SchedulerPlugin`` to the scheduler, a ``NannyPlugin`` to the nannies, a
``WorkerPlugin`` to the workers.  It is pickled here and sent to the
scheduler (``register-plugin``), which sets it up on the nodes present and
keeps it for those that join later.  The nodes' answers come back by
address; when a setup raised, the first failure is raised here as the
original exception type with the node's traceback as ``__cause__`` and a note
naming the plugin and the node (the scheduler has then unregistered the
plugin).  Both calls run user code on the nodes, so they have no time limit,
as ``Executor.run``.
"""

from __future__ import annotations

import uuid
from typing import Any

from taskmill.client.calls import funcname
from taskmill.client.session import Session
from taskmill.plugins import NannyPlugin, SchedulerPlugin, WorkerPlugin
from taskmill.protocol import serialize
from taskmill.protocol.messages import exception_from_reply
from taskmill.protocol.vocabulary import RegisterPlugin, UnregisterPlugin

_KINDS = ((SchedulerPlugin, "scheduler"), (NannyPlugin, "nanny"), (WorkerPlugin, "worker"))


def plugin_kind(plugin: Any) -> str:
    """"worker", "nanny" or "scheduler"; a TypeError for any other object."""
    for base, kind in _KINDS:
        if isinstance(plugin, base):
            return kind
    raise TypeError(f"register_plugin takes an instance of a subclass of taskmill.plugins."
                    f"WorkerPlugin, SchedulerPlugin or NannyPlugin, not {type(plugin).__qualname__} "
                    f"(did you pass the class instead of an instance?)")


def plugin_name(plugin: Any, name: str | None) -> str:
    """``name``, else ``plugin.name``, else the class name with a unique suffix (as dask)."""
    return name or getattr(plugin, "name", None) or f"{funcname(type(plugin))}-{uuid.uuid4()}"


async def register_plugin(session: Session, plugin: Any, name: str | None) -> dict[str, str]:
    """Register ``plugin``; ``{address: "OK"}`` of the nodes it was set up on."""
    kind = plugin_kind(plugin)
    name = plugin_name(plugin, name)
    replies = await session.scheduler_call(RegisterPlugin(kind, name, serialize(plugin)), timeout=None)
    failed = {address: reply for address, reply in replies.items() if reply != "OK"}
    if failed:
        address, reply = next(iter(failed.items()))
        exc = exception_from_reply(reply if isinstance(reply, dict) else {"text": str(reply)})
        exc.add_note(f"plugin {name!r} failed to set up on {kind} {address} ({len(failed)} of "
                     f"{len(replies)} failed); it is not registered, the {kind}s keep running")
        raise exc
    return dict(replies)


async def unregister_plugin(session: Session, name: str) -> str:
    """Unregister the plugin ``name`` (tearing it down everywhere)."""
    return str(await session.scheduler_call(UnregisterPlugin(name), timeout=None))
