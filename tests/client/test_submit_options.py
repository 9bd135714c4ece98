"""Options of ``submit``/``map`` are options: dask.distributed's
``fifo_timeout`` is accepted and does nothing, ``actor=True`` with a
function rather than a class is refused clearly (actors themselves are tested
in tests/client/test_actors.py), and neither reaches the function (API.md, "Added in the platform
issues").  The ``concurrent.futures`` view takes no options: there every
keyword is the function's, as in the standard library."""

from __future__ import annotations

import asyncio
import datetime

import pytest

from taskmill import Executor

pytestmark = pytest.mark.timeout(60)

DEADLINE = 10.0


def keywords(*args: object, **kwargs: object) -> dict[str, object]:
    return kwargs


def test_fifo_timeout_is_accepted_and_not_passed_on(executor):
    for value in ("100 ms", 0.5, 2, datetime.timedelta(seconds=1), None):
        assert executor.submit(keywords, 1, fifo_timeout=value, pure=False).result(DEADLINE) == {}
    futures = executor.map(keywords, range(3), fifo_timeout="1s", pure=False, scale=2)
    assert executor.gather(futures) == [{"scale": 2}] * 3


def test_actor_false_is_accepted_and_actor_true_needs_a_class(executor):
    assert executor.submit(keywords, actor=False, actors=False, pure=False).result(DEADLINE) == {}
    for option in ("actor", "actors"):
        with pytest.raises(TypeError, match=f"{option}=True needs a class to make the actor from"):
            executor.submit(keywords, **{option: True})
        with pytest.raises(TypeError, match=r"submit\(Counter, 0, actor=True\)"):
            executor.map(keywords, [1, 2], **{option: True})


def test_a_fifo_timeout_that_is_no_duration_is_refused(executor):
    with pytest.raises(TypeError, match="fifo_timeout must be a duration such as '100 ms'"):
        executor.submit(keywords, fifo_timeout=[1])


def test_the_concurrent_futures_view_passes_every_keyword_to_the_function(executor):
    pool = executor.concurrent_executor()
    assert pool.submit(keywords, fifo_timeout=3, actor=True).result(DEADLINE) == {
        "fifo_timeout": 3, "actor": True}
    assert list(pool.map(keywords, [1])) == [{}]


def test_async_mode_takes_the_same_options() -> None:
    async def main() -> None:
        async with Executor(asynchronous=True, n_workers=1, processes=False,
                            dashboard_port=None) as e:
            assert await e.submit(keywords, fifo_timeout="10 ms", actor=False, pure=False) == {}
            with pytest.raises(TypeError, match="needs a class"):
                e.submit(keywords, actor=True)

    asyncio.run(main())
