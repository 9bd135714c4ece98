"""Fixtures of the multi-host suite: a network of namespaces per test (or per
module), swept of a crashed session's leftovers first; skipped with the reason
where namespaces cannot be made (not root, not Linux, no iproute2)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.multihost.hosts import Network, missing, sweep


@pytest.fixture(scope="session")
def namespaces_usable() -> None:
    why = missing()
    if why is not None:
        pytest.skip(why)
    sweep()


def _network() -> Iterator[Network]:
    network = Network()
    try:
        yield network
    finally:
        network.close()


@pytest.fixture
def network(namespaces_usable: None) -> Iterator[Network]:
    """A fresh bridge for one test; its namespaces, relays and processes go with it."""
    yield from _network()


@pytest.fixture(scope="module")
def module_network(namespaces_usable: None) -> Iterator[Network]:
    """A bridge shared by the tests of one module (a scenario in several steps)."""
    yield from _network()
