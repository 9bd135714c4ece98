"""A stable colour per task group, the same in Python (reports) and in the
browser (``static/app.js`` implements the same hash)."""

from __future__ import annotations


def group_color(name: str) -> str:
    """FNV-1a of the name picks a hue away from red (kept for errors)."""
    h = 0x811C9DC5
    for ch in name.encode("utf-8"):
        h = ((h ^ ch) * 0x01000193) & 0xFFFFFFFF
    return f"hsl({30 + h % 290}, {55 + (h >> 9) % 3 * 10}%, {42 + (h >> 13) % 3 * 8}%)"
