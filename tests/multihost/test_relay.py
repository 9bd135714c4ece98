"""The frame relay that stands in for netem, on datagram socket pairs (no root needed)."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator

import pytest

from tests.multihost.relay import Relay


@pytest.fixture
def wires() -> Iterator[tuple[socket.socket, socket.socket, socket.socket, socket.socket]]:
    """(sender, relay side a, relay side b, receiver): frames go sender -> a -> relay -> b -> receiver."""
    sender, a = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for s in (a, b, receiver):
        s.setblocking(False)
    yield sender, a, b, receiver
    for s in (sender, a, b, receiver):
        s.close()


def test_drops_the_given_fraction_and_keeps_the_order(wires: tuple[socket.socket, ...]) -> None:
    sender, a, b, receiver = wires
    relay = Relay(a.fileno(), b.fileno(), delay=0.0, jitter=0.0, loss=0.05, rng=random.Random(3))
    received: list[int] = []
    for i in range(4000):
        sender.send(i.to_bytes(4, "big"))
        relay.read(a.fileno())
        assert relay.send_due() is None  # no delay: sent at once
        try:
            received.append(int.from_bytes(receiver.recv(4), "big"))
        except BlockingIOError:
            pass  # dropped
    assert received == sorted(received)
    assert 4000 * 0.04 < 4000 - len(received) < 4000 * 0.06


def test_delays_within_the_jitter_in_order(wires: tuple[socket.socket, ...]) -> None:
    sender, a, b, receiver = wires
    relay = Relay(a.fileno(), b.fileno(), delay=0.03, jitter=0.01, loss=0.0, rng=random.Random(5))
    for i in range(8):
        sender.send(bytes([i]))
        read_at = time.monotonic()
        relay.read(a.fileno())
        due = max(d for d, *_ in relay.pending)  # this frame's: the latest, FIFO
        assert read_at + 0.02 <= due <= time.monotonic() + 0.04
    dues = sorted(relay.pending)
    assert [frame for *_, frame in dues] == [bytes([i]) for i in range(8)]  # one direction: FIFO
    wait = relay.send_due()
    assert wait is not None and 0.0 < wait <= 0.04
