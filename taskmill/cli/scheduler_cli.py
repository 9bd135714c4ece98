"""``taskmill-scheduler`` (aliases ``dscheduler``, ``dcenter``, ``taskmill scheduler``):
run a scheduler; with ``--scheduler-file`` it writes where to reach it (and its
secret) to a private file for workers and clients, removed when it closes."""

from __future__ import annotations

import logging

import click

from taskmill.cli.common import check_host_is_safe, serve
from taskmill.scheduler_file import (SchedulerFileError, remove_scheduler_file,
                                             write_scheduler_file)
from taskmill.comm.addressing import contact_address
from taskmill.logs import setup_logging
from taskmill.security import own_cluster_security
from taskmill.server.scheduler import Scheduler


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8786, show_default=True, type=int, help="Port for clients and workers.")
@click.option("--dashboard-port", default=8787, show_default=True, type=int,
              help="Port of the web dashboard (0: any free port).")
@click.option("--no-dashboard", is_flag=True, help="Do not serve the web dashboard.")
@click.option("--insecure", is_flag=True, help="Allow listening beyond loopback without a shared token ($TASKMILL_TOKEN).")
@click.option("--heartbeat-timeout", default=None, type=float,
              help="Seconds without a word from a worker before it is removed "
                   "[default: option scheduler.worker-ttl, 15].")
@click.option("--preload", multiple=True, metavar="MODULE",
              help="A module (name or .py path) whose taskmill_setup(scheduler) runs at start and "
                   "taskmill_teardown(scheduler) at close; may be repeated.")
@click.option("--scheduler-file", default=None, type=click.Path(dir_okay=False),
              help="Write the scheduler's address (and its token, if it has one) to this file, "
                   "mode 0600, for `taskmill-worker --scheduler-file` and "
                   "Executor(scheduler_file=...); removed when the scheduler closes.")
@click.option("--log-level", default=None,
              help="DEBUG, INFO, WARNING or ERROR  [default: option logging.level, INFO]")
def main(host: str, port: int, dashboard_port: int, no_dashboard: bool, insecure: bool,
         heartbeat_timeout: float | None, preload: tuple[str, ...], scheduler_file: str | None,
         log_level: str | None) -> None:
    """Start a taskmill scheduler."""
    setup_logging(log_level)
    # with a scheduler file to carry it, a scheduler without a configured token makes a fresh one:
    # whoever can read the file (mode 0600) joins, nobody else, not even on loopback
    security = own_cluster_security(None) if scheduler_file is not None else None
    check_host_is_safe(host, insecure, security)
    log = logging.getLogger("taskmill.scheduler")
    written: list[str] = []  # the id of the scheduler that wrote the scheduler file

    async def start() -> list[Scheduler]:
        try:
            scheduler = await Scheduler(host=host, port=port, heartbeat_timeout=heartbeat_timeout,
                                        dashboard_port=None if no_dashboard else dashboard_port,
                                        preload=preload, security=security).start()
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from None
        except ImportError as exc:
            raise click.BadParameter(str(exc), param_hint="--preload") from None
        log.info("scheduler ready: connect with Executor(%r)", scheduler.address)
        if scheduler_file is not None:
            try:
                write_scheduler_file(scheduler_file, contact_address(scheduler.address),
                                     scheduler.security, scheduler.id)
            except SchedulerFileError as exc:
                await scheduler.close()
                raise click.BadParameter(str(exc), param_hint="--scheduler-file") from None
            written.append(scheduler.id)
            log.info("scheduler file: %s", scheduler_file)
        link = await scheduler.dashboard_ready()
        if link:
            log.info("dashboard: %s", link)
        return [scheduler]

    try:
        serve(start)
    finally:
        if scheduler_file is not None and written:
            remove_scheduler_file(scheduler_file, written[0])


if __name__ == "__main__":
    main()
