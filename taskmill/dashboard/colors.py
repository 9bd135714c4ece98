"""A stable colour per task group, the same in Python (reports) and in the
browser (``static/app.js`` implements the same hash)."""

from __future__ import annotations

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22",
           "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94", "#9edae5")


def group_color(name: str) -> str:
    """FNV-1a of the name picks a palette colour (red is kept for errors)."""
    h = 0x811C9DC5
    for ch in name.encode("utf-8"):
        h = ((h ^ ch) * 0x01000193) & 0xFFFFFFFF
    return PALETTE[h % len(PALETTE)]
