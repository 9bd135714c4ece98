"""Worker processes started before their nanny knows where they will serve.

Theory of operation
-------------------
A fresh worker process spends most of its start importing Python (about
0.1 s: the interpreter, asyncio, the worker's modules); its nanny can only
start it once the scheduler and the nanny listen, which in an embedded
cluster comes after the client process imported the scheduler's and the
nanny's own modules.  Those two waits need not follow each other:
``Executor()`` starts the worker processes first (:func:`prestart`), each
told only ``--args-on-stdin``, and then imports and starts the cluster.
Meanwhile each process imports everything it needs and blocks reading its
arguments from its stdin; the nanny that adopts it (``Nanny(prestarted=)``)
writes them there (:meth:`PrestartedProcess.hand_over`, one JSON line) and
from then on the process is exactly one the nanny started itself: the same
environment (:func:`worker_environment`, computed with the cluster's
security before the cluster exists), the same ready pipe (its write end
passed at the start), the same stdin pipe that ends it with its nanny.

A prestarted process nobody adopts (the cluster failed to start, or needed
fewer workers) is discarded: closing its stdin makes it exit at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from taskmill import config
from taskmill.security import Security

#: what glibc needs to give freed memory back to the OS promptly (as dask
#: does); set in the environment of the worker processes a nanny starts
MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": "65536"}

#: seconds a discarded process has to finish its imports and exit before it is killed
DISCARD_GRACE = 10.0


def worker_environment(security: Security, extra: dict[str, str]) -> dict[str, str]:
    """The environment of a worker process a nanny starts: this process's,
    with the cluster's ``security`` in place of any it had, then ``extra``
    (what ``Environ`` plugins add) and the options set in this process."""
    return {**MALLOC_ENV, **security.child_environment(os.environ), **extra,
            **config.inheritable()}


async def start_worker_process(args: list[str], env: dict[str, str],
                               ready_fd: int) -> asyncio.subprocess.Process:
    """``python -m taskmill.server.worker_process ARGS`` in a session of its
    own (a terminal's Ctrl-C is its nanny's to act on), with a stdin pipe and
    the write end ``ready_fd`` of its ready pipe."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "taskmill.server.worker_process", *args,
        stdin=asyncio.subprocess.PIPE, pass_fds=(ready_fd,), start_new_session=True, env=env)


class PrestartedProcess:
    """A worker process importing its modules, waiting for its arguments."""

    def __init__(self, process: asyncio.subprocess.Process, ready_read: int, ready_fd: int) -> None:
        self.process = process
        #: the read end of its ready pipe (the nanny's from the hand-over on)
        self.ready_read = ready_read
        #: the number of the ready pipe's write end in the process (its ``--ready-fd``)
        self.ready_fd = ready_fd

    def hand_over(self, args: list[str]) -> asyncio.subprocess.Process:
        """Give the process its command-line arguments; the nanny owns it now."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(args).encode() + b"\n")
        return self.process

    async def discard(self) -> None:
        """Nobody adopts it: close its stdin and the ready pipe; it exits as soon
        as it reads its arguments (killed if it has not within ``DISCARD_GRACE``)."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        os.close(self.ready_read)
        try:
            await asyncio.wait_for(self.process.wait(), DISCARD_GRACE)
        except asyncio.TimeoutError:
            self.process.kill()
            await self.process.wait()


async def prestart(n: int, security: Security) -> list[PrestartedProcess]:
    """Start ``n`` worker processes for a cluster protected by ``security``."""
    env = worker_environment(security, {})
    started = []
    try:
        for _ in range(n):
            read_fd, write_fd = os.pipe()
            try:
                process = await start_worker_process(["--args-on-stdin"], env, write_fd)
            except BaseException:
                os.close(read_fd)
                raise
            finally:
                os.close(write_fd)
            started.append(PrestartedProcess(process, read_fd, write_fd))
    except BaseException:
        for p in started:
            await p.discard()
        raise
    return started
