"""The common shell: what a node does with a failure of its state machine."""

from __future__ import annotations

import asyncio

import pytest

from taskmill.server.node import Node, Status

pytestmark = pytest.mark.timeout(20)


async def _running_node(strict: bool) -> Node:
    node = Node("node")
    await node.listen("inproc://")
    node.status = Status.running
    node.strict = strict
    return node


def test_under_strict_a_machine_failure_is_kept_and_closes_the_node() -> None:
    async def run() -> None:
        node = await _running_node(strict=True)
        bug = RuntimeError("bug")
        node.machine_failed(bug, [object()])
        await asyncio.wait_for(node.closed_event.wait(), 10)
        assert node.errors == [bug] and node.status is Status.closed

    asyncio.run(run())


def test_otherwise_a_machine_failure_is_kept_and_the_node_serves_on() -> None:
    async def run() -> None:
        node = await _running_node(strict=False)
        bug = RuntimeError("bug")
        node.machine_failed(bug, [object()])
        assert node.errors == [bug] and node.status is Status.running
        assert not node._background  # no close was spawned
        await node.close()

    asyncio.run(run())
