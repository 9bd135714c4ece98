"""Running ahead: a short call queued for the task threads while they are all busy.

Theory of operation
-------------------
Without it, a worker whose threads are all busy starts its next ready task
only once a call ends: the task thread posts the outcome to the loop and
goes to sleep, the loop stores the value, runs the machine, and hands the
next call back, which wakes the thread again.  On a busy machine each of
those wake-ups waits for a core and the GIL, and the thread idles through
the whole loop round.

With running ahead the machine starts (``Execute``) up to ``depth`` ready
tasks beyond ``nthreads``: the shell's task runner queues them, and a thread
that finishes a call takes the next one at once, while the loop handles the
outcome it just posted.  The machine counts such a task as executing from
its ``Execute`` on (the runner starts calls in the order it got them), so
its books do not change: a task started ahead cannot be stolen, and a cancel
or a forced cancel treats it like a call under way (the runner skips an
abandoned call not yet taken).

Only calls known to be short run ahead, since a queued call is committed to
this worker and waits behind the running ones: a task whose function
(``func_token``) last took less than ``shorter_than`` seconds here, as the
machine learns it from the ``start`` and ``stop`` of ``ExecuteSucceeded``
(a duration rises at once and falls by half each run: one long run is not
forgotten after one short one).  A function never run here does not run
ahead.  Neither does anything while a task here has seceded or waits to
rejoin: a rejoining task must get the first free thread (see
:mod:`taskmill.core.worker.secession`).

Pure and deterministic like the rest of the machine: the durations come from
the events, and nothing iterates a set.
"""

from __future__ import annotations

from collections.abc import Sized

from taskmill.protocol.vocabulary import Key

__all__ = ["RunAhead"]


class RunAhead:
    """How many short calls may wait for a thread (``depth``, 0: none), and
    the measured durations that say which calls are short."""

    __slots__ = ("depth", "shorter_than", "started_ahead", "_durations", "_tokens")

    def __init__(self, depth: int, shorter_than: float) -> None:
        if depth < 0:
            raise ValueError(f"run-ahead depth must be >= 0, got {depth}")
        if shorter_than < 0:
            raise ValueError(f"run-ahead shorter_than must be >= 0 seconds, got {shorter_than}")
        self.depth = depth
        self.shorter_than = shorter_than
        #: calls started beyond ``nthreads`` so far (a figure for diagnostics and tests)
        self.started_ahead = 0
        #: func_token -> its recent duration here (seconds)
        self._durations: dict[str, float] = {}
        #: executing key -> its func_token (only while ``depth``)
        self._tokens: dict[Key, str] = {}

    def started(self, key: Key, token: str, ahead: bool) -> None:
        """The call of ``key`` (function ``token``) was handed to the threads,
        ``ahead`` of a free one or not."""
        if self.depth:
            self._tokens[key] = token
            self.started_ahead += ahead

    def finished(self, key: Key, seconds: float) -> None:
        """The call of ``key`` returned after ``seconds``: learn its function's duration."""
        token = self._tokens.pop(key, None)
        if token is None:
            return
        old = self._durations.get(token)
        self._durations[token] = seconds if old is None or seconds > old else (old + seconds) / 2

    def forget(self, key: Key) -> None:
        """The call of ``key`` no longer holds a thread (failed, cancelled, abandoned)."""
        if self._tokens:
            self._tokens.pop(key, None)

    def slots(self, nthreads: int, seceded: Sized) -> int:
        """Calls the threads may hold: ``nthreads``, and ``depth`` more while no task has seceded."""
        return nthreads if seceded else nthreads + self.depth

    def is_short(self, token: str) -> bool:
        """Whether a call of ``token`` may wait for a thread (known to be short)."""
        duration = self._durations.get(token)
        return duration is not None and duration < self.shorter_than
