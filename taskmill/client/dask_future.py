"""The Future class used when dask is installed: also a dask ``TaskRef``.

Dask recognises a reference to data held by a scheduler by its ``TaskRef``
class (``delayed(f)(future)``, ``Task(..., future)``), so our futures must be
TaskRefs.  Subclassing dask at ``import taskmill`` would import dask (a quarter
second), so the Executor builds this subclass when it starts, only where dask
is installed; ``isinstance(x, taskmill.Future)`` holds for it.
"""

from __future__ import annotations

from dask._task_spec import TaskRef

from taskmill.client.future import Future


class DaskFuture(Future, TaskRef):  # type: ignore[misc]  # both define .key: a str here
    """A taskmill Future that dask graphs accept as a task reference."""

    # TaskRef compares and hashes by key; a Future is itself (as concurrent.futures' are)
    __eq__ = object.__eq__
    __hash__ = object.__hash__
