"""A bounded log of the events a state machine handled, and its replay.

Theory of operation
-------------------
Both pure machines are deterministic functions of the events they are fed
(no clock, no randomness, ordered containers only), so the events alone
reproduce a bug.  Each machine keeps a :class:`StimulusLog`: how to build a
fresh machine (its class and constructor arguments) and the events of its
last ``size`` calls of ``handle``, one tuple per call (a machine may act once
per call, e.g. the worker's gather pass, so the grouping is kept).

When ``validate()`` fails, or ``handle`` raises, the machine writes the log
to a file (``dump``: a pickle, in the directory of option
``debug.stimulus-dir`` or the temporary directory) and names the file in the
error.  :func:`replay` builds a fresh machine from the file and feeds it the
events one at a time, validating after each, so the failure happens again
under a debugger, at the first event that
breaks an invariant.  Random-scenario tests use the same file to keep a
failing schedule.

The log keeps references to the events (so to their payloads), and every
object it keeps alive is one more for each garbage collection to walk: a log
of 10,000 calls cost a worker about 1.5 us a task.  So its size depends on
what it is for (:func:`log_size`): a machine that validates itself (the
tests, the simulated cluster) keeps its whole history, up to 100,000 calls,
so a failure replays from its birth; a production machine keeps its last 100
calls, for a post-mortem to read.  A log that dropped its oldest events
cannot rebuild the state from nothing; ``replay`` says so instead of
replaying a different history.
"""

from __future__ import annotations

import importlib
import os
import pickle
import tempfile
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from taskmill import config, config_checks

#: calls kept by a machine that does not validate itself (production)
DEFAULT_SIZE = 100
#: calls kept by a machine that validates itself after every event (tests)
VALIDATING_SIZE = 100_000
_BIRTH = ("the machine was built",)


def log_size(size: int | None, validate: bool) -> int:
    """The number of ``handle`` calls a machine keeps: ``size`` when given,
    else by what the log is for (see the module docstring)."""
    if size is not None:
        return size
    return VALIDATING_SIZE if validate else DEFAULT_SIZE


class StimulusLog:
    """The last ``size`` ``handle`` calls of one machine, and how to build a fresh one."""

    def __init__(self, machine: type, kwargs: dict[str, Any], size: int = DEFAULT_SIZE) -> None:
        self.machine = f"{machine.__module__}:{machine.__qualname__}"
        self.kwargs = kwargs
        # the first entry marks the machine's birth: once it is pushed out,
        # the log no longer starts there (see ``wrapped``)
        self.size = size
        self.events: deque[Any] = deque([_BIRTH], maxlen=size + 1)
        #: one call of ``handle``: ``record(events)`` (``deque.append``, no
        #: Python frame: the machines call it on every ``handle``)
        self.record = self.events.append

    @property
    def wrapped(self) -> bool:
        """Whether the oldest calls were dropped (the log no longer starts at
        the machine's birth)."""
        return not self.events or self.events[0] is not _BIRTH

    @property
    def calls(self) -> list[tuple[Any, ...]]:
        """The recorded calls of ``handle``, oldest first."""
        calls = [batch for batch in self.events if batch is not _BIRTH]
        return calls[-self.size:] if self.size else []

    def failed(self, exc: BaseException) -> None:
        """Write the log out and name the file in ``exc`` (the machine raises it)."""
        try:
            path = self.dump()
        except OSError as problem:
            exc.add_note(f"could not write the stimulus log: {problem}")
        else:
            exc.add_note(f"stimulus log of the last {len(self.calls)} calls of handle "
                         f"written to {path}; replay it with taskmill.testing.replay({path!r})")

    def dump(self, directory: str | None = None) -> str:
        """Write the log to a new file; returns its path."""
        directory = (directory or config.read("debug.stimulus-dir", config_checks.directory)
                     or tempfile.gettempdir())
        os.makedirs(directory, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=f"taskmill-stimuli-{int(time.time())}-", suffix=".pickle",
                                    dir=directory)
        with os.fdopen(fd, "wb") as f:
            pickle.dump({"machine": self.machine, "kwargs": self.kwargs, "events": self.calls,
                         "complete": not self.wrapped}, f, protocol=pickle.HIGHEST_PROTOCOL)
        return path


def replay(path: str, *, validate: bool = True,
           on_event: Callable[[int, Any, Any], None] | None = None) -> Any:
    """Build a fresh machine from the log at ``path`` and feed it every call
    in order, validating after each (``validate``).  Returns the machine;
    raises what the original run raised, with a note naming the call that
    broke it.  ``on_event(index, events, commands)`` sees each step."""
    with open(path, "rb") as f:
        log = pickle.load(f)
    if not log["complete"]:
        raise ValueError(
            f"the stimulus log {path} dropped its oldest events (it keeps the last "
            f"{len(log['events'])}): a fresh machine cannot reproduce that history; "
            "raise its size (stimulus_log_size=) and run again")
    module, _, name = log["machine"].partition(":")
    cls = getattr(importlib.import_module(module), name)
    machine = cls(**{**log["kwargs"], "validate": False})  # validated here, step by step
    for i, event in enumerate(log["events"]):
        try:
            commands = machine.handle(*event)
            if validate:
                machine.validate()
        except Exception as exc:
            exc.add_note(f"replaying {path}: event {i} of {len(log['events'])}: {event!r:.300}")
            raise
        if on_event is not None:
            on_event(i, event, commands)
    return machine
