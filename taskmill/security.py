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
  scheduler over SSH, a batch job) receives them: ``child_environment``
  puts them in place of the parent's own, never on a command line (which
  every user of the machine can read in ``ps``; a process's environment only
  its owner can).

Who uses what: a node, Executor or cluster given ``security=None`` reads
the environment, as the programs always have, except that an Executor or
a worker pointed at a scheduler running in this very process takes that
scheduler's settings (:func:`in_process_security`: the process is its
owner's, and ``Executor(cluster.scheduler_address)`` needs no set-up); a
cluster that taskmill starts itself (``Executor()``, ``LocalCluster``) is
given a fresh ``temporary()`` secret unless the caller passed one or the
environment configures a token or TLS (:func:`own_cluster_security`).

The token never appears in ``repr``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from taskmill.comm.auth import TOKEN_ENV, TOKEN_FILE_ENV, configured_token
from taskmill.comm.tls import TLS_CA_ENV, TLS_CERT_ENV, TLS_KEY_ENV, environment_files


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
        token = configured_token()
        ca, cert, key = environment_files() or (None, None, None)
        return cls(token=token.decode() if token is not None else None,
                   tls_ca_file=ca, tls_cert=cert, tls_key=key)

    @property
    def configured(self) -> bool:
        """Whether these settings ask for anything (a token or TLS)."""
        return self.token is not None or self.tls_cert is not None

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

    def child_environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` (a parent's environment) with these settings in place of
        any ``TASKMILL_TOKEN*``/``TASKMILL_TLS_*`` it had: what a process that
        taskmill starts for this cluster runs with."""
        env = {k: v for k, v in base.items() if k not in _VARIABLES}
        env.update(self.environ())
        return env


_VARIABLES = (TOKEN_ENV, TOKEN_FILE_ENV, TLS_CA_ENV, TLS_CERT_ENV, TLS_KEY_ENV)


def own_cluster_security(security: Security | None) -> Security:
    """The security of a cluster that taskmill starts itself: ``security``
    when given, else the environment's when it configures a token or TLS, else
    a fresh ``Security.temporary()``, so that no other user of the machine can
    connect to it (loopback is open to every user)."""
    if security is not None:
        return security
    environment = Security.from_environment()
    return environment if environment.configured else Security.temporary()


#: the schedulers running in this process: address -> their security
_in_process: dict[str, Security] = {}


def scheduler_started(address: str, security: Security) -> None:
    """A scheduler of this process listens at ``address`` with ``security``."""
    _in_process[address] = security


def scheduler_stopped(address: str) -> None:
    """The scheduler at ``address`` closed."""
    _in_process.pop(address, None)


def in_process_security(address: str, given: Security | None) -> Security | None:
    """``given`` when not None, else the security of the scheduler at
    ``address`` when it runs in this process, else None (the environment's)."""
    return given if given is not None else _in_process.get(address)
