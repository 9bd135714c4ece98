"""Addresses: ``scheme://location`` strings naming where a comm listens.

Theory of operation
-------------------
Two schemes exist: ``tcp://host:port`` (IPv6 hosts in brackets:
``tcp://[::1]:8786``) and ``inproc://name`` (an in-memory listener of this
process).  A bare ``host:port`` means TCP.  Everything else in taskmill holds
addresses in the normalized form produced by :func:`normalize_address`, so
addresses can be compared as strings.
"""

from __future__ import annotations

import functools
import socket
import struct

SCHEMES = ("tcp", "inproc")
_EXPECTED = "expected 'tcp://host:port', 'host:port' or 'inproc://name'"


def parse_address(address: str) -> tuple[str, str, int]:
    """Split an address into ``(scheme, host, port)``.

    For ``inproc://name`` the host is ``name`` and the port is 0.  Raises
    ``ValueError`` saying the expected form when the address is malformed.
    """
    if not isinstance(address, str):
        raise ValueError(f"address must be a str, got {address!r}; {_EXPECTED}")
    scheme, sep, location = address.partition("://")
    if not sep:
        scheme, location = "tcp", address
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r} in address {address!r}; {_EXPECTED}")
    if scheme == "inproc":
        return scheme, location, 0
    host, sep, port_text = location.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"IPv6 host in {address!r} needs brackets; expected 'tcp://[::1]:port'")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"invalid address {address!r}; {_EXPECTED}")
    return scheme, host, int(port_text)


def unparse_address(scheme: str, host: str, port: int = 0) -> str:
    """Inverse of :func:`parse_address`."""
    if scheme == "inproc":
        return f"inproc://{host}"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def normalize_address(address: str) -> str:
    """Canonical form: ``'127.0.0.1:8786'`` -> ``'tcp://127.0.0.1:8786'``.

    Cached: this runs on every request made through a connection pool.
    """
    if not isinstance(address, str):
        raise ValueError(f"address must be a str, got {address!r}; {_EXPECTED}")
    return _normalize(address)


@functools.lru_cache(maxsize=4096)
def _normalize(address: str) -> str:
    return unparse_address(*parse_address(address))


def get_ip_loopback() -> str:
    """The IPv4 loopback address, the default place to listen."""
    return "127.0.0.1"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP or name) names only this machine."""
    return host in ("localhost", "::1") or host.startswith("127.")


_PEERCRED = struct.Struct("3i")  # pid, uid, gid


def shortcut_name(host: str, port: int) -> str | None:
    """The abstract Unix socket that also serves ``tcp://host:port`` (the
    loopback shortcut), when ``host`` is a loopback address (``localhost``
    counts as 127.0.0.1); None otherwise."""
    if host == "localhost":
        host = "127.0.0.1"
    if not is_loopback(host):
        return None
    return f"\0taskmill-tcp/{unparse_address('tcp', host, port)[6:]}"


def peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket."""
    return int(_PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                _PEERCRED.size))[1])


def contact_address(address: str) -> str:
    """Where other machines reach a listener at ``address``: a wildcard host
    (``0.0.0.0``, ``::``) is replaced by this machine's outward IP (the one
    its default route uses; loopback when it has none)."""
    scheme, host, port = parse_address(address)
    if host not in ("0.0.0.0", "::", ""):
        return address
    family = socket.AF_INET6 if host == "::" else socket.AF_INET
    probe = "2001:db8::1" if family == socket.AF_INET6 else "192.0.2.1"  # documentation ranges
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((probe, 9))  # UDP: chooses a route, sends nothing
            ip = s.getsockname()[0]
        except OSError:
            ip = "::1" if family == socket.AF_INET6 else get_ip_loopback()
    return unparse_address(scheme, ip, port)
