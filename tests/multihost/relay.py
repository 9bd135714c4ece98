"""A userspace stand-in for ``tc ... netem``: relays Ethernet frames between two
tap devices, dropping each with probability ``loss`` and delivering the rest
after a random delay.

Theory of operation
-------------------
The kernels this suite runs on may lack netem (``CONFIG_NET_SCH_NETEM``), so a
host's link can instead be a pair of tap devices with this process in the
middle: ``--host-tap`` becomes the host's interface (moved into its network
namespace by the harness), ``--bridge-tap`` a port of the test bridge.  Every
frame read from one tap is written to the other, unless dropped, after
``delay`` +- ``jitter`` seconds (uniform).  Frames of one direction keep their
order (a frame is never sent before the one read before it), as on a real
link of varying latency: reordering would make TCP see losses that are not
there.

The taps are made by this process without ``TUNSETPERSIST``, so they vanish
when it exits, whatever way it exits; it exits when its standard input closes
(the harness holds the other end), so a crashed test leaves no relay behind.
It prints ``ready`` once both taps exist.  Run as
``python -m tests.multihost.relay --host-tap A --bridge-tap B --delay 0.03
--jitter 0.01 --loss 0.01 --seed 1``.
"""

from __future__ import annotations

import argparse
import fcntl
import heapq
import os
import random
import selectors
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
MAX_FRAME = 65536


def open_tap(name: str) -> int:
    """A new (non-persistent) tap device named ``name``: its file descriptor."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


class Relay:
    """Frames in flight between two taps: a heap of (due time, order, target, frame)."""

    def __init__(self, a: int, b: int, delay: float, jitter: float, loss: float,
                 rng: random.Random) -> None:
        self.peer = {a: b, b: a}
        self.delay, self.jitter, self.loss, self.rng = delay, jitter, loss, rng
        self.last_due = {a: 0.0, b: 0.0}  # per target: FIFO within a direction
        self.pending: list[tuple[float, int, int, bytes]] = []
        self.order = 0

    def read(self, fd: int) -> None:
        """Take every frame waiting on ``fd``."""
        target = self.peer[fd]
        while True:
            try:
                frame = os.read(fd, MAX_FRAME)
            except BlockingIOError:
                return
            if self.rng.random() < self.loss:
                continue
            due = time.monotonic() + max(0.0, self.rng.uniform(self.delay - self.jitter,
                                                               self.delay + self.jitter))
            due = self.last_due[target] = max(due, self.last_due[target])
            self.order += 1
            heapq.heappush(self.pending, (due, self.order, target, frame))

    def send_due(self) -> float | None:
        """Write the frames whose time has come; seconds until the next one (None: none left)."""
        now = time.monotonic()
        while self.pending and self.pending[0][0] <= now:
            _, _, target, frame = heapq.heappop(self.pending)
            try:
                os.write(target, frame)
            except (BlockingIOError, OSError):
                pass  # a full or downed device drops the frame, as a wire would
        return self.pending[0][0] - now if self.pending else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host-tap", required=True)
    parser.add_argument("--bridge-tap", required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds, each way")
    parser.add_argument("--jitter", type=float, default=0.0, help="seconds, +- around --delay")
    parser.add_argument("--loss", type=float, default=0.0, help="probability of dropping a frame")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0 <= args.loss < 1 or args.delay < 0 or not 0 <= args.jitter <= args.delay:
        parser.error("need 0 <= --loss < 1 and 0 <= --jitter <= --delay")
    a, b = open_tap(args.host_tap), open_tap(args.bridge_tap)
    relay = Relay(a, b, args.delay, args.jitter, args.loss, random.Random(args.seed))
    selector = selectors.DefaultSelector()
    selector.register(a, selectors.EVENT_READ)
    selector.register(b, selectors.EVENT_READ)
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ)
    print("ready", flush=True)
    timeout: float | None = None
    while True:
        for key, _ in selector.select(timeout):
            if key.fd == sys.stdin.fileno():
                if not os.read(key.fd, 4096):
                    return  # the harness is gone: the taps go with this process
            else:
                relay.read(key.fd)  # type: ignore[arg-type]
        timeout = relay.send_due()


if __name__ == "__main__":
    main()
