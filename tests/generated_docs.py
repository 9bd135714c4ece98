"""Sections of the docs generated from the code: a test compares them, and
``TASKMILL_UPDATE_DOCS=1`` rewrites them."""

from __future__ import annotations

import os
from pathlib import Path


def check_generated_section(doc: Path, begin: str, end: str, rendered: str, fix: str) -> None:
    """Fail unless the part of ``doc`` between the markers ``begin`` and
    ``end`` is ``rendered``; with ``TASKMILL_UPDATE_DOCS`` set, rewrite it
    instead.  ``fix`` is the message's advice."""
    text = doc.read_text()
    assert begin in text and end in text, f"{doc} lacks the markers {begin} and {end}"
    head, rest = text.split(begin, 1)
    current, tail = rest.split(end, 1)
    wanted = "\n" + rendered + "\n"
    if current != wanted and os.environ.get("TASKMILL_UPDATE_DOCS"):
        doc.write_text(head + begin + wanted + end + tail)
        return
    assert current == wanted, f"{doc.name} is out of date: {fix}"
