"""Dask collections on taskmill: ``get``, ``compute``, ``persist``, and being
dask's default scheduler while an Executor is open.

Theory of operation
-------------------
* ``get(dsk, keys)`` packs the graph (:mod:`taskmill.client.dask_graph`,
  with the ``dask.annotate`` annotations of :mod:`taskmill.client.dask_annotations`),
  submits it as one graph wanting only ``keys``, gathers, and returns values in
  the shape of ``keys``.  The futures are released on return, so the cluster
  frees everything.  While a graph is packed (in the caller's thread) cycle
  collection is paused (:func:`cyclic_gc_paused`) and the interpreter's
  switch interval is short (:func:`loop_turns_first`), so the client's event
  loop, which runs an embedded scheduler, keeps answering.
* ``compute`` finalizes each collection the way ``dask.compute`` does
  (``FinalizeCompute`` of its optimized expression) and returns one Future per
  collection; ``persist`` submits each collection's optimized graph and
  rebuilds the collection around the Futures of its keys
  (``__dask_postpersist__``), so later computations start from the data held
  on the cluster.
* While an Executor is open its ``get`` is dask's ``scheduler`` setting and
  dataframe shuffles use the ``tasks`` method (the ``disk`` one only works on
  one machine).  The settings in force before come back when the last open
  Executor closes.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from taskmill.client.dask_annotations import TASK_ANNOTATIONS
from taskmill.client.dask_graph import flatten_keys, pack_slices, repack, to_key, unique

if TYPE_CHECKING:
    from taskmill.client.future import Future
    from taskmill.client.session import Session
    from taskmill.protocol import Serialized


class ExecutorLike(Protocol):
    """What this module uses of an :class:`taskmill.client.executor.Executor`
    (which imports this module to serve its ``get``, ``compute`` and ``persist``)."""

    @property
    def asynchronous(self) -> bool: ...

    @property
    def session(self) -> Session: ...

    def _functions_to_send(self, token: str, payload: Serialized) -> dict[str, Serialized]: ...

    def gather(self, futures: Any) -> Any: ...

    def get(self, dsk: Any, keys: Any, **kwargs: Any) -> Any: ...


# --------------------------------------------------------------------------- #
# get / compute / persist
# --------------------------------------------------------------------------- #
def submit_graph(executor: ExecutorLike, dsk: Any, keys: Sequence[Any],
                 options: Mapping[str, Any] | None = None) -> list[Future]:
    """Submit a dask graph; one Future per key in ``keys`` (a flat list).  Keys
    the graph uses without defining must be held by futures of this client.
    ``options``: the call's task options (``priority``, ``retries``,
    ``workers``, ``allow_other_workers``, ``resources``), under the graph's
    ``dask.annotate`` annotations.

    The graph goes out slice by slice as it is packed, so the cluster starts
    on the first tasks while the rest is packed.  A task that a later slice
    depends on is held here until every slice is out (else the scheduler
    could free it as unneeded); those extra Futures go when this returns."""
    session = executor.session
    session.check_running()
    wanted = unique(to_key(k) for k in keys)
    wanted_set = set(wanted)
    held: dict[str, Future] = {}
    with cyclic_gc_paused(), loop_turns_first():
        for piece in pack_slices(dsk, generation=session.next_generation(), options=options):
            want = unique([*(t.key for t in piece.tasks if t.key in wanted_set),
                           *piece.needed_later])
            funcs = executor._functions_to_send(*next(iter(piece.funcs.items())))
            for future in session.submit_tasks(piece.tasks, funcs, wanted=want):
                held.setdefault(future.key, future)
        rest = [k for k in wanted if k not in held]  # data already on the cluster
        if rest:
            for future in session.submit_tasks([], {}, wanted=rest):
                held[future.key] = future
    return [held[k] for k in wanted]


#: the interpreter's switch interval (seconds) while a graph is packed
PACKING_SWITCH_INTERVAL = 0.001

_switch_lock = threading.Lock()
_packing = 0  # graphs being packed now, in any thread
_saved_interval = 0.0


@contextmanager
def loop_turns_first() -> Iterator[None]:
    """A shorter switch interval (``PACKING_SWITCH_INTERVAL``) while a graph
    is packed.  Packing holds the GIL in the caller's thread for seconds to
    minutes, while the client's event loop (and the embedded scheduler on
    it) takes in the slices, places the tasks and answers requests: each
    time the loop wakes it waits for the packing thread to give the GIL up,
    up to the interval (5 ms by default), and a request needs several loop
    turns.  With 1 ms the slowest answers to a scheduler request during
    packing fell from 0.42-0.50 to 0.26-0.30 s (100,000 chunks, loaded
    machine).  The interval is the interpreter's: the previous one comes
    back when the last graph being packed is out."""
    global _packing, _saved_interval
    with _switch_lock:
        if _packing == 0:
            _saved_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(_saved_interval, PACKING_SWITCH_INTERVAL))
        _packing += 1
    try:
        yield
    finally:
        with _switch_lock:
            _packing -= 1
            if _packing == 0:
                sys.setswitchinterval(_saved_interval)


#: objects left young by a pause beyond which they are frozen when it ends
FREEZE_AFTER_OBJECTS = 500_000

_frozen_by_pause = False


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """No automatic cycle collection while a graph is packed: packing a
    million-task graph creates millions of objects that all stay alive, and
    each full collection over them held the GIL for seconds (the client's
    event loop, answering the scheduler, stood still: a 5 s stall measured).
    Garbage made meanwhile is freed by reference counting as usual.

    When the pause leaves many young objects (more than
    ``FREEZE_AFTER_OBJECTS``: a big graph's specs, and an embedded
    scheduler's records of it), they are frozen out of the collector
    (``gc.freeze()``) as it resumes: the first collections after the pause
    would otherwise walk them all at once (measured: 0.7 + 0.9 s at 140,000
    tasks, 4-9 s stalls at 700,000).  Cyclic garbage frozen with them waits
    until the next pause starts, which unfreezes first."""
    global _frozen_by_pause
    was_enabled = gc.isenabled()
    gc.disable()
    if _frozen_by_pause:
        gc.unfreeze()
        _frozen_by_pause = False
    try:
        yield
    finally:
        if gc.get_count()[0] > FREEZE_AFTER_OBJECTS:
            gc.freeze()
            _frozen_by_pause = True
        if was_enabled:
            gc.enable()


def get(executor: ExecutorLike, dsk: Any, keys: Any, **kwargs: Any) -> Any:
    """Compute ``keys`` of ``dsk`` on the cluster; values in the shape of
    ``keys``.  Of ``kwargs`` (what ``x.compute(**kwargs)`` passes on), the
    task options are honoured (see :func:`submit_graph`); others are ignored,
    as dask's own schedulers ignore the options they do not know."""
    if executor.asynchronous:
        raise RuntimeError("Executor.get blocks; in asynchronous mode use `await e.compute(x)`")
    flat = flatten_keys(keys)
    futures = submit_graph(executor, dsk, flat,
                           {name: kwargs[name] for name in TASK_ANNOTATIONS if name in kwargs})
    values = executor.gather(futures)
    by_key = {f.key: v for f, v in zip(futures, values)}
    return repack(keys, by_key)


def _each_collection(collections: Any, submit: Callable[[Any], Any]) -> tuple[list[Any], bool]:
    """``submit`` each dask collection of ``collections`` (one, or a list or
    tuple of them); other objects pass through.  Returns the results and
    whether a single object was given."""
    import dask

    single = not isinstance(collections, (list, tuple))
    items = [collections] if single else list(collections)
    return [submit(x) if dask.is_dask_collection(x) else x for x in items], single


def compute(executor: ExecutorLike, collections: Any, *, sync: bool = False, optimize_graph: bool = True,
            options: Mapping[str, Any] | None = None) -> Any:
    """One Future per dask collection (values with ``sync=True``); ``options``
    as for :func:`submit_graph`."""
    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr

    def submit(item: Any) -> Future:
        expr = FinalizeCompute(collections_to_expr([item], optimize_graph)).optimize()
        return submit_graph(executor, expr, flatten_keys(expr.__dask_keys__()), options)[0]

    out, single = _each_collection(collections, submit)
    if sync:
        out = executor.gather(out)
    return out[0] if single else out


def persist(executor: ExecutorLike, collections: Any, *, optimize_graph: bool = True,
            options: Mapping[str, Any] | None = None) -> Any:
    """The same collections, backed by data held on the cluster; ``options``
    as for :func:`submit_graph`."""
    from dask.base import collections_to_expr

    def submit(item: Any) -> Any:
        expr = collections_to_expr([item], optimize_graph).optimize()
        keys = flatten_keys(expr.__dask_keys__())
        futures = submit_graph(executor, expr, keys, options)
        rebuild, args = item.__dask_postpersist__()
        return rebuild(dict(zip(keys, futures)), *args)

    out, single = _each_collection(collections, submit)
    return out[0] if single else out


# --------------------------------------------------------------------------- #
# Being dask's default scheduler
# --------------------------------------------------------------------------- #
class DefaultScheduler:
    """Makes the most recently opened Executor dask's scheduler; restores the
    previous settings when the last one closes.  (An Executor imports dask, if
    installed, when it starts: its futures are dask TaskRefs.)"""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stack: list[ExecutorLike] = []
        self._saved: dict[str, Any] | None = None

    def push(self, executor: ExecutorLike) -> None:
        with self._lock:
            self._stack.append(executor)
            self._apply()

    def remove(self, executor: ExecutorLike) -> None:
        with self._lock:
            if executor not in self._stack:
                return
            self._stack.remove(executor)
            if self._stack:
                self._apply()
            elif self._saved is not None:
                sys.modules["dask"].config.set(self._saved)
                self._saved = None

    def _apply(self) -> None:
        dask = sys.modules.get("dask")
        if dask is None:
            return
        if self._saved is None:
            self._saved = {
                "scheduler": dask.config.get("scheduler", None),
                "dataframe.shuffle.method": dask.config.get("dataframe.shuffle.method", None),
            }
        dask.config.set({"scheduler": self._stack[-1].get, "dataframe.shuffle.method": "tasks"})


default_scheduler = DefaultScheduler()
