"""Task functions the dashboard tests run: one that succeeds, one that errs on a tenth of its inputs."""

from __future__ import annotations


def inc(x: int) -> int:
    return x + 1


def fail_every_tenth(x: int) -> int:
    if x % 10 == 0:
        raise ValueError(f"no multiples of ten: {x}")
    return x
