"""progress(): a live bar that ends with the finished and erred counts."""

from __future__ import annotations

import io

import pytest

from taskmill import Executor, progress

pytestmark = pytest.mark.timeout(60)


def maybe_fail(x: int) -> int:
    if x % 5 == 0:
        raise ValueError(x)
    return x


def test_progress_counts_finished_and_erred(inprocess_executor: Executor) -> None:
    futures = inprocess_executor.map(maybe_fail, range(50), pure=False)
    out = io.StringIO()
    counts = progress(futures, file=out)
    assert counts == {"finished": 40, "erred": 10, "cancelled": 0}
    text = out.getvalue()
    assert "50/50" in text and "erred=10" in text and "finished=40" in text
