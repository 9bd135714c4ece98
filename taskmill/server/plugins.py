"""The node side of plugins and preloads: what a worker or nanny keeps set
up, and the ``--preload`` modules of every node.

Theory of operation
-------------------
* :class:`PluginHost` (one per worker or nanny) answers the scheduler's
  ``plugin-setup`` / ``plugin-teardown`` requests.  A setup that raises is
  answered with the error reply of its exception (the scheduler passes it on
  to the client unopened) and leaves nothing set up.  ``close()`` tears every
  plugin down when the node closes.  A nanny's host restarts the worker
  process after setting up a plugin whose ``restart`` is true.
* Transition hooks: a worker calls :meth:`PluginHost.transitions_handled`
  after each ``handle`` of its state machine, and only when ``watching`` (a
  plugin overrides ``transition``), so a worker without such plugins pays
  nothing.  The changes are read from the machine's story log
  (:func:`story_since`), whose entries are new tuples: the last entry seen
  marks where the new ones start.
* :class:`Preloads`: the modules of ``--preload`` (a module name or a path to
  a ``.py`` file), imported when the node is made, so that a bad name fails
  the start at once; ``taskmill_setup(node)`` runs when the node starts and
  ``taskmill_teardown(node)`` when it closes (either may be a coroutine
  function; a module may define neither).
* Hooks run on the node's event loop (as dask.distributed's do); a hook that
  raises after setup is logged and the node goes on.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from types import ModuleType
from typing import Any

from taskmill.protocol import error_reply
from taskmill.protocol.vocabulary import PluginSetup, PluginTeardown

logger = logging.getLogger("taskmill.plugins")

#: a story entry: (key, start, finish, stimulus_id, ...)
StoryEntry = tuple[Any, ...]


async def call_hook(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, awaited when it returns an awaitable."""
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


def overrides(plugin: Any, base: type, method: str) -> bool:
    """Whether ``plugin`` defines ``method`` other than ``base``'s no-op."""
    found = getattr(type(plugin), method, None)
    return found is not None and found is not getattr(base, method, None)


def story_since(log: Sequence[StoryEntry], last: StoryEntry | None) -> list[StoryEntry]:
    """The entries of ``log`` (oldest first) after the entry object ``last``
    (all of them when ``last`` is None or no longer in the log)."""
    new: list[StoryEntry] = []
    for entry in reversed(log):
        if entry is last:
            break
        new.append(entry)
    new.reverse()
    return new


def last_entry(log: Sequence[StoryEntry]) -> StoryEntry | None:
    """The newest entry of a story log, or None when it is empty."""
    return log[-1] if log else None


class PluginHost:
    """The plugins set up on one worker or nanny (``node``)."""

    def __init__(self, node: Any, base: type,
                 restart: Callable[[], Awaitable[Any]] | None = None) -> None:
        self.node = node
        self.base = base
        #: called after setting up a plugin whose ``restart`` is true (a nanny's)
        self.restart = restart
        self.plugins: dict[str, Any] = {}
        #: name -> the pickled bytes each plugin was set up from (``unless_same``)
        self._sources: dict[str, bytes] = {}
        #: the plugins that override ``transition`` (empty: no cost at all)
        self.watching: list[Any] = []
        node.serve({PluginSetup: self._setup, PluginTeardown: self._teardown})

    async def _setup(self, msg: PluginSetup, comm: Any) -> Any:
        source = b"".join(bytes(frame) for frame in msg.plugin.frames)
        if msg.unless_same and self._sources.get(msg.name) == source and msg.name in self.plugins:
            return "OK"  # this node has it already (a nanny whose worker joins again)
        try:
            plugin = msg.plugin.deserialize()
            await self.add(msg.name, plugin)
            self._sources[msg.name] = source
        except Exception as exc:  # the user's setup (or class) failed: the client raises it
            logger.warning("%s: plugin %r failed to set up: %s", self.node.address, msg.name, exc)
            return error_reply(exc)
        if self.restart is not None and getattr(plugin, "restart", False):
            await self.restart()
        return "OK"

    async def _teardown(self, msg: PluginTeardown, comm: Any) -> str:
        await self.remove(msg.name)
        return "OK"

    async def add(self, name: str, plugin: Any) -> None:
        """Set ``plugin`` up under ``name``, replacing (tearing down) one of that name."""
        await self.remove(name)
        await call_hook(plugin.setup, self.node)
        self.plugins[name] = plugin
        self._rewatch()

    async def remove(self, name: str) -> None:
        """Tear the plugin ``name`` down, if set up; its teardown raising is logged."""
        plugin = self.plugins.pop(name, None)
        self._sources.pop(name, None)
        if plugin is None:
            return
        self._rewatch()
        try:
            await call_hook(plugin.teardown, self.node)
        except Exception:
            logger.exception("%s: teardown of plugin %r failed", self.node.address, name)

    async def close(self) -> None:
        """Tear every plugin down (the node closes)."""
        for name in list(self.plugins):
            await self.remove(name)

    def _rewatch(self) -> None:
        self.watching = [p for p in self.plugins.values() if overrides(p, self.base, "transition")]

    def transitions_handled(self, log: Sequence[StoryEntry], last: StoryEntry | None) -> None:
        """Call the ``transition`` hooks for the worker machine's story entries
        after ``last`` (notes, whose ``start`` is "ignored" or "note", are skipped)."""
        for key, start, finish, stimulus_id in story_since(log, last):
            if start in ("ignored", "note"):
                continue
            for plugin in self.watching:
                try:
                    plugin.transition(key, start, finish, stimulus_id=stimulus_id)
                except Exception:
                    logger.exception("%s: plugin transition hook failed", self.node.address)


class Preloads:
    """The ``--preload`` modules of one node."""

    def __init__(self, names: Sequence[str]) -> None:
        self.modules = [load_preload(name) for name in names]

    async def setup(self, node: Any) -> None:
        """Call each module's ``taskmill_setup(node)``, in order."""
        for module in self.modules:
            hook = getattr(module, "taskmill_setup", None)
            if hook is not None:
                await call_hook(hook, node)

    async def teardown(self, node: Any) -> None:
        """Call each module's ``taskmill_teardown(node)``, last first; failures are logged."""
        for module in reversed(self.modules):
            hook = getattr(module, "taskmill_teardown", None)
            if hook is None:
                continue
            try:
                await call_hook(hook, node)
            except Exception:
                logger.exception("taskmill_teardown of preload %s failed", module.__name__)


def load_preload(name: str) -> ModuleType:
    """Import the preload ``name``: a module name, or the path of a ``.py`` file."""
    if name.endswith(".py") or os.sep in name:
        path = os.path.abspath(name)
        if not os.path.isfile(path):
            raise ImportError(f"--preload {name!r}: no such file ({path})")
        module_name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"--preload {name!r}: cannot load {path} as a module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(f"--preload {name!r}: cannot import it ({exc}); give a module on "
                          f"sys.path (see $PYTHONPATH) or the path of a .py file") from exc
