"""``taskmill config``: show taskmill's options, their values and where each came from.

Theory of operation
-------------------
A click group with three read-only commands over :mod:`taskmill.config`:
``get KEY`` prints one option's value (a section as YAML), ``list`` every
option with its value and origin (a YAML file, an environment variable, the
defaults...), ``paths`` the files and directories searched for YAML files.
The umbrella ``taskmill`` command adds the group as ``taskmill config``.
"""

from __future__ import annotations

import os
from typing import Any

import click

from taskmill import config


def _render(value: Any) -> str:
    """One value as it would be written in a YAML file (a section as a block)."""
    import yaml

    flow = not isinstance(value, dict)
    return yaml.safe_dump(value, default_flow_style=flow, sort_keys=False).removesuffix("...\n").strip()


@click.group("config", context_settings={"help_option_names": ["-h", "--help"]})
def config_command() -> None:
    """Show taskmill's options (defaults, YAML files, TASKMILL_* variables)."""


@config_command.command("get")
@click.argument("key")
def get_command(key: str) -> None:
    """Print the value of option KEY (e.g. comm.timeouts.connect)."""
    try:
        value = config.get(key)
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    click.echo(_render(value))


@config_command.command("list")
def list_command() -> None:
    """Print every option, its value and where the value came from."""
    rows = [(key, _render(value), origin) for key, value, origin in config.entries()]
    width = max(len(key) for key, _, _ in rows)
    vwidth = max(len(value) for _, value, _ in rows)
    for key, value, origin in rows:
        click.echo(f"{key:<{width}}  {value:<{vwidth}}  # {origin}")


@config_command.command("paths")
def paths_command() -> None:
    """Print the files and directories searched for YAML files, lowest precedence first."""
    for path in config.paths():
        state = "exists" if os.path.exists(path) else "missing"
        click.echo(f"{path}  ({state})")
