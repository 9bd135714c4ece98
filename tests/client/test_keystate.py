"""KeyState bookkeeping: each Future of a key costs O(1), however many there are."""

from __future__ import annotations

from typing import Any

from taskmill.client.keystate import KeyState


class FakeFuture:
    """Stands in for a Future: KeyState only keeps weak references to it."""


def test_taking_the_pending_futures_empties_the_list() -> None:
    ks = KeyState("k")
    futures = [FakeFuture() for _ in range(3)]
    for f in futures:
        ks.add_future(f)  # type: ignore[arg-type]
    assert ks.take_pending() == futures
    assert ks.take_pending() == []  # completed futures are never handed out again
    late = FakeFuture()
    ks.add_future(late)  # type: ignore[arg-type]
    assert ks.take_pending() == [late]


def test_dead_references_do_not_pile_up() -> None:
    ks = KeyState("k")
    keeper = FakeFuture()
    ks.add_future(keeper)  # type: ignore[arg-type]
    longest = 0
    for _ in range(10_000):  # futures of a pending key that come and go
        temp: Any = FakeFuture()
        ks.add_future(temp)
        del temp  # gone at once: nothing else refers to it
        longest = max(longest, len(ks.pending))
    assert longest <= 16
    assert ks.take_pending() == [keeper]
