"""The dashboard behind the cluster's token (a Basic password, or a session
opened by a one-time login link), and over HTTPS with TLS certificates."""

from __future__ import annotations

import base64
import http.cookiejar
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from taskmill import Executor, Security
from tests.tls_certs import make_ca, make_node

pytestmark = pytest.mark.timeout(60)


def _get(url: str, password: str | None = None, context: ssl.SSLContext | None = None,
         opener: urllib.request.OpenerDirector | None = None) -> int:
    request = urllib.request.Request(url)
    if password is not None:
        request.add_header("Authorization",
                           "Basic " + base64.b64encode(f"anyone:{password}".encode()).decode())
    try:
        if opener is not None:
            with opener.open(request, timeout=10) as r:
                return int(r.status)
        with urllib.request.urlopen(request, timeout=10, context=context) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_token_guards_every_page_but_health(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMILL_TOKEN", "dash-secret")
    with Executor(n_workers=1, threads_per_worker=1, processes=False) as e:
        assert e.cluster.security.token == "dash-secret"  # the environment's, not a fresh one
        assert e.dashboard_link is not None  # waits until the dashboard is up
        info_url = e.scheduler_info()["dashboard"]
        assert info_url.startswith("http://") and info_url.endswith("/status")  # no secret in it
        base = info_url.rsplit("/", 1)[0]
        url = base + "/status"
        assert _get(url) == 401
        assert _get(url, "a-guess") == 401
        assert _get(url, "dash-secret") == 200
        assert _get(base + "/metrics", "dash-secret") == 200
        assert _get(base + "/api/status") == 401
        assert _get(base + "/health") == 200  # liveness probes need no secret


def test_the_owner_logs_in_once_per_link_with_a_session_cookie() -> None:
    with Executor(n_workers=1, threads_per_worker=1, processes=False) as e:
        link = e.dashboard_link  # a fresh secret of its own: nothing was configured
        assert link is not None and "/login?token=" in link
        base = link.split("/login")[0]
        assert _get(base + "/status") == 401 and _get(base + "/api/workers") == 401
        assert _get(base + "/status", e.cluster.security.token) == 200  # scripts: the token
        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        with browser.open(link, timeout=10) as r:
            assert r.status == 200 and b'content="0;url=/status"' in r.read()  # forwards
        [cookie] = jar
        assert cookie.has_nonstandard_attr("HttpOnly") and not cookie.secure
        assert cookie.get_nonstandard_attr("SameSite") == "Strict"
        assert cookie.value not in link and cookie.value != e.cluster.security.token
        assert _get(base + "/status", opener=browser) == 200
        assert _get(base + "/api/workers", opener=browser) == 200
        # the link is spent: visiting it again (someone who read it later) logs nobody in
        assert _get(link) == 401
        assert _get(base + "/login?token=made-up") == 401
        second = e.dashboard_link
        assert second != link and _get(second) == 200


def test_security_given_explicitly_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMILL_TOKEN", "from-the-environment")
    mine = Security(token="given")
    with Executor(n_workers=1, threads_per_worker=1, processes=False, security=mine) as e:
        assert e.cluster.security is mine
        assert e.submit(sum, [1, 2]).result() == 3
        assert e.dashboard_link is not None  # waits until the dashboard is up
        base = e.scheduler_info()["dashboard"].rsplit("/", 1)[0]
        assert _get(base + "/status", "from-the-environment") == 401
        assert _get(base + "/status", "given") == 200
    with Executor(n_workers=1, threads_per_worker=1, processes=False, security=Security()) as e:
        link = e.dashboard_link  # no token asked for: an open dashboard, a plain link
        assert link is not None and link.endswith("/status") and _get(link) == 200


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


def test_login_links_expire_and_only_the_newest_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskmill.dashboard import login

    with Executor(n_workers=1, threads_per_worker=1, processes=False) as e:
        monkeypatch.setattr(login, "LOGIN_TTL", 0.0)
        expired = e.dashboard_link
        assert expired is not None and _get(expired) == 401
        monkeypatch.setattr(login, "LOGIN_TTL", 3600.0)
        monkeypatch.setattr(login, "MAX_PENDING_LOGINS", 2)
        oldest, middle, newest = (e.dashboard_link for _ in range(3))
        assert _get(oldest) == 401  # dropped to keep at most two unused links
        assert _get(newest) == 200 and _get(middle) == 200


def test_over_https_the_session_cookie_is_secure(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "cluster")
    cert, key = make_node(tmp_path, "cluster", "node")
    security = Security(token="t", tls_ca_file=str(ca), tls_cert=str(cert), tls_key=str(key))
    with Executor(n_workers=1, threads_per_worker=1, processes=False, security=security) as e:
        link = e.dashboard_link
        assert link is not None and link.startswith("https://") and "/login?token=" in link
        browser = ssl.create_default_context(cafile=str(ca))
        browser.check_hostname = False  # the test certificate names no host
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=browser),
                                             urllib.request.HTTPCookieProcessor(jar))
        assert _get(link, opener=opener) == 200
        [cookie] = jar
        assert cookie.secure and cookie.has_nonstandard_attr("HttpOnly")
        assert _get(link.split("/login")[0] + "/status", opener=opener) == 200
