"""Entry point of a worker process started by a nanny:
``python -m taskmill.server.worker_process --scheduler ADDR ...``.

It starts a :class:`Worker`, writes its address to the ``--ready-fd`` pipe
once registered, exits when told (SIGTERM/SIGINT: after handing its data to
other workers, ``Worker.close_gracefully``) or when its nanny
disappears (the stdin pipe closes), and exits with status 0 only when it
closed on purpose (e.g. the scheduler stayed unreachable, or its lifetime is
over): its nanny then closes too.  After SIGTERM/SIGINT it exits with
``HANDED_OVER``: its data is elsewhere and its nanny starts a fresh worker
process (the nanny's own SIGTERM stops it the same way, but a closing nanny
starts nothing).

With ``--args-on-stdin`` (a process started before its nanny, see
:mod:`taskmill.server.prestart`) it imports its modules, then reads the rest
of its arguments from stdin, one JSON line, and goes on as above; it exits
quietly when stdin closes first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

from taskmill.comm.core import receive_pool, receive_prefault
from taskmill.comm.eventloop import new_event_loop
from taskmill.core.resources import parse_resources
from taskmill.logs import setup_logging
from taskmill.server.process_guard import die_with_parent, exit_when_pipe_closes
from taskmill.server.runtime import tune_gc
from taskmill.server.warmup import modules_to_preload, start_warm_imports, warmup_delay
from taskmill.server.worker import Worker

#: exit status of a worker process told to stop by a signal, once its data is
#: handed over: its nanny (unless closing itself) starts a new worker process
HANDED_OVER = 75


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="taskmill.server.worker_process")
    p.add_argument("--scheduler")  # required, unless --args-on-stdin
    p.add_argument("--nthreads", type=int, default=1)
    p.add_argument("--memory-limit", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--nanny", default=None)
    p.add_argument("--name", default="")
    p.add_argument("--resources", default="", type=parse_resources)  # "GPU=2,MEMORY=10e9"
    p.add_argument("--ready-fd", type=int, default=None)
    p.add_argument("--watch-stdin", action="store_true")
    p.add_argument("--local-directory", default=None)  # uploads, spilled data
    p.add_argument("--preload", action="append", default=[])  # modules with taskmill_setup(worker)
    p.add_argument("--log-level", default=None)  # None: option logging.level
    p.add_argument("--death-timeout", type=float, default=None)  # seconds; None: option comm.timeouts.reconnect
    p.add_argument("--lifetime", type=float, default=None)  # seconds left before it retires
    # prestarted (taskmill.server.prestart): the arguments come later, as one JSON line on stdin
    p.add_argument("--args-on-stdin", action="store_true")
    args = p.parse_args(argv)
    if args.scheduler is None and not args.args_on_stdin:
        p.error("the following arguments are required: --scheduler")
    return args


def args_from_stdin() -> list[str] | None:
    """A prestarted process's arguments (one JSON line on stdin, read without
    buffering: the rest of the pipe is the watch on the nanny), or None when
    stdin closed first (nobody adopted the process)."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(sys.stdin.fileno(), 1)
        if not chunk:
            return None
        line += chunk
    args: list[str] = json.loads(line)
    return args


async def run_worker(args: argparse.Namespace) -> bool:
    """Run a worker until it closes; whether a signal told it to."""
    worker = Worker(args.scheduler, nthreads=args.nthreads, memory_limit=args.memory_limit,
                    host=args.host, port=args.port, nanny=args.nanny, name=args.name,
                    local_directory=args.local_directory, resources=args.resources,
                    preload=args.preload, death_timeout=args.death_timeout, lifetime=args.lifetime)
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()

    def stop() -> None:
        signalled.set()
        asyncio.ensure_future(worker.close_gracefully())

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    # a bad option fails here, before registering
    warm, prefault = (modules_to_preload(), warmup_delay()), receive_prefault(worker.memory_limit)
    await worker.start()
    if args.ready_fd is not None:
        os.write(args.ready_fd, f"{worker.address}\n".encode())
        os.close(args.ready_fd)
    start_warm_imports(*warm)  # registered: use the idle time ahead
    receive_pool().prefault_in_background(*prefault, loop)  # at the lowest priority
    await worker.finished()
    receive_pool().stop_prefault()  # exiting: the process needs no memory any more
    return signalled.is_set()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # what needs no arguments first (the configuration and uvloop, built with
    # the loop; a full collection, then the heap frozen, 10 ms): a prestarted
    # process does it while its nanny is not ready yet
    loop = new_event_loop()
    tune_gc()
    try:
        if args.args_on_stdin:  # the modules are imported: wait for the nanny's word
            handed = args_from_stdin()
            if handed is None:
                return
            args = parse_args(handed)
        setup_logging(args.log_level)
        if args.watch_stdin:
            die_with_parent()
            exit_when_pipe_closes(sys.stdin.fileno())
        signalled = loop.run_until_complete(run_worker(args))
    except (OSError, ConnectionError) as exc:
        logging.getLogger("taskmill.worker").error("worker failed to start: %s", exc)
        sys.exit(3)
    finally:
        loop.close()
    if signalled:
        sys.exit(HANDED_OVER)


if __name__ == "__main__":
    main()
