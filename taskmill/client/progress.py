"""``progress(futures)``: a live progress bar (tqdm), in a terminal or a notebook.

Inside a Jupyter kernel the bar is tqdm's notebook widget (``tqdm.notebook``,
which needs ``ipywidgets``); anywhere else, or without ``ipywidgets``, it is
tqdm's text bar.  The choice is made at each call (not once at import, as
``tqdm.auto`` does), from the running IPython shell, so it cannot go stale.
"""

from __future__ import annotations

import sys
from typing import Any

from taskmill.client.nested import futures_in
from taskmill.client.waiting import as_completed


def progress(futures: Any, *, description: str = "tasks", file: Any = None) -> dict[str, int]:
    """Show a progress bar until every future (a Future, a persisted dask
    collection, or lists of them) is done; returns
    ``{"finished": n, "erred": n, "cancelled": n}`` and shows those counts at
    the end (a bar with erred tasks ends red).  ``file``: where the text bar
    writes (default: standard error); a notebook's widget ignores it."""
    futs = futures_in(futures)
    counts = {"finished": 0, "erred": 0, "cancelled": 0}
    with bar_class()(total=len(futs), desc=description, unit="task", file=file) as bar:
        for fut in as_completed(futs):
            if fut.cancelled():
                counts["cancelled"] += 1
            elif fut.exception() is not None:
                counts["erred"] += 1
            else:
                counts["finished"] += 1
            bar.set_postfix(counts, refresh=False)
            bar.update(1)
        if counts["erred"]:
            bar.colour = "red"
    return counts


def bar_class() -> type:
    """tqdm's notebook bar inside a Jupyter kernel with ``ipywidgets``
    installed, its text bar otherwise."""
    if in_notebook():
        from tqdm.notebook import IProgress, tqdm_notebook

        if IProgress is not None:  # ipywidgets is installed
            return tqdm_notebook  # type: ignore[no-any-return]
    from tqdm.std import tqdm

    return tqdm


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (not a terminal IPython).  Never
    imports IPython: a kernel has imported it already."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None  # type: ignore[attr-defined]
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})
