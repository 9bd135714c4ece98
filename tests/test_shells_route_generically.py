"""The shells route the machines' stream messages without naming them.

Adding a stream message between a worker and the scheduler must touch only the
vocabulary, the machine that returns it and the machine that handles it.  That
holds while the scheduler and worker shells decode any op of the vocabulary,
hand it to their machine, and send whatever wire message the machine returns
by its route: this test keeps them from naming the messages they only carry.
"""

from __future__ import annotations

import ast
from pathlib import Path

from taskmill.protocol import vocabulary as v

ROOT = Path(__file__).resolve().parents[1] / "taskmill"
SHELLS = [ROOT / "server" / "scheduler.py", ROOT / "server" / "worker.py"]

#: stream messages a shell acts on itself, with the reason
SHELL_BUSINESS = {
    "UpdateGraph": "the scheduler shell checks task resources and yields after big graphs",
    "CloseClient": "the client's stream ends",
    "Unregister": "the worker's stream ends",
    "Heartbeat": "figures for the dashboard; the worker shell measures them",
    "TaskFinished": "the dashboard's task stream; the worker shell adds transfer times",
    "TaskErred": "the dashboard's task stream; the worker shell adds transfer times",
    "Retired": "the scheduler shell tells a retired worker whether to close",
    "SchedulerHeartbeat": "liveness is the shells' clock (taskmill.core.liveness), not the machines'",
    "WorkerRemoved": "the scheduler shell tells the workers which peer's connection it dropped",
    "WorkerGone": "the scheduler shell tells the clients which worker's connection it dropped",
    "NoWorkers": "the scheduler shell's clock of tasks waiting with no worker (core/scheduler/no_workers)",
}


def names_used(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


def test_machine_messages_pass_through_the_shells_unnamed() -> None:
    carried = {cls.__name__ for cls in v.REGISTRY.values()
               if cls.kind == "stream" and {cls.sender, cls.receiver} <= {v.WORKER, v.SCHEDULER, v.CLIENT}}
    for shell in SHELLS:
        named = (names_used(shell) & carried) - set(SHELL_BUSINESS)
        assert not named, (f"{shell.name} names the stream messages {sorted(named)}: route them "
                           "generically (decode, hand to the machine, send by route) instead")


def test_the_machines_take_and_return_those_messages() -> None:
    """Each carried message is handled by a machine, or returned by one."""
    core = ROOT / "core"
    machine_names: set[str] = set()
    for path in core.rglob("*.py"):
        machine_names |= names_used(path)
    stream_between_nodes = [cls.__name__ for cls in v.REGISTRY.values()
                            if cls.kind == "stream" and cls.__name__ not in SHELL_BUSINESS]
    missing = [name for name in stream_between_nodes if name not in machine_names]
    assert missing == [], f"stream messages no machine takes or returns: {missing}"
