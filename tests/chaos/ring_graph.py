"""The tasks of the chaos test.

They live in this small module, apart from the test, because every worker
process the nannies restart imports the module of the tasks it runs before
its first task: importing the test module would import pytest too (~0.3 s of
CPU per restart, about one restart a second, on a 2-core machine).
"""

from __future__ import annotations

import time

MODULUS = 1_000_003


def start_value(i: int, seed: int) -> int:
    return (i * 7 + seed) % 1000


def mix(a: int, b: int, salt: int) -> int:
    return (a * 31 + b * 17 + salt) % MODULUS


def combine(a: int, b: int, salt: int) -> int:
    time.sleep(0.005)  # 2,000 of these keep 3 workers busy for a few seconds
    return mix(a, b, salt)


def total(xs: list[int]) -> int:
    return sum(xs) % MODULUS


def local_result(width: int, depth: int, seed: int) -> int:
    """What the graph computes, computed here (the same arithmetic as
    ``combine``, without its sleep)."""
    layer = [start_value(i, seed) for i in range(width)]
    for d in range(depth):
        layer = [mix(layer[i], layer[(i + 1) % width], d) for i in range(width)]
    return total(layer)
