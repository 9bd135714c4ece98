"""A 500-task graph with 1 MB inputs over worker links with 30 ms +- 10 ms of
delay and 1 % loss (each way), against the same graph over clean links: the
exact result either way; the time of each is printed (``pytest -s``) for
docs/failures.md."""

from __future__ import annotations

import random
import time
import zlib
from pathlib import Path

import pytest

from tests.multihost.cluster import MultihostCluster
from tests.multihost.hosts import Impairment, Network, netem_available

pytestmark = pytest.mark.timeout(180)

BLOCKS, PAIRS, PARTS = 20, 469, 10  # 20 blocks + 469 digests + 10 partial sums + 1 total = 500 tasks
BLOCK_BYTES = 1 << 20


def block(i: int) -> bytes:
    return random.Random(i).randbytes(BLOCK_BYTES)


def digest(a: bytes, b: bytes, j: int) -> int:
    return zlib.crc32(b, zlib.crc32(a, j))


def total(values: list[int]) -> int:
    return sum(values)


def pairs() -> list[tuple[int, int]]:
    """Which two blocks each digest reads (fixed, most of them made on different workers)."""
    rng = random.Random(14)
    return [(rng.randrange(BLOCKS), rng.randrange(BLOCKS)) for _ in range(PAIRS)]


def expected() -> int:
    blocks = [block(i) for i in range(BLOCKS)]
    return sum(digest(blocks[a], blocks[b], j) for j, (a, b) in enumerate(pairs()))


@pytest.mark.parametrize("impairment", [None, Impairment(delay=0.03, jitter=0.01, loss=0.01)],
                         ids=["clean", "30ms-10ms-1pct"])
def test_graph_with_1mb_inputs(no_leaks: None, network: Network, tmp_path: Path,
                               impairment: Impairment | None) -> None:
    sched = network.add_host("sched")
    workers = [network.add_host(name, impairment) for name in ("w1", "w2")]
    cluster = MultihostCluster(network, tmp_path)
    try:
        cluster.start_scheduler(sched)
        for host in workers:
            cluster.start_worker(host)
        e = cluster.executor()
        cluster.wait_for_hosts(e, *workers)
        started = time.monotonic()
        blocks = [e.submit(block, i) for i in range(BLOCKS)]
        digests = [e.submit(digest, blocks[a], blocks[b], j) for j, (a, b) in enumerate(pairs())]
        parts = [e.submit(total, digests[k::PARTS]) for k in range(PARTS)]
        result = e.submit(total, parts).result(timeout=150)
        took = time.monotonic() - started
        assert result == expected()
        how = "netem" if netem_available() else "the tap relay"
        print(f"\n500-task graph, 1 MB inputs, worker links {impairment or 'clean'} "
              f"({how if impairment else 'veth'}): {took:.1f}s")
    finally:
        left = cluster.stop()
        assert not left, f"processes left running in the namespaces: {left}"
