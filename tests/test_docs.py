"""The documentation stays inside the repository, and docs/api.md stays the
shared API contract's copy.

* Every relative link of README.md and docs/*.md names a file of the
  repository (not one beside it: a clean clone has nothing there).  Web links
  and anchors within a page are not checked; a link's ``#fragment`` is dropped.
* Where the shared contract (``../shared/API.md``, beside the repository) is
  present, docs/api.md names the same calls in its code spans (each
  ``name(`` written between backticks), keeps its code examples word for word
  and has each of its section headings.  docs/api.md may add prose (what is
  implemented yet) but no call of its own.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_API = ROOT.parent / "shared" / "API.md"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCED = re.compile(r"^```.*?^```", re.S | re.M)
_CODE_SPAN = re.compile(r"`([^`]+)`")
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.M)
_CALL = re.compile(r"([A-Za-z_][\w.]*)\(")
_HEADING = re.compile(r"^#{2,3}\s+(.+?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """The text without code blocks and code spans (where brackets are code, not links)."""
    return _CODE_SPAN.sub("", _FENCED.sub("", text))


def relative_links(text: str) -> list[str]:
    targets = _INLINE_LINK.findall(_prose(text)) + _REFERENCE_LINK.findall(_prose(text))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I) and not t.startswith("#")]


def calls(text: str) -> set[str]:
    """The ``name(`` of every code span, outside code blocks."""
    return {m for span in _CODE_SPAN.findall(_FENCED.sub("", text)) for m in _CALL.findall(span)}


def code_blocks(text: str) -> list[str]:
    return _FENCED.findall(text)


def headings(text: str) -> set[str]:
    return set(_HEADING.findall(_FENCED.sub("", text)))


# --------------------------------------------------------------------------- #
def test_the_link_finder() -> None:
    text = ("[a](docs/a.md) ![pic](img/p.png \"title\") [web](https://example.org) [top](#top) "
            "[frag](b.md#part) `[code](not/a/link.md)`\n```\n[block](nor/this.md)\n```\n"
            "[ref]: ../outside.md\n<mailto:x@y.z>")
    assert relative_links(text) == ["docs/a.md", "img/p.png", "b.md#part", "../outside.md"]


def test_the_call_finder() -> None:
    text = "`e.submit(fn, *args)` and `Lock(name=None)` (`acquire(\ntimeout=None)`), `plain`\n```\nnot(this)\n```"
    assert calls(text) == {"e.submit", "Lock", "acquire"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_stay_in_the_repository(page: Path) -> None:
    bad = []
    for link in relative_links(page.read_text(encoding="utf-8")):
        path = link.split("#", 1)[0]
        target = (page.parent / path).resolve()
        if not target.is_relative_to(ROOT):
            bad.append(f"{link}: outside the repository")
        elif not target.exists():
            bad.append(f"{link}: no such file")
    assert not bad, f"{page.relative_to(ROOT)} links:\n" + "\n".join(bad)


@pytest.mark.skipif(not SHARED_API.exists(), reason="../shared/API.md is not beside this checkout "
                                                    "(a clean clone): nothing to compare docs/api.md with")
def test_the_api_reference_follows_the_shared_contract() -> None:
    contract = SHARED_API.read_text(encoding="utf-8")
    ours = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert calls(ours) == calls(contract), (
        f"only in docs/api.md: {sorted(calls(ours) - calls(contract))}; "
        f"only in the shared API.md: {sorted(calls(contract) - calls(ours))}")
    assert code_blocks(ours) == code_blocks(contract)
    assert headings(contract) <= headings(ours), sorted(headings(contract) - headings(ours))
