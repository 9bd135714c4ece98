"""``taskmill-worker`` (alias ``dworker``): run workers for a scheduler."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import click
import psutil

from taskmill.cli.common import check_host_is_safe, serve
from taskmill.comm import normalize_address
from taskmill.core.resources import parse_resources
from taskmill.core.units import parse_bytes
from taskmill.logs import setup_logging
from taskmill.server.nanny import Nanny
from taskmill.server.worker import Worker


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("scheduler_address")
@click.option("--nthreads", default=None, type=int, help="Threads per worker [default: cores / nworkers].")
@click.option("--nworkers", default=1, show_default=True, type=int, help="Worker processes to start.")
@click.option("--memory-limit", default="auto", show_default=True,
              help="Memory per worker, e.g. 4GB; 'auto' shares the machine's memory.")
@click.option("--no-nanny", is_flag=True, help="Run the worker in this process, without a nanny.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--name", default="", help="A name for the worker (suffixed when --nworkers > 1).")
@click.option("--resources", default="", show_default=False,
              help='Abstract resources of each worker, e.g. "GPU=2,MEMORY=10e9"; tasks submitted '
                   "with resources={...} run only where (and while) enough of them are free.")
@click.option("--insecure", is_flag=True, help="Allow listening beyond loopback without a shared token ($TASKMILL_TOKEN).")
@click.option("--preload", multiple=True, metavar="MODULE",
              help="A module (name or .py path) whose taskmill_setup(worker) runs at start and "
                   "taskmill_teardown(worker) at close; may be repeated.")
@click.option("--log-level", default=None,
              help="DEBUG, INFO, WARNING or ERROR  [default: option logging.level, INFO]")
def main(scheduler_address: str, nthreads: int | None, nworkers: int, memory_limit: str,
         no_nanny: bool, host: str, name: str, resources: str, insecure: bool,
         preload: tuple[str, ...], log_level: str | None) -> None:
    """Start workers that connect to the scheduler at SCHEDULER_ADDRESS (host:port)."""
    setup_logging(log_level)
    check_host_is_safe(host, insecure)
    try:
        address = normalize_address(scheduler_address)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="SCHEDULER_ADDRESS") from None
    if nworkers < 1:
        raise click.BadParameter("must be at least 1", param_hint="--nworkers")
    try:
        declared = parse_resources(resources)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--resources") from None
    threads = nthreads or max(1, (os.cpu_count() or 1) // nworkers)
    limit = (psutil.virtual_memory().total // nworkers if memory_limit == "auto"
             else parse_bytes(memory_limit))

    async def start() -> list[Any]:
        nodes: list[Any] = []
        for i in range(nworkers):
            label = f"{name}-{i}" if name and nworkers > 1 else name
            kwargs = dict(nthreads=threads, memory_limit=limit, host=host, name=label,
                          resources=declared, preload=preload)
            try:  # a worker in this process imports its --preload modules here
                nodes.append(Worker(address, **kwargs) if no_nanny  # type: ignore[arg-type]
                             else Nanny(address, log_level=log_level, **kwargs))  # type: ignore[arg-type]
            except ImportError as exc:
                raise click.BadParameter(str(exc), param_hint="--preload") from None
        try:
            await asyncio.gather(*(n.start() for n in nodes))
        except (OSError, RuntimeError) as exc:
            await asyncio.gather(*(n.close() for n in nodes), return_exceptions=True)
            raise click.ClickException(f"could not start workers for {address}: {exc}") from None
        return nodes

    serve(start)


if __name__ == "__main__":
    main()
