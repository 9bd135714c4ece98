"""Gated tasks: a task blocks until the test opens its gate, which makes
"running", "queued" and "slow" deterministic without sleeping.  The workers of
these tests run in this process, so a gate is a plain threading.Event."""

from __future__ import annotations

import threading
import uuid
from typing import Any

DEADLINE = 10.0

GATES: dict[str, threading.Event] = {}
STARTED: dict[str, threading.Event] = {}


def gated(name: str, value: Any = None) -> Any:
    """Block until the test opens the gate ``name``, then return ``value``."""
    STARTED[name].set()
    if not GATES[name].wait(30):
        raise RuntimeError(f"gate {name} was never opened")
    return value


class Gates:
    """The gates one test made; all are opened when it ends."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def new(self) -> str:
        name = uuid.uuid4().hex
        GATES[name] = threading.Event()
        STARTED[name] = threading.Event()
        self.names.append(name)
        return name

    def open(self, name: str) -> None:
        GATES[name].set()

    def wait_started(self, name: str) -> None:
        assert STARTED[name].wait(DEADLINE), "gated task never started"

    def started(self, name: str) -> bool:
        return STARTED[name].is_set()

    def open_all(self) -> None:
        for name in self.names:
            GATES[name].set()
