"""TLS with mutual certificates: both ends must hold a certificate of the cluster's CA."""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from taskmill.comm import Comm, connect, listen, run
from taskmill.comm.tls import TLSConfigError, client_context
from taskmill.protocol import serialize
from tests.tls_certs import make_ca, make_node

pytestmark = pytest.mark.timeout(60)
TLS_VARS = ("TASKMILL_TLS_CA_FILE", "TASKMILL_TLS_CERT_FILE", "TASKMILL_TLS_KEY_FILE")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """Environments: two nodes of the cluster CA, and a node of another CA."""
    d = tmp_path_factory.mktemp("tls")
    out = {}
    for ca, node in (("cluster", "a"), ("cluster", "b"), ("other", "stranger")):
        if not (d / f"{ca}-ca.pem").exists():
            make_ca(d, ca)
        cert, key = make_node(d, ca, node)
        out[node] = {"TASKMILL_TLS_CA_FILE": str(d / f"{ca}-ca.pem"),
                     "TASKMILL_TLS_CERT_FILE": str(cert), "TASKMILL_TLS_KEY_FILE": str(key)}
    return out


def use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str] | None) -> None:
    for var in TLS_VARS:
        if env is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, env[var])


async def echo(comm: Comm) -> None:
    while True:
        await comm.write(await comm.read())


def serve(monkeypatch: pytest.MonkeyPatch, server_env: dict[str, str] | None,
          client_env: dict[str, str] | None, body: Any) -> Any:
    async def main() -> Any:
        use(monkeypatch, server_env)
        listener = await listen("tcp://127.0.0.1:0", echo)
        use(monkeypatch, client_env)
        try:
            return await body(listener)
        finally:
            await listener.stop()

    return run(main())


def _transport_is_tls(comm: Comm) -> bool:
    return comm._transport.get_extra_info("ssl_object") is not None  # type: ignore[attr-defined]


@pytest.mark.parametrize("shortcut", [True, False])
def test_nodes_of_one_ca_talk_over_tls(monkeypatch: pytest.MonkeyPatch, certs: Any,
                                       shortcut: bool) -> None:
    arr = np.arange(2_000_000)

    async def body(listener: Any) -> None:
        if not shortcut:
            listener._shortcut.close()
            await listener._shortcut.wait_closed()
        comm = await connect(listener.address)
        assert _transport_is_tls(comm)
        await comm.write({"small": b"x", "big": serialize(arr)})
        out = await comm.read()
        assert out["small"] == b"x" and (out["big"].deserialize() == arr).all()
        await comm.close()

    serve(monkeypatch, certs["a"], certs["b"], body)


def test_a_certificate_of_another_ca_is_refused_at_once(monkeypatch: pytest.MonkeyPatch,
                                                        certs: Any) -> None:
    async def body(listener: Any) -> None:
        started = time.monotonic()
        with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
            await connect(listener.address, timeout=10)
        assert time.monotonic() - started < 5  # not retried

    serve(monkeypatch, certs["a"], certs["stranger"], body)


def test_a_client_without_tls_gets_nothing(monkeypatch: pytest.MonkeyPatch, certs: Any) -> None:
    async def body(listener: Any) -> None:
        with pytest.raises(TimeoutError, match="could not connect"):
            await connect(listener.address, timeout=1)

    serve(monkeypatch, certs["a"], None, body)


def test_a_tls_client_and_a_plain_server_say_what_to_check(monkeypatch: pytest.MonkeyPatch,
                                                            certs: Any) -> None:
    async def body(listener: Any) -> None:
        with pytest.raises(TimeoutError, match=r"check that the peer uses TLS too"):
            await connect(listener.address, timeout=1)

    serve(monkeypatch, None, certs["a"], body)


def test_half_configured_tls_names_what_is_missing(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path, certs: Any) -> None:
    use(monkeypatch, None)
    assert client_context() is None
    monkeypatch.setenv("TASKMILL_TLS_CERT_FILE", certs["a"]["TASKMILL_TLS_CERT_FILE"])
    with pytest.raises(TLSConfigError, match=r"\$TASKMILL_TLS_CA_FILE"):
        client_context()
    monkeypatch.setenv("TASKMILL_TLS_CA_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(TLSConfigError, match="cannot load this node's certificate"):
        client_context()  # its key is in another file, not named yet
    monkeypatch.setenv("TASKMILL_TLS_KEY_FILE", certs["a"]["TASKMILL_TLS_KEY_FILE"])
    with pytest.raises(TLSConfigError, match="cannot load the CA certificate"):
        client_context()
    use(monkeypatch, certs["a"])
    ctx = client_context()
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED
