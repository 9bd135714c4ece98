"""docs/protocol.md lists every op of the vocabulary, exactly.

The table between the vocabulary markers of docs/protocol.md is rendered
from taskmill/protocol/vocabulary.py; this test fails when the two disagree.
After changing the vocabulary, rewrite the table with

    TASKMILL_UPDATE_DOCS=1 python -m pytest tests/protocol/test_protocol_doc.py
"""

from __future__ import annotations

import re
from pathlib import Path

from taskmill.protocol import vocabulary as v
from taskmill.protocol.wire_types import wire_fields
from tests.generated_docs import check_generated_section

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
BEGIN, END = "<!-- vocabulary:begin -->", "<!-- vocabulary:end -->"


def _summary(doc: str) -> str:
    """The first sentence of a docstring, on one line."""
    text = " ".join(doc.split())
    match = re.match(r"(.+?\.)(\s|$)", text)
    return (match.group(1) if match else text).replace("``", "`").replace("|", "\\|")


def render() -> str:
    lines = [
        "| op | from → to | kind | fields (on the wire) | filled in by the receiver | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for op in v.op_names():
        d = v.describe(op)
        fields = ", ".join(f"`{f}`" for f in d["fields"]) or "—"
        local = ", ".join(f"`{f}`" for f in d["local"]) or "—"
        lines.append(f"| `{op}` | {d['sender']} → {d['receiver']} | {d['kind']} | {fields} | "
                     f"{local} | {_summary(d['doc'])} |")
    record = v.TaskSpec
    lines += ["", f"`TaskSpec` (in `update-graph`'s `tasks`) travels as a list of its fields in order: "
              + ", ".join(f"`{field.name}`" for field in wire_fields(record)) + "."]
    return "\n".join(lines)


def test_protocol_doc_lists_every_op_of_the_vocabulary() -> None:
    check_generated_section(
        DOC, BEGIN, END, render(),
        "its table of ops differs from taskmill/protocol/vocabulary.py; rewrite it with "
        "TASKMILL_UPDATE_DOCS=1 python -m pytest tests/protocol/test_protocol_doc.py")


def test_every_op_in_the_doc_exists() -> None:
    table = DOC.read_text().split(BEGIN, 1)[1].split(END, 1)[0]
    listed = re.findall(r"^\| `([a-z-]+)` \|", table, flags=re.M)
    assert listed == v.op_names()
