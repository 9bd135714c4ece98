"""``taskmill-worker`` (aliases ``dworker``, ``taskmill worker``): run workers for a scheduler.

The scheduler is named by its address or by ``--scheduler-file`` (waited for
up to ``--death-timeout``: on a batch system the worker's job may start
first); a token in that file is the workers' ``security`` (a nanny hands it
to its worker process in the environment).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any, TypeVar

import click
import psutil

from taskmill import config, config_checks, timeouts
from taskmill.cli.common import Duration, check_host_is_safe, serve
from taskmill.scheduler_file import (SchedulerContact, SchedulerFileError,
                                             wait_for_scheduler_file)
from taskmill.comm import normalize_address
from taskmill.core.resources import parse_resources
from taskmill.units import parse_bytes
from taskmill.logs import setup_logging
from taskmill.server.nanny import Nanny
from taskmill.server.worker import Worker

logger = logging.getLogger("taskmill.worker")
T = TypeVar("T")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("scheduler_address", required=False)
@click.option("--scheduler-file", default=None, type=click.Path(dir_okay=False),
              help="Read the scheduler's address (and token) from this file, written by "
                   "`taskmill-scheduler --scheduler-file`; waits up to --death-timeout for it.")
@click.option("--nthreads", default=None, type=int, help="Threads per worker [default: cores / nworkers].")
@click.option("--nworkers", default=1, show_default=True, type=int, help="Worker processes to start.")
@click.option("--memory-limit", default="auto", show_default=True,
              help="Memory per worker, e.g. 4GB; 'auto' shares the machine's memory.")
@click.option("--no-nanny", is_flag=True, help="Run the worker in this process, without a nanny.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--name", default="", help="A name for the worker, unique in the cluster "
                                         "(suffixed -0, -1 ... when --nworkers > 1).")
@click.option("--lifetime", default=None, type=Duration(),
              help="Retire after this long (e.g. 1h): the worker's data moves to other workers, "
                   "then it exits and is not restarted.  [default: option "
                   "worker.lifetime.duration, never]")
@click.option("--lifetime-stagger", default=None, type=Duration(),
              help="Move --lifetime by a random amount within +- this, so that the workers of "
                   "one job do not all leave at once.  [default: option worker.lifetime.stagger, 0]")
@click.option("--death-timeout", default=None, type=Duration(),
              help="Exit when the scheduler cannot be reached for this long, at start (also "
                   "waiting for --scheduler-file) or after losing it.  "
                   f"[default: option {timeouts.RECONNECT.key}, 30s]")
@click.option("--local-directory", default=None, type=click.Path(file_okay=False),
              help="Directory for spilled data and uploaded files; each worker process uses a "
                   "fresh subdirectory, removed when it ends.  [default: option "
                   "worker.local-directory, else $TMPDIR or /tmp]")
@click.option("--resources", default="", show_default=False,
              help='Abstract resources of each worker, e.g. "GPU=2,MEMORY=10e9"; tasks submitted '
                   "with resources={...} run only where (and while) enough of them are free.")
@click.option("--insecure", is_flag=True, help="Allow listening beyond loopback without a shared token ($TASKMILL_TOKEN).")
@click.option("--preload", multiple=True, metavar="MODULE",
              help="A module (name or .py path) whose taskmill_setup(worker) runs at start and "
                   "taskmill_teardown(worker) at close; may be repeated.")
@click.option("--log-level", default=None,
              help="DEBUG, INFO, WARNING or ERROR  [default: option logging.level, INFO]")
def main(scheduler_address: str | None, scheduler_file: str | None, nthreads: int | None,
         nworkers: int, memory_limit: str, no_nanny: bool, host: str, name: str,
         lifetime: float | None, lifetime_stagger: float | None, death_timeout: float | None,
         local_directory: str | None, resources: str, insecure: bool, preload: tuple[str, ...],
         log_level: str | None) -> None:
    """Start workers that connect to the scheduler at SCHEDULER_ADDRESS (host:port),
    or to the one named by --scheduler-file."""
    setup_logging(log_level)
    if (scheduler_address is None) == (scheduler_file is None):
        raise click.UsageError("give the scheduler's address (SCHEDULER_ADDRESS) or "
                               "--scheduler-file PATH, not both and not neither")
    address = None
    if scheduler_address is not None:
        try:
            address = normalize_address(scheduler_address)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="SCHEDULER_ADDRESS") from None
        check_host_is_safe(host, insecure)
    if nworkers < 1:
        raise click.BadParameter("must be at least 1", param_hint="--nworkers")
    try:
        declared = parse_resources(resources)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--resources") from None
    if lifetime is None:
        lifetime = option_default("worker.lifetime.duration", config_checks.duration, "--lifetime")
    if lifetime_stagger is None:
        lifetime_stagger = option_default("worker.lifetime.stagger", config_checks.duration,
                                          "--lifetime-stagger") or 0.0
    if local_directory is None:
        local_directory = option_default("worker.local-directory", config_checks.directory,
                                         "--local-directory")
    if local_directory is not None:
        local_directory = usable_directory(local_directory)
    threads = nthreads or max(1, (os.cpu_count() or 1) // nworkers)
    limit = (psutil.virtual_memory().total // nworkers if memory_limit == "auto"
             else parse_bytes(memory_limit))
    own_dirs: list[str] = []  # --no-nanny workers' directories (a nanny removes its own)

    async def start() -> list[Any]:
        target, security = address, None
        if target is None:
            contact = await scheduler_from_file(scheduler_file or "", death_timeout)
            target, security = contact.address, contact.security_here()
            check_host_is_safe(host, insecure, security)  # with the file's token, if it has one
        nodes: list[Any] = []
        for i in range(nworkers):
            label = f"{name}-{i}" if name and nworkers > 1 else name
            kwargs = dict(nthreads=threads, memory_limit=limit, host=host, name=label,
                          resources=declared, preload=preload, death_timeout=death_timeout,
                          lifetime=lifetime, lifetime_stagger=lifetime_stagger, security=security)
            try:  # a worker in this process imports its --preload modules here
                if no_nanny:
                    own_dirs.append(tempfile.mkdtemp(prefix="taskmill-worker-", dir=local_directory))
                    nodes.append(Worker(target, local_directory=own_dirs[-1], **kwargs))  # type: ignore[arg-type]
                else:
                    nodes.append(Nanny(target, log_level=log_level, local_directory=local_directory,
                                       **kwargs))  # type: ignore[arg-type]
            except ImportError as exc:
                raise click.BadParameter(str(exc), param_hint="--preload") from None
        try:
            await asyncio.gather(*(n.start() for n in nodes))
        except (OSError, RuntimeError) as exc:
            await asyncio.gather(*(n.close() for n in nodes), return_exceptions=True)
            raise click.ClickException(f"could not start workers for {target}: {exc}") from None
        return nodes

    try:
        serve(start)
    finally:
        for directory in own_dirs:
            shutil.rmtree(directory, ignore_errors=True)


async def scheduler_from_file(path: str, death_timeout: float | None) -> SchedulerContact:
    """What the scheduler file at ``path`` says (waiting for it to appear)."""
    wait = death_timeout if death_timeout is not None else timeouts.RECONNECT.get()
    if not os.path.exists(path):
        logger.info("waiting up to %gs for the scheduler file %s", wait, path)
    try:
        contact = await wait_for_scheduler_file(path, wait)
    except SchedulerFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--scheduler-file") from None
    return contact


def option_default(key: str, check: Callable[[Any], T], flag: str) -> T:
    """The option ``key``, the default of ``flag``; a bad value is a usage error naming both."""
    try:
        return config.read(key, check)
    except ValueError as exc:
        raise click.BadParameter(f"{exc} (the option is the default of {flag})",
                                 param_hint=flag) from None


def usable_directory(path: str) -> str:
    """``path`` made absolute, created if missing; a clear error if it cannot be used."""
    path = os.path.abspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise click.BadParameter(f"cannot create {path}: {exc.strerror}",
                                 param_hint="--local-directory") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise click.BadParameter(f"{path} is not writable by this user: choose a directory "
                                 "you can write to", param_hint="--local-directory")
    return path


if __name__ == "__main__":
    main()
