"""Comms: asyncio message streams between taskmill nodes.

* :mod:`~taskmill.comm.core`: the ``Comm`` / ``Listener`` interfaces, ``connect``, ``listen``
* :mod:`~taskmill.comm.tcp`, :mod:`~taskmill.comm.inproc`: the transports
* :mod:`~taskmill.comm.dispatch`: serving requests (``handle_comm``)
* :mod:`~taskmill.comm.pool`: making requests (``ConnectionPool``, ``RPC``)
* :mod:`~taskmill.comm.batched`: coalesced one-way streams (``BatchedSend``)
* :mod:`~taskmill.comm.eventloop`: uvloop-backed ``run`` / ``new_event_loop``
"""

from taskmill.comm.addressing import (
    get_ip_loopback,
    is_loopback,
    normalize_address,
    parse_address,
    unparse_address,
)
from taskmill.comm.batched import BatchedSend
from taskmill.comm.core import Comm, CommClosedError, Listener, connect, listen
from taskmill.comm.dispatch import handle_comm
from taskmill.comm.eventloop import new_event_loop, run
from taskmill.comm.pool import RPC, ConnectionPool

__all__ = [
    "RPC",
    "BatchedSend",
    "Comm",
    "CommClosedError",
    "ConnectionPool",
    "Listener",
    "connect",
    "get_ip_loopback",
    "handle_comm",
    "is_loopback",
    "listen",
    "new_event_loop",
    "normalize_address",
    "parse_address",
    "run",
    "unparse_address",
]
