"""``Security``: what a process proves and checks on every connection.

A cluster is protected by a shared secret token (an HMAC challenge both
ways, :mod:`taskmill.comm.auth`) and, optionally, by TLS with mutual
certificates (:mod:`taskmill.comm.tls`).  A ``Security`` object carries
them as values, so that a cluster, an Executor or a program can be given
its own instead of the process-wide ``TASKMILL_*`` environment variables:

* ``Security.temporary()`` makes a fresh random token: what every cluster
  that taskmill starts itself uses, so that another user of the machine
  cannot connect to it, even on loopback;
* ``Security.from_environment()`` reads ``$TASKMILL_TOKEN`` (or the file
  named by ``$TASKMILL_TOKEN_FILE``) and the ``$TASKMILL_TLS_*`` files;
* ``security.environ()`` is the same settings as environment variables,
  the way a process that taskmill starts (a worker under a nanny, a
  scheduler over SSH, a batch job) receives them.

The token never appears in ``repr``.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field

TOKEN_ENV = "TASKMILL_TOKEN"
TOKEN_FILE_ENV = "TASKMILL_TOKEN_FILE"
TLS_CA_ENV = "TASKMILL_TLS_CA_FILE"
TLS_CERT_ENV = "TASKMILL_TLS_CERT_FILE"
TLS_KEY_ENV = "TASKMILL_TLS_KEY_FILE"


@dataclass(frozen=True)
class Security:
    """A shared token and/or TLS files (paths to PEM files).

    ``Security()`` (nothing set) means: no token, plain TCP.
    """

    token: str | None = field(default=None, repr=False)
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    def __post_init__(self) -> None:
        if self.token is not None and (not isinstance(self.token, str) or not self.token.strip()):
            raise ValueError("Security(token=...) must be a non-empty string (or None for no token)")
        if (self.tls_ca_file is None) != (self.tls_cert is None):
            raise ValueError("Security: give both tls_ca_file (the cluster's CA certificate) and "
                             "tls_cert (this node's certificate), or neither")
        if self.tls_key is not None and self.tls_cert is None:
            raise ValueError("Security(tls_key=...) needs tls_cert (the certificate of that key)")

    @classmethod
    def temporary(cls) -> Security:
        """A fresh random token (256 bits) for one cluster."""
        return cls(token=secrets.token_urlsafe(32))

    @classmethod
    def from_environment(cls) -> Security:
        """The settings of the ``TASKMILL_TOKEN``/``TASKMILL_TLS_*`` variables."""
        from taskmill.comm.auth import configured_token

        token = configured_token()
        return cls(token=token.decode() if token is not None else None,
                   tls_ca_file=os.environ.get(TLS_CA_ENV) or None,
                   tls_cert=os.environ.get(TLS_CERT_ENV) or None,
                   tls_key=os.environ.get(TLS_KEY_ENV) or None)

    @property
    def require_encryption(self) -> bool:
        """Whether connections are TLS."""
        return self.tls_cert is not None

    def environ(self) -> dict[str, str]:
        """These settings as the environment variables a child process reads."""
        env: dict[str, str] = {}
        if self.token is not None:
            env[TOKEN_ENV] = self.token
        for name, value in ((TLS_CA_ENV, self.tls_ca_file), (TLS_CERT_ENV, self.tls_cert),
                            (TLS_KEY_ENV, self.tls_key)):
            if value is not None:
                env[name] = value
        return env
