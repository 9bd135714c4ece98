"""The plugin ops of the wire vocabulary (``Executor.register_plugin``).

Theory of operation
-------------------
Part of the vocabulary of :mod:`taskmill.protocol.vocabulary`, which imports
this module at its end and re-exports its classes.  A client registers a
pickled plugin with the scheduler (``register-plugin``), which keeps it and
sets it up on the nodes it is for with ``plugin-setup``: every worker (or
nanny) present, and each one that joins later.  A node answers
``plugin-setup`` with "OK" or, when the plugin's setup raised, with the error
reply of that exception (the dict of ``protocol.error_reply``) as its
*result*: the scheduler never unpickles a worker's exception, it hands the
replies to the client, which raises the original exception.  All four are
requests (their own connection), so no field is filled in by the receiver.
"""

from __future__ import annotations

from taskmill.frozen import frozen
from taskmill.protocol.serialize import Serialized
from taskmill.protocol.wire_types import ANY, CLIENT, SCHEDULER, Message, message

__all__ = ["RegisterPlugin", "UnregisterPlugin", "PluginSetup", "PluginTeardown"]

#: the kinds of plugin ``RegisterPlugin.plugin_kind`` names
PLUGIN_KINDS = ("worker", "nanny", "scheduler")


@message("register-plugin", CLIENT, SCHEDULER, kind="request")
@frozen
class RegisterPlugin(Message):
    """Keep ``plugin`` (pickled) under ``name`` and set it up on the nodes of
    ``plugin_kind`` ("worker", "nanny" or "scheduler"), now and as they join;
    -> {address: "OK" or an error reply} of the nodes set up now."""

    plugin_kind: str
    name: str
    plugin: Serialized


@message("unregister-plugin", CLIENT, SCHEDULER, kind="request")
@frozen
class UnregisterPlugin(Message):
    """Forget the plugin ``name`` and tear it down where it is set up; -> "OK"."""

    name: str


@message("plugin-setup", SCHEDULER, ANY, kind="request")
@frozen
class PluginSetup(Message):
    """A worker or nanny sets up ``plugin`` under ``name`` (replacing a plugin
    of that name); with ``unless_same``, a node that has this very plugin (the
    same pickled bytes) set up under ``name`` keeps it and does nothing;
    -> "OK" or the error reply of the exception its setup raised."""

    name: str
    plugin: Serialized
    unless_same: bool = False


@message("plugin-teardown", SCHEDULER, ANY, kind="request")
@frozen
class PluginTeardown(Message):
    """A worker or nanny tears down the plugin ``name`` (if set up); -> "OK"."""

    name: str
