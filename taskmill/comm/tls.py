"""TLS with mutual certificates for the connections between processes.

Theory of operation
-------------------
A cluster that runs over a network others can watch encrypts its
connections: every node gets a certificate (and its key) signed by the
cluster's certificate authority, and the CA's certificate.  They come from
the environment, so the programs, their worker processes and the clients all
find them the same way:

* ``$TASKMILL_TLS_CA_FILE``: the CA certificate(s), PEM;
* ``$TASKMILL_TLS_CERT_FILE``: this node's certificate, PEM (its key may follow it);
* ``$TASKMILL_TLS_KEY_FILE``: this node's key, when not in the certificate file.

The same files can be given as values, a
:class:`~taskmill.security.Security` (``tls_ca_file``, ``tls_cert``,
``tls_key``), to a node, an Executor or a cluster; the functions below take
one (:class:`~taskmill.comm.credentials.Credentials`), and read the
environment when given None.

When the files are set (the key optional), every TCP connection, and its
loopback shortcut, is TLS 1.2 or later, and each side requires the other's
certificate to be signed by the CA: a connection from or to a node without
such a certificate fails its TLS handshake.  Host names are not checked:
nodes are addressed by IP, and the CA signing only the cluster's nodes is
what makes a certificate trusted.  Setting some of the variables but not all
needed is an error naming the missing one.  Without them connections are
plain TCP.  The shared token (:mod:`~taskmill.comm.auth`) works with or
without TLS.
"""

from __future__ import annotations

import functools
import os
import ssl

from taskmill.comm.credentials import Credentials

TLS_CA_ENV = "TASKMILL_TLS_CA_FILE"
TLS_CERT_ENV = "TASKMILL_TLS_CERT_FILE"
TLS_KEY_ENV = "TASKMILL_TLS_KEY_FILE"


class TLSConfigError(ValueError):
    """The TLS variables are set but unusable; the message says which and why."""


def environment_files() -> tuple[str, str, str | None] | None:
    """The CA, certificate and key files the ``TASKMILL_TLS_*`` variables name,
    or None when none is set; TLSConfigError when some but not all needed are."""
    ca, cert, key = (os.environ.get(v) or None for v in (TLS_CA_ENV, TLS_CERT_ENV, TLS_KEY_ENV))
    if ca is None and cert is None and key is None:
        return None
    missing = [name for name, value in ((TLS_CA_ENV, ca), (TLS_CERT_ENV, cert)) if value is None]
    if missing:
        raise TLSConfigError(f"TLS is half configured: set {' and '.join('$' + m for m in missing)} "
                             f"too (the CA certificate and this node's certificate), or unset "
                             f"the TASKMILL_TLS_* variables")
    assert ca is not None and cert is not None
    return ca, cert, key


def _files(security: Credentials | None) -> tuple[str, str, str | None] | None:
    if security is None:
        return environment_files()
    if security.tls_ca_file is None or security.tls_cert is None:
        return None
    return security.tls_ca_file, security.tls_cert, security.tls_key


def _context(purpose: ssl.Purpose, security: Credentials | None) -> ssl.SSLContext | None:
    files = _files(security)
    return None if files is None else _load(purpose, *files)


@functools.lru_cache(maxsize=8)
def _load(purpose: ssl.Purpose, ca: str, cert: str, key: str | None) -> ssl.SSLContext:
    """A context for these files (made once: loading certificates takes milliseconds)."""
    ctx = _with_certificate(purpose, cert, key)
    ctx.check_hostname = False  # nodes go by IP; the cluster CA is the trust
    ctx.verify_mode = ssl.CERT_REQUIRED  # both ways: mutual certificates
    try:
        ctx.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(f"cannot load the CA certificate {ca} "
                             f"(tls_ca_file, ${TLS_CA_ENV}): {exc}") from exc
    return ctx


def _with_certificate(purpose: ssl.Purpose, cert: str, key: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(f"cannot load this node's certificate {cert}"
                             f"{f' with the key {key}' if key else ''} (tls_cert and tls_key, "
                             f"${TLS_CERT_ENV} and ${TLS_KEY_ENV}): {exc}") from exc
    return ctx


def web_server_context(security: Credentials | None = None) -> ssl.SSLContext | None:
    """HTTPS for the web dashboard: this node's certificate, but no client
    certificate asked of browsers (a shared token guards the pages)."""
    files = _files(security)
    return None if files is None else _with_certificate(ssl.Purpose.CLIENT_AUTH, *files[1:])


def server_context(security: Credentials | None = None) -> ssl.SSLContext | None:
    """The context for accepting connections with ``security``'s files (None:
    the environment's), or None without TLS."""
    return _context(ssl.Purpose.CLIENT_AUTH, security)


def client_context(security: Credentials | None = None) -> ssl.SSLContext | None:
    """The context for making connections with ``security``'s files (None:
    the environment's), or None without TLS."""
    return _context(ssl.Purpose.SERVER_AUTH, security)
