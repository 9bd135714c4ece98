"""Plugins: user code that sets up workers, nannies and the scheduler.

Theory of operation
-------------------
A plugin is an object of a subclass of :class:`WorkerPlugin`,
:class:`SchedulerPlugin` or :class:`NannyPlugin` that the user hands to
``Executor.register_plugin``; the Executor pickles it and sends it to the
scheduler, which keeps it under its name (``plugin.name`` if it has one, else
the class name and a unique suffix, as dask.distributed does):

* a **worker plugin** is set up (``setup(worker)``) on every worker present,
  and on every worker that joins later before the scheduler sends it any task;
  it is torn down (``teardown(worker)``) when unregistered or when its worker
  closes.  ``transition(key, start, finish, **kw)`` is called after each change
  of a task's state on that worker.
* a **nanny plugin** is set up in every nanny process (the supervisor of a
  worker process) present and in every nanny whose worker joins later; with
  ``restart = True`` the nanny then restarts its worker process, which thus
  starts with what the plugin changed (its environment, for
  :class:`Environ`).  Workers without a nanny (in-process clusters,
  ``--no-nanny``) have no nanny plugins.
* a **scheduler plugin** is unpickled in the scheduler process (the one user
  object it unpickles besides ``run_on_scheduler``'s call), started
  (``start(scheduler)``) and told of workers that join or leave, of task
  transitions and of new graphs; ``close()`` is called when it is
  unregistered and when the scheduler closes.

Registering a name again replaces the plugin (teardown of the old, setup of
the new).  A setup that raises fails the registration with the original
exception type and the remote traceback; unlike dask.distributed, such a
plugin is then unregistered (torn down where its setup succeeded) rather than
kept for the workers that join later, which would fail the same way.

Every hook may be a coroutine function (it is awaited on the node's event
loop).  A hook that raises after setup (``transition``, ``add_worker`` ...)
is logged by the node and does not stop it.  Hooks that are not overridden
cost nothing: the nodes only watch transitions when a plugin defines
``transition``.
"""

from __future__ import annotations

import io
import os
import sys
import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["Environ", "NannyPlugin", "SchedulerPlugin", "UploadDirectory", "WorkerPlugin"]


class WorkerPlugin:
    """Base class of plugins run in each worker (see ``Executor.register_plugin``).

    Override what you need; an optional class or instance attribute ``name``
    names the plugin (registering the same name again replaces it)."""

    def setup(self, worker: Any) -> Any:
        """Called on the worker's event loop when the plugin is registered, and
        on each worker that joins later (before it runs any task)."""

    def teardown(self, worker: Any) -> Any:
        """Called when the plugin is unregistered or replaced, and when the worker closes."""

    def transition(self, key: str, start: str, finish: str, **kwargs: Any) -> None:
        """Called on the worker's event loop after the task ``key`` moved from
        state ``start`` to ``finish`` on this worker (``stimulus_id=`` says why)."""


