"""``taskmill info``: what is installed here, and what a running cluster has.

Without arguments it prints the versions that matter when reporting a
problem (taskmill, Python, dask and distributed if installed, the
platform), read from the installed packages' metadata without importing
them.  Given a scheduler (its address, or ``--scheduler-file``), it also
asks the scheduler for its description (one ``scheduler-info`` request, not
a client session) and prints its address and its workers with their
threads and memory, and the totals.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any

import click

from taskmill.cli.common import Duration
from taskmill.comm import normalize_address
from taskmill.comm.eventloop import new_event_loop
from taskmill.comm.pool import ConnectionPool
from taskmill.protocol.vocabulary import SchedulerInfo
from taskmill.scheduler_file import SchedulerFileError, read_scheduler_file
from taskmill.security import Security
from taskmill.units import format_bytes


def installed_version(distribution: str) -> str:
    """The installed version of ``distribution``, or "not installed"."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str]:
    """Name -> version of taskmill, Python, dask, distributed, and the platform."""
    return {
        "taskmill": installed_version("taskmill"),
        "python": f"{platform.python_version()} ({platform.python_implementation()}, {sys.executable})",
        "dask": installed_version("dask"),
        "distributed": installed_version("distributed"),
        "platform": platform.platform(),
    }


def cluster_lines(info: dict[str, Any]) -> list[str]:
    """The scheduler's address, one line per worker and the totals, from ``scheduler_info()``."""
    workers = info["workers"]
    lines = [f"scheduler    {info['address']}"]
    if info.get("dashboard"):
        lines.append(f"dashboard    {info['dashboard']}")
    threads = sum(w["nthreads"] for w in workers.values())
    memory = sum(w["memory_limit"] for w in workers.values())
    lines.append(f"workers      {len(workers)}, {threads} threads, {format_bytes(memory)} memory")
    for address, w in sorted(workers.items()):
        name = f" ({w['name']})" if w.get("name") and w["name"] != f"worker-{address}" else ""
        lines.append(f"  {address}{name}: {w['nthreads']} threads, "
                     f"{format_bytes(w['memory_limit'])} memory")
    return lines


async def describe(address: str, security: Security | None, timeout: float) -> dict[str, Any]:
    """The scheduler's ``scheduler-info`` (None security: the environment's)."""
    pool = ConnectionPool(timeout=timeout, security=security)
    try:
        info: dict[str, Any] = await pool.rpc(address).ask(SchedulerInfo(), timeout=timeout)
        return info
    finally:
        await pool.close()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("scheduler_address", required=False)
@click.option("--scheduler-file", default=None, type=click.Path(dir_okay=False),
              help="Also describe the cluster of the scheduler that wrote this file.")
@click.option("--timeout", default="10s", show_default=True, type=Duration(),
              help="How long to try to reach the scheduler.")
def info(scheduler_address: str | None, scheduler_file: str | None, timeout: float) -> None:
    """Print the versions of taskmill, Python, dask and distributed, and the platform;
    with SCHEDULER_ADDRESS or --scheduler-file, also the cluster's workers."""
    for name, version in versions().items():
        click.echo(f"{name:<12} {version}")
    if scheduler_address is None and scheduler_file is None:
        return
    if scheduler_address is not None and scheduler_file is not None:
        raise click.UsageError("give the scheduler's address or --scheduler-file, not both")
    try:
        if scheduler_file is not None:
            contact = read_scheduler_file(scheduler_file)
            address, security = contact.address, contact.security_here()
        else:
            assert scheduler_address is not None
            address, security = normalize_address(scheduler_address), None
        loop = new_event_loop()
        try:
            described = loop.run_until_complete(describe(address, security, timeout))
        finally:
            loop.close()
    except SchedulerFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--scheduler-file") from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="SCHEDULER_ADDRESS") from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach the scheduler: {exc}") from None
    click.echo("")
    for line in cluster_lines(described):
        click.echo(line)
