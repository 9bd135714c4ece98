"""Shared-token authentication of connections: an HMAC challenge, both ways.

Theory of operation
-------------------
Taskmill runs pickled code, so whoever can talk to a scheduler, worker or
nanny can run programs on its machine.  On a network that others reach, every
node is given the same secret token: ``$TASKMILL_TOKEN``, or the first line of
the file named by ``$TASKMILL_TOKEN_FILE`` (:func:`configured_token`).

Every connection between processes (TCP, and its loopback shortcut) starts
with the accepting side's ``hello`` message, before anything else:

* no token on the server: ``{"op": "hello", "challenge": None}``, and the
  connection is open (one message, no round trip);
* a token: ``hello`` carries 32 random bytes; the client answers with 32 of
  its own and ``HMAC-SHA256(token, "client" + both nonces)``, the server
  checks it and answers with ``HMAC-SHA256(token, "server" + both nonces)``,
  which the client checks.  So each side proves it knows the token without
  sending it, and a recorded exchange cannot be replayed (fresh nonces).

Both sides must agree: a client with a token refuses a server without one
(it could not tell it from an impostor), and a server with a token refuses
a client without one or with another.  The connecting side raises
:class:`AuthenticationError` saying what to set; the accepting side
logs a warning naming the peer and closes that connection only.  In-process
comms (``inproc://``, the local link) do not authenticate: they never leave
the process.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from typing import Any, Protocol, TypeVar

from taskmill.protocol.framing import ProtocolError
from taskmill.protocol.vocabulary import Auth, Denied, Hello, Message, NoToken, Welcome, decode

M = TypeVar("M", bound=Message)
NONCE_BYTES = 32
TOKEN_ENV = "TASKMILL_TOKEN"
TOKEN_FILE_ENV = "TASKMILL_TOKEN_FILE"


class AuthenticationError(ConnectionError):
    """The two ends of a connection do not share the same token."""


class MessageStream(Protocol):
    """What a handshake needs of a connection: a :class:`taskmill.comm.core.Comm`
    fits (this module sits below the comms that authenticate with it)."""

    @property
    def peer_address(self) -> str: ...

    async def read(self) -> Any: ...

    async def write(self, msg: Any) -> object: ...


def configured_token() -> bytes | None:
    """The shared token from the environment, or None when none is set."""
    token = os.environ.get(TOKEN_ENV)
    if not token:
        path = os.environ.get(TOKEN_FILE_ENV)
        if path:
            try:
                with open(path, encoding="utf-8") as f:
                    token = f.readline().strip()
            except OSError as exc:
                raise AuthenticationError(f"cannot read the token file {path} "
                                          f"(${TOKEN_FILE_ENV}): {exc}") from exc
            if not token:
                raise AuthenticationError(f"the token file {path} (${TOKEN_FILE_ENV}) is empty")
    return token.encode() if token else None


def _mac(token: bytes, role: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return hmac.new(token, role + server_nonce + client_nonce, hashlib.sha256).digest()


def _check_nonce(value: bytes, field: str) -> bytes:
    if len(value) != NONCE_BYTES:
        raise AuthenticationError(f"malformed handshake: {field!r} is not {NONCE_BYTES} bytes")
    return value


def _read_as(raw: Any, expected: type[M], peer: str) -> M | Message:
    """``raw`` decoded (a greeting op); AuthenticationError when it is not one."""
    try:
        msg = decode(raw)
    except ProtocolError as exc:
        raise AuthenticationError(f"malformed handshake from {peer}: {exc}") from None
    if msg.kind != "greeting":
        raise AuthenticationError(f"{peer} sent {msg.op!r} instead of the handshake's {expected.op!r}")
    return msg


async def server_handshake(comm: MessageStream, token: bytes | None) -> None:
    """Run the accepting side; raises AuthenticationError when the peer fails."""
    if token is None:
        await comm.write(Hello(None).to_wire())
        return
    server_nonce = secrets.token_bytes(NONCE_BYTES)
    await comm.write(Hello(server_nonce).to_wire())
    answer = _read_as(await comm.read(), Auth, comm.peer_address)
    if isinstance(answer, NoToken):
        raise AuthenticationError("the peer has no token")
    if not isinstance(answer, Auth):
        raise AuthenticationError(f"malformed handshake: expected 'auth', got {answer.op!r}")
    client_nonce = _check_nonce(answer.nonce, "nonce")
    if not hmac.compare_digest(answer.mac, _mac(token, b"client", server_nonce, client_nonce)):
        await comm.write(Denied().to_wire())
        raise AuthenticationError("the peer's token differs")
    await comm.write(Welcome(_mac(token, b"server", server_nonce, client_nonce)).to_wire())


async def client_handshake(comm: MessageStream, token: bytes | None) -> None:
    """Run the connecting side; raises AuthenticationError saying what to fix."""
    peer = comm.peer_address
    raw = await comm.read()
    try:
        hello = decode(raw)
    except ProtocolError:
        hello = None
    if not isinstance(hello, Hello):
        raise AuthenticationError(f"{peer} did not greet as a taskmill server (got {raw!r:.200})")
    if hello.challenge is None:
        if token is not None:
            raise AuthenticationError(
                f"{peer} does not use a token, but this side has one (${TOKEN_ENV} or "
                f"Security(token=...)): give every node of the cluster the same token, or none")
        return
    server_nonce = _check_nonce(hello.challenge, "challenge")
    if token is None:
        await comm.write(NoToken().to_wire())
        raise AuthenticationError(
            f"{peer} requires a token: set ${TOKEN_ENV} (or ${TOKEN_FILE_ENV}) to the "
            "cluster's shared token, or pass security=Security(token=...)")
    client_nonce = secrets.token_bytes(NONCE_BYTES)
    await comm.write(Auth(client_nonce, _mac(token, b"client", server_nonce, client_nonce)).to_wire())
    reply = _read_as(await comm.read(), Welcome, peer)
    if not isinstance(reply, Welcome) or not hmac.compare_digest(
            reply.mac, _mac(token, b"server", server_nonce, client_nonce)):
        raise AuthenticationError(
            f"{peer} refused our token, or does not know it: the token (${TOKEN_ENV} or "
            "Security(token=...)) must be the same on every node of the cluster")