class SchedulerPlugin:
    """Base class of plugins run in the scheduler (see ``Executor.register_plugin``)."""

    def start(self, scheduler: Any) -> Any:
        """Called when the plugin is registered (or the scheduler starts, for a preload)."""

    def close(self) -> Any:
        """Called when the plugin is unregistered or replaced, and when the scheduler closes."""

    def add_worker(self, scheduler: Any, worker: str) -> Any:
        """Called when the worker at address ``worker`` joined."""

    def remove_worker(self, scheduler: Any, worker: str) -> Any:
        """Called when the worker at address ``worker`` left."""

    def transition(self, key: str, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        """Called after the task ``key`` moved from ``start`` to ``finish`` on the
        scheduler (``stimulus_id=`` says why)."""

    def update_graph(self, scheduler: Any, *, client: str, keys: set[str], tasks: list[str],
                     **kwargs: Any) -> None:
        """Called after a client submitted tasks: ``tasks`` their keys, ``keys``
        the keys the client holds futures for (``stimulus_id=`` too)."""


class NannyPlugin:
    """Base class of plugins run in each nanny, the process that supervises a
    worker process (see ``Executor.register_plugin``).  With ``restart = True``
    the nanny restarts its worker after ``setup``, so that the new worker
    process sees what ``setup`` changed."""

    #: restart the worker process after ``setup``
    restart = False

    def setup(self, nanny: Any) -> Any:
        """Called in the nanny process when the plugin is registered, and in
        each nanny whose worker joins later."""

    def teardown(self, nanny: Any) -> Any:
        """Called when the plugin is unregistered or replaced, and when the nanny closes."""


class Environ(NannyPlugin):
    """Set environment variables in every worker process: each nanny adds
    them to the environment it starts its worker process with (``nanny.env``,
    not the nanny's own ``os.environ``: the nannies of an embedded cluster live
    in the client's process) and restarts its worker, as dask.distributed's
    ``Environ``.  Values are turned into strings.  Unregistering takes them
    out of ``nanny.env`` for the next worker process (without a restart).

    Only workers with a nanny are affected: an in-process worker shares the
    environment of the process that started it."""

    restart = True

    def __init__(self, environ: Mapping[str, Any] | None = None) -> None:
        self.environ = {str(k): str(v) for k, v in (environ or {}).items()}

    def setup(self, nanny: Any) -> None:
        """Add the variables to the environment of the nanny's next worker process."""
        nanny.env.update(self.environ)

    def teardown(self, nanny: Any) -> None:
        """Leave the variables out of the nanny's next worker process."""
        for name in self.environ:
            nanny.env.pop(name, None)


#: path components that ``UploadDirectory`` leaves out by default
DEFAULT_SKIP_WORDS = (".git", ".github", ".pytest_cache", "__pycache__", "tests", "docs")


def _is_bytecode(filename: str) -> bool:
    return filename.endswith(".pyc")


class UploadDirectory(WorkerPlugin):
    """Copy a local directory into every worker's local directory (current
    workers and those that join later); with ``update_path=True`` the copy is
    put at the front of ``sys.path``, so the modules in it are importable by
    tasks.

    The directory is zipped when the plugin is made (files whose path has a
    component in ``skip_words``, or for which one of ``skip`` returns True,
    are left out).  Unlike dask.distributed's (a nanny plugin that may
    restart the workers) this is a worker plugin: it reaches in-process
    workers too, and a restarted worker process gets it again when it joins."""

    def __init__(self, path: str, update_path: bool = False,
                 skip_words: Iterable[str] = DEFAULT_SKIP_WORDS,
                 skip: Iterable[Callable[[str], bool]] = (_is_bytecode,)) -> None:
        path = os.path.abspath(os.path.expanduser(path))
        if not os.path.isdir(path):
            raise ValueError(f"UploadDirectory needs a directory; {path!r} is not one")
        self.path = path
        self.update_path = update_path
        self.name = "upload-directory-" + os.path.basename(path)
        words, tests = set(skip_words), tuple(skip)
        import zipfile  # here, not at the top: import taskmill stays light

        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if d not in words)
                for filename in sorted(files):
                    full = os.path.join(root, filename)
                    relative = os.path.relpath(full, path)
                    if words & set(relative.split(os.sep)) or any(t(full) for t in tests):
                        continue
                    archive.write(full, relative)
        self.data = buffer.getvalue()

    def target(self, worker: Any) -> str:
        """Where the copy goes on ``worker``."""
        return os.path.join(worker.local_directory, os.path.basename(self.path))

    def setup(self, worker: Any) -> None:
        """Unpack the directory into the worker's local directory."""
        target = self.target(worker)
        import zipfile

        with zipfile.ZipFile(io.BytesIO(self.data)) as archive:
            archive.extractall(target)
        if self.update_path and target not in sys.path:
            sys.path.insert(0, target)
        importlib.invalidate_caches()

    def teardown(self, worker: Any) -> None:
        """Take the copy off ``sys.path`` (the files stay until the worker's directory goes)."""
        target = self.target(worker)
        if self.update_path and target in sys.path:
            sys.path.remove(target)
