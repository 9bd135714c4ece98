"""Process-wide settings for taskmill's own server processes (never applied
to a user's program that merely embeds a cluster)."""

from __future__ import annotations

import gc


def tune_gc() -> None:
    """Move start-up objects out of the collector's way and collect young
    objects less often: a server allocates many short-lived records per task,
    and frequent full collections over long-lived state cost more than they free."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
