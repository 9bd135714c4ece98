"""``taskmill``: one command with the programs as subcommands.

``taskmill scheduler`` and ``taskmill worker`` are the very commands behind
``taskmill-scheduler`` and ``taskmill-worker`` (same options, same code);
``taskmill info`` prints versions and, given a scheduler, its workers;
``taskmill config`` shows the options.  A subcommand is one line in
:data:`SUBCOMMANDS` (a click command or group).
"""

from __future__ import annotations

import click

from taskmill.cli import config_cli, info_cli, scheduler_cli, worker_cli

#: name -> command, in the order ``taskmill --help`` lists them
SUBCOMMANDS: dict[str, click.Command] = {
    "scheduler": scheduler_cli.main,
    "worker": worker_cli.main,
    "info": info_cli.info,
    "config": config_cli.config_command,
}


@click.group(commands=SUBCOMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="taskmill")
def main() -> None:
    """taskmill: a dynamic distributed task scheduler for Python."""


if __name__ == "__main__":
    main()
