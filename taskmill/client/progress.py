"""``progress(futures)``: a live progress bar (tqdm, in a terminal or notebook)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from taskmill.client.future import Future
from taskmill.client.waiting import as_completed


def progress(futures: Future | Iterable[Future], *, description: str = "tasks",
             file: Any = None) -> dict[str, int]:
    """Show a progress bar until every future is done; returns
    ``{"finished": n, "erred": n, "cancelled": n}`` and shows those counts at the end."""
    from tqdm.auto import tqdm

    futs = [futures] if isinstance(futures, Future) else list(futures)
    counts = {"finished": 0, "erred": 0, "cancelled": 0}
    with tqdm(total=len(futs), desc=description, unit="task", file=file) as bar:
        for fut in as_completed(futs):
            if fut.cancelled():
                counts["cancelled"] += 1
            elif fut.exception() is not None:
                counts["erred"] += 1
            else:
                counts["finished"] += 1
            bar.set_postfix(counts, refresh=False)
            bar.update(1)
    return counts
