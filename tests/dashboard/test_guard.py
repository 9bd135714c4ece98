"""The dashboard behind the cluster's token, and over HTTPS with TLS certificates."""

from __future__ import annotations

import base64
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from taskmill import Executor
from tests.tls_certs import make_ca, make_node

pytestmark = pytest.mark.timeout(60)


def _get(url: str, password: str | None = None, context: ssl.SSLContext | None = None) -> int:
    request = urllib.request.Request(url)
    if password is not None:
        request.add_header("Authorization",
                           "Basic " + base64.b64encode(f"anyone:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_token_guards_every_page_but_health(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMILL_TOKEN", "dash-secret")
    with Executor(n_workers=1, threads_per_worker=1, processes=False) as e:
        url = e.dashboard_link
        assert url is not None and url.startswith("http://")
        base = url.rsplit("/", 1)[0]
        assert _get(url) == 401
        assert _get(url, "a-guess") == 401
        assert _get(url, "dash-secret") == 200
        assert _get(base + "/metrics", "dash-secret") == 200
        assert _get(base + "/api/status") == 401
        assert _get(base + "/health") == 200  # liveness probes need no secret


def test_tls_certificates_serve_the_dashboard_over_https(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "cluster")
    cert, key = make_node(tmp_path, "cluster", "node")
    monkeypatch.delenv("TASKMILL_TOKEN", raising=False)
    monkeypatch.setenv("TASKMILL_TLS_CA_FILE", str(ca))
    monkeypatch.setenv("TASKMILL_TLS_CERT_FILE", str(cert))
    monkeypatch.setenv("TASKMILL_TLS_KEY_FILE", str(key))
    with Executor(n_workers=1, threads_per_worker=1, processes=False) as e:
        assert e.submit(sum, [1, 2]).result() == 3  # the cluster itself runs over TLS
        url = e.dashboard_link
        assert url is not None and url.startswith("https://")
        browser = ssl.create_default_context(cafile=str(ca))
        browser.check_hostname = False  # the test certificate names no host
        assert _get(url, context=browser) == 200
