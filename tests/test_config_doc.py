"""docs/configuration.md lists every option of taskmill/taskmill.yaml, exactly.

The table between the options markers of docs/configuration.md is rendered
from the defaults file (each option's default and the comment above it) and
the old variable names of taskmill/config_store.py; this test fails when the
two disagree, and when an option has no comment.  After changing an option,
rewrite the table with

    TASKMILL_UPDATE_DOCS=1 python -m pytest tests/test_config_doc.py
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from taskmill.config_store import DEFAULTS_FILE, OLD_VARIABLES, leaves, load_defaults, variable_name
from tests.generated_docs import check_generated_section

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
BEGIN, END = "<!-- options:begin -->", "<!-- options:end -->"
_ENTRY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_-]+):(?P<value>.*)$")


def descriptions(text: str) -> dict[str, str]:
    """Option key -> the comment lines right above it in the defaults file."""
    out: dict[str, str] = {}
    path: list[tuple[int, str]] = []  # (indent, name) of the enclosing sections
    comment: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        match = _ENTRY.match(line)
        if match is None:  # a blank line ends a comment that belongs to nothing
            comment = []
            continue
        indent = len(match["indent"])
        path = [(i, name) for i, name in path if i < indent]
        path.append((indent, match["key"]))
        if match["value"].split("#")[0].strip():
            out[".".join(name for _, name in path)] = " ".join(comment)
        comment = []
    return out


def render() -> str:
    described = descriptions(DEFAULTS_FILE.read_text())
    old = {key: name for name, key in OLD_VARIABLES.items()}
    lines = ["| option | default | environment variable | older variable | what it does |",
             "|---|---|---|---|---|"]
    for key, value in leaves(load_defaults()):
        default = yaml.safe_dump(value, default_flow_style=True).removesuffix("...\n").strip()
        older = f"`{old[key]}`" if key in old else "—"
        text = described.get(key, "").replace("|", "\\|")
        lines.append(f"| `{key}` | `{default}` | `{variable_name(key)}` | {older} | {text} |")
    return "\n".join(lines)


def test_every_option_has_a_description_and_every_old_variable_an_option() -> None:
    described = descriptions(DEFAULTS_FILE.read_text())
    keys = [key for key, _ in leaves(load_defaults())]
    assert sorted(described) == sorted(keys)
    assert [key for key in keys if not described[key]] == [], "options without a comment above them"
    assert set(OLD_VARIABLES.values()) <= set(keys)


def test_configuration_doc_lists_every_option() -> None:
    check_generated_section(
        DOC, BEGIN, END, render(),
        "its table of options differs from taskmill/taskmill.yaml; rewrite it with "
        "TASKMILL_UPDATE_DOCS=1 python -m pytest tests/test_config_doc.py")
