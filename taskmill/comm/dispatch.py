"""Server side of the request/reply convention.

Theory of operation
-------------------
A request is a dict ``{"op": name, "reply": bool (default True), **arguments}``.
:func:`handle_comm` reads requests one at a time and calls
``handlers[op](comm=comm, **arguments)``, awaiting the result if it is
awaitable.  When a reply is wanted it writes ``{"status": "OK", "result": r}``,
or, if the handler raised, ``error_reply(exc)``:
``{"status": "error", "exception": Serialized, "text": str, "traceback": str}``.
A failing handler never ends the loop.  Requests on one comm are handled in
order; concurrency comes from using several comms (see ``ConnectionPool``).

A handler may take the comm over for a long-lived stream (e.g. a worker's
batched stream): it reads from ``comm`` itself and returns when the comm
closes, after which :func:`handle_comm` returns too.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

from taskmill.comm.core import CommClosedError, Comm
from taskmill.protocol import ProtocolError, error_reply

logger = logging.getLogger("taskmill.comm.dispatch")


async def handle_comm(comm: Comm, handlers: Mapping[str, Callable[..., Any]]) -> None:
    """Serve requests from ``comm`` with ``handlers`` until the comm closes."""
    try:
        while not comm.closed():
            msg = await comm.read()
            if not isinstance(msg, dict):
                reason = f"expected a request dict, got {type(msg).__name__}"
                logger.warning("closing connection from %s: %s", comm.peer_address, reason)
                await comm.write(error_reply(TypeError(reason)))
                await comm.close()
                return
            wants_reply = msg.pop("reply", True)
            op = msg.get("op")
            try:
                result = await _call(comm, handlers, msg)
            except Exception as exc:
                if wants_reply:
                    await comm.write(error_reply(exc))
                else:
                    logger.warning(
                        "request %r from %s failed (no reply wanted): %r",
                        op, comm.peer_address, exc,
                    )
                continue
            if wants_reply:
                await _reply(comm, result)
            # the request and the reply may hold large frames (put-data, get-data):
            # not until the next request, which may come much later
            del msg, result
    except CommClosedError:
        return


async def _call(comm: Comm, handlers: Mapping[str, Callable[..., Any]], msg: dict[str, Any]) -> Any:
    op = msg.pop("op", None)
    if not isinstance(op, str):
        raise ValueError(f"request has no 'op' string (got {op!r})")
    handler = handlers.get(op)
    if handler is None:
        raise ValueError(f"unknown operation {op!r}")
    result = handler(comm=comm, **msg)
    if inspect.iscoroutine(result) or inspect.isawaitable(result):
        result = await result
    return result


async def _reply(comm: Comm, result: Any) -> None:
    try:
        await comm.write({"status": "OK", "result": result})
    except (TypeError, ProtocolError) as exc:  # result not encodable, or over the limits
        await comm.write(error_reply(exc))
