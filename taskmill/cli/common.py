"""Shared pieces of the command-line programs: running a set of servers
until SIGINT/SIGTERM (or until all of them closed on their own), the
loopback-only rule (lifted by a shared token), and durations ("90s", "5m",
"1h") as an option type."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import click

from taskmill.comm import is_loopback
from taskmill.comm import tls
from taskmill.comm.auth import AuthenticationError
from taskmill.comm.eventloop import new_event_loop
from taskmill.units import parse_seconds
from taskmill.security import Security
from taskmill.server.runtime import tune_gc


def check_host_is_safe(host: str, insecure: bool, security: Security | None = None) -> None:
    """Refuse to listen beyond loopback without a shared token or TLS
    certificates (``security``, default the environment's), unless told to
    (like Redis' protected mode); refuse an unreadable token file or
    half-configured TLS."""
    try:
        security = security or Security.from_environment()
        tls.server_context(security)  # unusable certificate files fail here, not per connection
        authenticated = security.configured
    except (AuthenticationError, tls.TLSConfigError) as exc:
        raise click.UsageError(str(exc)) from None
    if not is_loopback(host) and not authenticated and not insecure:
        raise click.UsageError(
            f"refusing to listen on {host}: taskmill runs pickled code, so anyone who can reach "
            "this port can run programs on this machine. Listen on loopback (the default), set "
            "the same secret in $TASKMILL_TOKEN (or a file named by $TASKMILL_TOKEN_FILE) on "
            "every node, give every node a certificate of the cluster's CA ($TASKMILL_TLS_CA_FILE, "
            "$TASKMILL_TLS_CERT_FILE, $TASKMILL_TLS_KEY_FILE), or pass --insecure if this "
            "network is trusted."
        )


class Duration(click.ParamType):
    """A duration option: ``90s``, ``5m``, ``1h`` or a number of seconds -> float seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            return parse_seconds(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def serve(start: Callable[[], Awaitable[list[Any]]]) -> None:
    """Start servers, wait until all of them closed (a worker whose lifetime
    is over, or whose scheduler is gone) or a signal arrives, close all."""
    tune_gc()
    loop = new_event_loop()

    async def main() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        nodes = await start()
        finished = asyncio.ensure_future(asyncio.gather(*(n.finished() for n in nodes)))
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait([stopper, finished], return_when=asyncio.FIRST_COMPLETED)
        await asyncio.gather(*(n.close_gracefully() for n in nodes), return_exceptions=True)
        stopper.cancel()
        finished.cancel()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
