"""The scheduler's side of plugins: the registry of worker, nanny and
scheduler plugins, and the scheduler plugins' hooks.

Theory of operation
-------------------
* ``register-plugin`` of a worker or nanny plugin stores the pickled plugin
  (the scheduler never opens it) and asks every worker, or every nanny of a
  connected worker, to set it up (``plugin-setup``, no time limit: it runs
  user code, as ``Executor.run``).  The nodes' answers go back to the client
  as they are.  When one setup failed the plugin is unregistered again (torn
  down where it was set up), so that no joining worker fails the same way.
  A node that cannot be reached (it is leaving) is left out with a warning:
  should it come back it gets the plugin when it registers.
* A joining worker gets every worker plugin (:meth:`worker_joining`) before
  the scheduler's state machine learns of it, so it runs no task before its
  plugins are set up; a setup failing there is logged and the worker joins
  anyway.  A joining worker's nanny is asked, in the background, to set up
  every nanny plugin ``unless_same``: a nanny that has the plugin already
  (its worker restarted) does nothing, one that lacks it (a new nanny, or one
  that missed a registration) sets it up, which with ``restart`` restarts
  that new worker once.  So the scheduler keeps no record per nanny, and
  nothing is left behind when nannies come and go.
* Scheduler plugins are unpickled here, started, and called from the shell:
  ``add_worker`` / ``remove_worker`` on membership changes, ``transition``
  and ``update_graph`` after each ``handle`` of the state machine, but only
  when some plugin overrides them (``watching``), so a scheduler without
  such plugins pays one attribute test per batch of events.  Transitions are
  read from the machine's ``transition_log`` (see
  :func:`taskmill.server.plugins.story_since`).
* ``--preload`` modules get ``taskmill_setup(scheduler)`` at start and
  ``taskmill_teardown(scheduler)`` at close, after every plugin's ``close``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from taskmill.plugins import SchedulerPlugin
from taskmill.protocol import Serialized
from taskmill.protocol.plugins import PLUGIN_KINDS
from taskmill.protocol.vocabulary import (
    PluginSetup,
    PluginTeardown,
    RegisterPlugin,
    UnregisterPlugin,
    UpdateGraph,
)
from taskmill.server.plugins import Preloads, StoryEntry, call_hook, last_entry, overrides, story_since

logger = logging.getLogger("taskmill.scheduler")


class SchedulerPlugins:
    """The plugins a scheduler keeps, and its scheduler plugins' hooks."""

    def __init__(self, scheduler: Any, preload: Sequence[str] = ()) -> None:
        self.scheduler = scheduler
        self.preloads = Preloads(preload)
        #: worker and nanny plugins by name, pickled (as the clients sent them)
        self.stored: dict[str, dict[str, Serialized]] = {"worker": {}, "nanny": {}}
        #: scheduler plugins by name (unpickled)
        self.plugins: dict[str, Any] = {}
        #: the plugins that override ``transition`` / ``update_graph``
        self.on_transition: list[Any] = []
        self.on_graph: list[Any] = []
        #: whether :meth:`before_handle` / :meth:`handled` have anything to do
        self.watching = False
        scheduler.serve({RegisterPlugin: self._register, UnregisterPlugin: self._unregister})

    # ------------------------------------------------------------------ #
    # Lifecycle
    # ------------------------------------------------------------------ #
    async def start(self) -> None:
        """The scheduler started: run the preloads' ``taskmill_setup``."""
        await self.preloads.setup(self.scheduler)

    async def close(self) -> None:
        """The scheduler closes: close every scheduler plugin, then the preloads."""
        for name in list(self.plugins):
            await self._close_plugin(name)
        await self.preloads.teardown(self.scheduler)

    async def add_plugin(self, plugin: Any, name: str | None = None) -> str:
        """Start the scheduler plugin ``plugin`` under ``name`` (replacing one of
        that name, as ``Scheduler.add_plugin`` in dask.distributed); its name."""
        name = name or getattr(plugin, "name", None) or f"{type(plugin).__name__}-{uuid.uuid4()}"
        if name in self.plugins:
            await self._close_plugin(name)
        await call_hook(plugin.start, self.scheduler)
        self.plugins[name] = plugin
        self._rewatch()
        return name

    async def _close_plugin(self, name: str) -> None:
        plugin = self.plugins.pop(name)
        self._rewatch()
        try:
            await call_hook(plugin.close)
        except Exception:
            logger.exception("close of scheduler plugin %r failed", name)

    def _rewatch(self) -> None:
        plugins = self.plugins.values()
        self.on_transition = [p for p in plugins if overrides(p, SchedulerPlugin, "transition")]
        self.on_graph = [p for p in plugins if overrides(p, SchedulerPlugin, "update_graph")]
        self.watching = bool(self.on_transition or self.on_graph)

    # ------------------------------------------------------------------ #
    # Requests
    # ------------------------------------------------------------------ #
    async def _register(self, msg: RegisterPlugin, comm: Any) -> Any:
        if msg.plugin_kind not in PLUGIN_KINDS:
            raise ValueError(f"register-plugin: unknown plugin kind {msg.plugin_kind!r}; "
                             f"expected one of {PLUGIN_KINDS}")
        await self._forget(msg.name)  # registering a name again replaces the plugin
        if msg.plugin_kind == "scheduler":
            await self.add_plugin(msg.plugin.deserialize(), msg.name)
            return {self.scheduler.address: "OK"}
        self.stored[msg.plugin_kind][msg.name] = msg.plugin
        targets = self._targets(msg.plugin_kind)
        replies = await self._ask_all(targets, PluginSetup(msg.name, msg.plugin))
        if any(reply != "OK" for reply in replies.values()):
            logger.warning("plugin %r failed to set up on %s: not registered", msg.name,
                           sorted(a for a, r in replies.items() if r != "OK"))
            await self._forget(msg.name)
        return replies

    async def _unregister(self, msg: UnregisterPlugin, comm: Any) -> str:
        if not await self._forget(msg.name):
            known = sorted([*self.plugins, *self.stored["worker"], *self.stored["nanny"]])
            raise ValueError(f"no plugin named {msg.name!r} is registered (registered: {known}); "
                             f"unregister_plugin takes the name register_plugin was given")
        return "OK"

    async def forget_if_unwanted(self, name: str, unwanted: Callable[[str], bool]) -> None:
        """Drop the plugin ``name`` if ``unwanted(name)`` still holds now (a
        client may have asked for it again since the decision was made)."""
        if unwanted(name):
            await self._forget(name)

    async def _forget(self, name: str) -> bool:
        """Drop the plugin ``name`` of any kind, tearing it down; whether there was one."""
        if name in self.plugins:
            await self._close_plugin(name)
            return True
        for kind, store in self.stored.items():
            if store.pop(name, None) is not None:
                await self._ask_all(self._targets(kind), PluginTeardown(name))
                return True
        return False

    def _targets(self, kind: str) -> list[str]:
        """The connected workers, or their nannies."""
        workers = list(self.scheduler.worker_streams)
        if kind == "worker":
            return workers
        states = self.scheduler.state.workers
        return list(dict.fromkeys(states[w].nanny for w in workers if w in states and states[w].nanny))

    async def _ask_all(self, addresses: Iterable[str], msg: Any) -> dict[str, Any]:
        """Each address's reply to ``msg``; unreachable ones are logged and left out."""
        addresses = list(addresses)
        pool = self.scheduler.pool
        replies = await asyncio.gather(*(pool.rpc(a).ask(msg, timeout=None) for a in addresses),
                                       return_exceptions=True)
        answered = {}
        for address, reply in zip(addresses, replies):
            if isinstance(reply, (OSError, asyncio.TimeoutError)):
                logger.warning("%s could not be asked to %s (%s): left out", address, msg.op, reply)
            elif isinstance(reply, BaseException):
                raise reply
            else:
                answered[address] = reply
        return answered

    # ------------------------------------------------------------------ #
    # Hooks called by the scheduler shell
    # ------------------------------------------------------------------ #
    async def worker_joining(self, worker: str, nanny: str | None) -> None:
        """Set the worker plugins up on a joining worker (before it gets tasks),
        and ask its nanny, in the background, for the nanny plugins it lacks."""
        for name, payload in list(self.stored["worker"].items()):
            try:
                replies = await self._ask_all([worker], PluginSetup(name, payload))
            except Exception as exc:  # e.g. a malformed reply: the worker joins all the same
                replies = {worker: {"text": f"{type(exc).__name__}: {exc}"}}
            if replies.get(worker, "OK") != "OK":
                logger.warning("plugin %r failed to set up on joining worker %s: %s", name, worker,
                               replies[worker].get("text"))
        if nanny and self.stored["nanny"]:
            self.scheduler.spawn(self._setup_nanny(nanny, list(self.stored["nanny"])),
                                 "nanny-plugins")

    async def _setup_nanny(self, nanny: str, names: list[str]) -> None:
        for name in names:
            payload = self.stored["nanny"].get(name)
            if payload is None:
                continue
            replies = await self._ask_all([nanny], PluginSetup(name, payload, unless_same=True))
            if replies.get(nanny, "OK") != "OK":
                logger.warning("nanny plugin %r failed to set up on nanny %s: %s", name, nanny,
                               replies[nanny].get("text"))

    def worker_added(self, worker: str) -> None:
        """Call the ``add_worker`` hooks."""
        self._call_each("add_worker", scheduler=self.scheduler, worker=worker)

    def worker_removed(self, worker: str) -> None:
        """Call the ``remove_worker`` hooks."""
        self._call_each("remove_worker", scheduler=self.scheduler, worker=worker)

    def _call_each(self, hook: str, **kwargs: Any) -> None:
        for name, plugin in list(self.plugins.items()):
            if overrides(plugin, SchedulerPlugin, hook):
                try:
                    result = getattr(plugin, hook)(**kwargs)
                    if asyncio.iscoroutine(result):
                        self.scheduler.spawn(result, f"plugin-{name}-{hook}")
                except Exception:
                    logger.exception("scheduler plugin %r: %s failed", name, hook)

    def before_handle(self) -> StoryEntry | None:
        """Where the transition log stands before a ``handle`` (only when ``watching``)."""
        return last_entry(self.scheduler.state.transition_log)

    def handled(self, events: Sequence[Any], last: StoryEntry | None) -> None:
        """Call the ``transition`` and ``update_graph`` hooks for one ``handle``."""
        for entry in story_since(self.scheduler.state.transition_log, last) if self.on_transition else ():
            key, start, finish, stimulus_id, note = entry
            if note:
                continue
            for plugin in self.on_transition:
                try:
                    plugin.transition(key, start, finish, stimulus_id=stimulus_id)
                except Exception:
                    logger.exception("scheduler plugin transition hook failed")
        for event in events if self.on_graph else ():
            if isinstance(event, UpdateGraph):
                for plugin in self.on_graph:
                    try:
                        plugin.update_graph(self.scheduler, client=event.client,
                                            keys=set(event.wanted),
                                            tasks=[spec.key for spec in event.tasks],
                                            stimulus_id=event.stimulus_id)
                    except Exception:
                        logger.exception("scheduler plugin update_graph hook failed")
