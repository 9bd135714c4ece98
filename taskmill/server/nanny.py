"""The nanny: starts one worker process, watches it, restarts or kills it.

Theory of operation
-------------------
The nanny is a small server (requests ``restart``, ``kill``, ``ping``) that
owns one child process running :mod:`taskmill.server.worker_process`.  The
child reports its address on a pipe once it has registered with the
scheduler; its stdin is a pipe from the nanny, so it dies with the nanny
even after a SIGKILL.

With a memory limit, the nanny polls its worker's RSS and kills it (SIGKILL)
past ``terminate`` (default 95%) of the limit; the reason it then reports is
"worker exceeded its memory limit (X of Y)" (see
:mod:`taskmill.server.memory`).

How the child ended decides what the nanny does, so that each signal means
what an operator means by it:

* status 0: the worker chose to stop (its scheduler is gone, its lifetime is
  over): the nanny closes too.
* ``HANDED_OVER`` (SIGTERM or SIGINT to the worker process itself): the
  worker retired, its data moved to other workers first; the nanny starts a
  fresh worker process at once.  SIGTERM to the *nanny* stops the worker the
  same way, but the nanny then closes: the node leaves and stays down.
* anything else (a kill, a crash, the memory limit): the nanny tells the
  scheduler why (exit code or signal name; the scheduler counts the death
  toward ``KilledWorker``) and starts a new one after the delay of
  :mod:`taskmill.server.restart_backoff` (none after a single death; doubling
  while deaths follow each other), unless the scheduler no longer answers: a
  nanny never respawns forever against a missing scheduler.

Nanny plugins (``plugin-setup``, :mod:`taskmill.server.plugins`) run in the
nanny; one with ``restart`` restarts the worker process afterwards, which
starts with ``env`` (what ``Environ`` adds) on top of the nanny's environment
and with the nanny's ``--preload`` modules.

The worker process gets the nanny's ``security`` (the cluster's token and
TLS files) in its environment, in place of any the nanny's own environment
had, never on its command line: any user can read a command line (``ps``),
only the owner a process's environment.

Each worker process gets a fresh local directory (uploaded files, spilled
data), inside ``local_directory`` (``--local-directory``; default: the
system's temporary directory, ``$TMPDIR``), that the nanny removes once the
process has ended, however it ended.

``death_timeout`` goes to each worker process (how long it tries to reach
the scheduler before it exits with status 0, which closes the nanny).
``lifetime`` is the nanny's: drawn once (with its stagger) when the nanny
starts, so that a worker process started again after a crash gets only what
is left of it; when it runs out the worker retires and exits with status 0,
and the nanny closes instead of starting another.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import psutil

from taskmill import config, config_checks, timeouts
from taskmill.core.resources import check_resources
from taskmill.protocol.vocabulary import Kill, RestartWorker, WorkerExited
from taskmill.server.memory import MemoryThresholds, memory_exceeded_reason
from taskmill.plugins import NannyPlugin
from taskmill.server.node import Node, Status
from taskmill.server.plugins import PluginHost
from taskmill.server.prestart import PrestartedProcess, start_worker_process, worker_environment
from taskmill.server.restart_backoff import RestartBackoff
from taskmill.server.worker import staggered
from taskmill.server.worker_process import HANDED_OVER
from taskmill.security import Security, in_process_security

logger = logging.getLogger("taskmill.nanny")

START_TIMEOUT = 60.0


def describe_exit(returncode: int) -> str:
    """'worker process exited with signal SIGKILL' / '... with exit code 3'."""
    if returncode == HANDED_OVER:
        return "worker process stopped by a signal after handing its data over"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"worker process exited with signal {name}"
    return f"worker process exited with exit code {returncode}"


class Nanny(Node):
    """Starts and supervises one worker process."""

    def __init__(self, scheduler_address: str, *, nthreads: int = 1, memory_limit: int = 0,
                 host: str = "127.0.0.1", port: int = 0, worker_port: int = 0, name: str = "",
                 log_level: str | None = None,
                 memory_thresholds: MemoryThresholds | None = None,
                 resources: dict[str, float] | None = None, preload: Sequence[str] = (),
                 security: Security | None = None, death_timeout: float | None = None,
                 lifetime: float | None = None, lifetime_stagger: float = 0.0,
                 local_directory: str | None = None,
                 prestarted: PrestartedProcess | None = None) -> None:
        # None: the scheduler's when it runs in this process, else the environment's
        super().__init__(name or "nanny", in_process_security(scheduler_address, security))
        self.scheduler_address = scheduler_address
        self.nthreads = nthreads
        #: abstract resources its worker declares (passed on the command line)
        self.resources = check_resources(resources, "worker resources", allow_zero=True)
        self.memory_limit = memory_limit
        self.host, self.port, self.worker_port = host, port, worker_port
        self.worker_name = name
        self.log_level = log_level or config.read("logging.level", config_checks.log_level)
        self.process: asyncio.subprocess.Process | None = None
        self.worker_address: str | None = None
        self.restarts = 0
        self.last_exit: str | None = None
        #: delays before restarting a worker process that keeps dying
        self.backoff = RestartBackoff.from_config()
        #: when (``time.monotonic()``) the current worker process started
        self._process_started = time.monotonic()
        self._restarting = False
        #: fractions of ``memory_limit``; ``terminate`` is the nanny's (default: from the configuration)
        self.memory_thresholds = memory_thresholds or MemoryThresholds.from_config()
        #: why the nanny itself killed the current process (reported instead of the signal)
        self._kill_reason: str | None = None
        self._worker_dir: str | None = None
        #: ``--preload`` modules of the worker process (it runs their hooks)
        self.preload = tuple(preload)
        #: seconds the worker process tries to reach the scheduler (None: its default)
        self.death_timeout = death_timeout
        lifetime = staggered(lifetime, lifetime_stagger)
        #: when (``time.monotonic()``) the worker retires for good; None: never
        self._retire_at = time.monotonic() + lifetime if lifetime is not None else None
        #: where each worker process gets its own directory (None: the system's temporary one)
        self.local_directory = local_directory
        #: environment variables of the worker process on top of the nanny's (``Environ``)
        self.env: dict[str, str] = {}
        #: nanny plugins (``Executor.register_plugin``); ``restart`` ones restart the worker
        self.plugins = PluginHost(self, NannyPlugin, restart=self._restart_for_plugin)
        #: set once the first worker process is up (a plugin's restart waits for it)
        self._started = asyncio.Event()
        #: a worker process started before this nanny, to adopt as its first one
        #: (:mod:`taskmill.server.prestart`); discarded if the nanny closes first
        self._prestarted = prestarted
        self.serve({RestartWorker: self._restart, Kill: self._kill})

    async def start(self) -> Nanny:
        await self.listen(f"tcp://{self.host}:{self.port}")
        self.status = Status.running
        await self._start_worker()
        self._started.set()
        return self

    async def _restart_for_plugin(self) -> None:
        """Restart the worker after a nanny plugin's setup; a plugin set up while
        the first worker process is still starting (it joined the scheduler but
        has not told this nanny yet) waits for it rather than killing it midway."""
        await self._started.wait()
        await self._restart(RestartWorker(), None)

    def _remove_worker_dir(self) -> None:
        if self._worker_dir is not None:
            shutil.rmtree(self._worker_dir, ignore_errors=True)
            self._worker_dir = None

    def _worker_args(self, ready_fd: int, options: list[str]) -> list[str]:
        """The worker process's command line (after ``-m taskmill.server.worker_process``)."""
        return ["--scheduler", self.scheduler_address, "--nthreads", str(self.nthreads),
                "--memory-limit", str(self.memory_limit), "--host", self.host,
                "--port", str(self.worker_port), "--nanny", self.address,
                "--name", self.worker_name, "--ready-fd", str(ready_fd), "--watch-stdin",
                "--log-level", self.log_level, "--local-directory", str(self._worker_dir),
                "--resources", ",".join(f"{k}={v!r}" for k, v in self.resources.items()),
                *(arg for module in self.preload for arg in ("--preload", module)), *options]

    async def _start_worker(self) -> None:
        self._remove_worker_dir()
        self._worker_dir = tempfile.mkdtemp(prefix="taskmill-worker-", dir=self.local_directory)
        options: list[str] = []
        if self.death_timeout is not None:
            options += ["--death-timeout", repr(self.death_timeout)]
        if self._retire_at is not None:
            options += ["--lifetime", repr(max(0.0, self._retire_at - time.monotonic()))]
        self._process_started = time.monotonic()
        prestarted, self._prestarted = self._prestarted, None
        if prestarted is not None:  # started before this nanny, with the same environment
            read_fd = prestarted.ready_read
            self.process = prestarted.hand_over(self._worker_args(prestarted.ready_fd, options))
        else:
            read_fd, write_fd = os.pipe()
            try:
                self.process = await start_worker_process(
                    self._worker_args(write_fd, options), worker_environment(self.security, self.env),
                    write_fd)
            finally:
                os.close(write_fd)
        reaching = self.death_timeout if self.death_timeout is not None else timeouts.RECONNECT.get()
        try:  # the worker may spend its death timeout reaching the scheduler
            line = await asyncio.wait_for(_read_line(read_fd), START_TIMEOUT + reaching)
        finally:
            os.close(read_fd)
        if not line:
            rc = await self.process.wait()
            raise RuntimeError(f"worker process failed to start ({describe_exit(rc)}); "
                               f"is the scheduler at {self.scheduler_address} reachable?")
        self.worker_address = line
        self._kill_reason = None
        self.spawn(self._watch(self.process), "watch-worker")
        logger.info("watching worker %s (pid %d)", line, self.process.pid)
        if self.memory_limit > 0 and self.memory_thresholds.terminate:
            self.spawn(self._watch_memory(self.process), "watch-memory")

    async def _watch(self, process: asyncio.subprocess.Process) -> None:
        returncode = await process.wait()
        if self.status is not Status.running or self._restarting or process is not self.process:
            return
        self._remove_worker_dir()
        reason = self._kill_reason or describe_exit(returncode)
        self.last_exit = reason
        if returncode == HANDED_OVER and self._kill_reason is None:
            logger.info("%s: worker stopped by a signal after handing its data over; "
                        "starting a fresh one", self.worker_address)
            failed = await self._start_again()
            if failed is None:
                return
            reason = failed
        elif returncode == 0:
            logger.info("%s: worker stopped on its own (lifetime over, or scheduler gone); "
                        "nanny closes", self.worker_address)
            await self.close()
            return
        await self._replace_dead(reason)

    async def _replace_dead(self, reason: str) -> None:
        """Tell the scheduler why the worker process died, wait the backoff
        and start another; one that dies while starting is the next death in
        a row.  Closes the nanny when the scheduler does not answer."""
        while True:
            process = self.process
            logger.warning("%s: %s", self.worker_address, reason)
            try:
                await self.pool.rpc(self.scheduler_address).ask(
                    WorkerExited(self.worker_address or "", reason), timeout=timeouts.REQUEST)
            except (OSError, asyncio.TimeoutError) as exc:
                logger.error("scheduler %s unreachable (%s): not restarting the worker",
                             self.scheduler_address, exc)
                await self.close()
                return
            delay = self.backoff.died(time.monotonic() - self._process_started)
            if delay:
                logger.warning("%s: worker process died %d times in a row; starting the next "
                               "one in %.1fs (options worker.restart-backoff.*)",
                               self.worker_address, self.backoff.streak, delay)
                await asyncio.sleep(delay)
            if self.status is not Status.running or self._restarting or process is not self.process:
                return  # closing, or restarted meanwhile
            failed = await self._start_again()
            if failed is None:
                return
            reason = failed

    async def _start_again(self) -> str | None:
        """Start another worker process; -> why it died before it was up, or None."""
        self.restarts += 1
        try:
            await self._start_worker()
        except RuntimeError as exc:
            self.last_exit = str(exc)
            return self.last_exit
        return None

    async def _watch_memory(self, process: asyncio.subprocess.Process) -> None:
        """Kill ``process`` when its RSS passes ``terminate`` of the memory limit."""
        limit = self.memory_limit
        threshold = self.memory_thresholds.terminate * limit
        interval = self.memory_thresholds.interval
        try:
            ps = psutil.Process(process.pid)
            while process.returncode is None and process is self.process:
                rss = ps.memory_info().rss
                if rss > threshold:
                    self._kill_reason = memory_exceeded_reason(rss, limit)
                    logger.warning("%s: %s; killing it", self.worker_address, self._kill_reason)
                    process.kill()
                    return
                await asyncio.sleep(interval)
        except (psutil.NoSuchProcess, ProcessLookupError):
            return

    async def _stop_worker(self) -> None:
        """SIGTERM (the worker hands its data over, see ``Worker.close_gracefully``),
        then SIGKILL if it is still there after the retire timeout and 3 s."""
        grace = timeouts.RETIRE.get() + 3.0
        process = self.process
        if process is None or process.returncode is not None:
            return
        try:
            process.terminate()
            await asyncio.wait_for(process.wait(), grace)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
        except ProcessLookupError:
            pass

    async def _restart(self, msg: RestartWorker, comm: Any) -> str:
        """Kill the worker process and start a new one."""
        self._restarting = True
        try:
            if self.process is not None and self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            self.restarts += 1
            await asyncio.wait_for(self._start_worker(), START_TIMEOUT)
        finally:
            self._restarting = False
        return "OK"

    async def _kill(self, msg: Kill, comm: Any) -> str:
        """Stop the worker process for good (the nanny stays up)."""
        self._restarting = True
        await self._stop_worker()
        return "OK"

    async def _on_close(self) -> None:
        self._restarting = True
        if self._prestarted is not None:  # closed before it started its first worker
            await self._prestarted.discard()
            self._prestarted = None
        await self._stop_worker()
        await self.plugins.close()
        self._remove_worker_dir()


async def _read_line(fd: int) -> str:
    """Read one line from a pipe without blocking the loop."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(fd), "rb", buffering=0))
    try:
        return (await reader.readline()).decode().strip()
    finally:
        transport.close()
