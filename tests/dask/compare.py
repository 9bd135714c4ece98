"""Computing one dask collection two ways, for the comparison battery."""

from __future__ import annotations

from typing import Any

import dask


def on_cluster(e: Any, x: Any, how: str = "default") -> Any:
    """Compute ``x`` on the cluster, one of three ways."""
    assert dask.config.get("scheduler") == e.get  # the open Executor is dask's default
    if how == "default":
        return x.compute()
    if how == "get":
        return x.compute(scheduler=e.get)
    if how == "compute":
        return e.compute(x, sync=True)
    raise ValueError(how)


def reference(x: Any) -> Any:
    """The same computation with dask's synchronous scheduler."""
    return x.compute(scheduler="sync")
