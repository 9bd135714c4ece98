"""What a connection proves and checks: the shape the comms need of a
:class:`taskmill.security.Security`.

The comms sit below the rest of the package, so they take any object with
these four read-only attributes (``Security`` has them) instead of importing
it, and ``None`` for "the ``TASKMILL_*`` environment's"
(:func:`token_of` reads ``$TASKMILL_TOKEN`` then; :mod:`~taskmill.comm.tls`
the ``$TASKMILL_TLS_*`` files).
"""

from __future__ import annotations

from typing import Protocol

from taskmill.comm.auth import configured_token


class Credentials(Protocol):
    """A shared token and TLS files (paths to PEM files); None where unset."""

    @property
    def token(self) -> str | None: ...

    @property
    def tls_ca_file(self) -> str | None: ...

    @property
    def tls_cert(self) -> str | None: ...

    @property
    def tls_key(self) -> str | None: ...


def token_of(credentials: Credentials | None) -> bytes | None:
    """The token a handshake uses: ``credentials``'s, or the environment's for None."""
    if credentials is None:
        return configured_token()
    return credentials.token.encode() if credentials.token is not None else None
