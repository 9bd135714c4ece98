"""Tasks that launch tasks, shared by the in-process and the process-worker tests."""

from __future__ import annotations

from taskmill import get_client, rejoin, secede, worker_client


def fib(n: int) -> int:
    """Each call a task (pure: equal calls share one) that submits its two
    children, secedes while it gathers them and rejoins."""
    if n < 2:
        return n
    e = get_client()
    a, b = e.submit(fib, n - 1), e.submit(fib, n - 2)
    secede()
    x, y = e.gather([a, b])
    rejoin()
    return x + y


def fib_impure(n: int) -> int:
    """The same with every call its own task, through ``worker_client()``."""
    if n < 2:
        return n
    with worker_client() as e:
        a, b = e.submit(fib_impure, n - 1, pure=False), e.submit(fib_impure, n - 2, pure=False)
        return sum(e.gather([a, b]))
