"""Who may read the dashboard: the cluster's token, or a session opened by a
one-time login link.

Theory of operation
-------------------
The dashboard of a cluster with a token (every cluster taskmill starts
itself has one) answers HTTP 401 to a request that brings no credentials,
so another user of the machine cannot read it even on loopback.  Two kinds
of credentials pass (:meth:`LoginGuard.middleware`):

* an HTTP Basic ``Authorization`` header whose password is the token (any
  user name): for scripts and scrapers, and for a browser's password prompt;
* a session cookie, which a browser gets from a **login link**, as Jupyter
  does it: ``cluster.dashboard_link`` (and the link the scheduler logs) is
  ``/login?token=ONE-TIME``.  Each link is minted on demand
  (:meth:`LoginGuard.login_link`), works once and only within
  :data:`LOGIN_TTL`; visiting it opens a session (a random id, never the
  cluster's token) in a cookie that is ``HttpOnly`` (no script reads it),
  ``SameSite=Strict`` (no other site's page can make the browser send it)
  and ``Secure`` under TLS, then forwards to the dashboard.

The forwarding is a page that refreshes itself to ``/status``, not an HTTP
redirect: a link clicked in another site's page (a notebook) is a
cross-site navigation, and a browser does not send a ``Strict`` cookie on
any request of that navigation, redirects included; the refresh is a new
navigation started by the dashboard's own page, which it sends it on.

Cookies are scoped by host, not port, so each dashboard names its cookie
with a random suffix of its own: two dashboards on one host keep their
sessions apart.  ``/health``
(liveness probes) and ``/login`` itself need no credentials.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

#: seconds a login link stays valid (it works once)
LOGIN_TTL = 3600.0
#: at most this many unused login links are kept (the oldest go first)
MAX_PENDING_LOGINS = 256
#: at most this many sessions are kept (the oldest are logged out)
MAX_SESSIONS = 256
LOGIN_PATH = "/login"
_OPEN_PATHS = ("/health", LOGIN_PATH)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_FORWARD = """<!doctype html>
<meta http-equiv="refresh" content="0;url=/status">
<title>taskmill dashboard</title>
<p>Logged in. <a href="/status">Continue to the dashboard</a>.</p>
"""


def _password(request: web.Request) -> bytes | None:
    """The password of an HTTP Basic ``Authorization`` header, if any."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(encoded, validate=True).partition(b":")[2]
    except (binascii.Error, ValueError):
        return None


def _bounded_add(table: dict[str, float], key: str, value: float, limit: int) -> None:
    """Insert ``key``, dropping the oldest entries beyond ``limit``."""
    table[key] = value
    while len(table) > limit:
        del table[next(iter(table))]


class LoginGuard:
    """The token check, the one-time login links and the sessions of one
    dashboard (see the module docstring)."""

    def __init__(self, token: bytes, secure: bool) -> None:
        self._token = token
        self._secure = secure
        self.cookie_name = f"taskmill-session-{secrets.token_hex(4)}"
        self._logins: dict[str, float] = {}  # one-time token -> expiry (monotonic)
        self._sessions: dict[str, float] = {}  # session id -> creation (monotonic)

    def login_link(self, base: str) -> str:
        """A fresh one-time login link to the dashboard served at ``base``
        (``scheme://host:port``)."""
        now = time.monotonic()
        for token in [t for t, expiry in self._logins.items() if expiry <= now]:
            del self._logins[token]
        token = secrets.token_urlsafe(32)
        _bounded_add(self._logins, token, now + LOGIN_TTL, MAX_PENDING_LOGINS)
        return f"{base}{LOGIN_PATH}?token={token}"

    def _admits(self, request: web.Request) -> bool:
        if request.path in _OPEN_PATHS:
            return True
        session = request.cookies.get(self.cookie_name)
        if session is not None and session in self._sessions:
            return True
        password = _password(request)
        return password is not None and hmac.compare_digest(password, self._token)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Pass admitted requests on; answer the others 401."""
        if not self._admits(request):
            raise web.HTTPUnauthorized(
                text="this dashboard needs a login: open the link that cluster.dashboard_link "
                     "(or the scheduler's log) gives, or send the cluster's token as the "
                     "password of HTTP Basic authentication",
                headers={"WWW-Authenticate": 'Basic realm="taskmill"'})
        return await handler(request)

    async def login(self, request: web.Request) -> web.Response:
        """``/login?token=...``: spend the one-time token for a session cookie."""
        expiry = self._logins.pop(request.query.get("token", ""), None)
        if expiry is None or expiry <= time.monotonic():
            raise web.HTTPUnauthorized(
                text="this login link was used already, has expired or is not one: ask for a "
                     "new one (cluster.dashboard_link, executor.dashboard_link)")
        session = secrets.token_urlsafe(32)
        _bounded_add(self._sessions, session, time.monotonic(), MAX_SESSIONS)
        response = web.Response(text=_FORWARD, content_type="text/html",
                                headers={"Cache-Control": "no-store",
                                         "Referrer-Policy": "no-referrer"})
        response.set_cookie(self.cookie_name, session, path="/", httponly=True,
                            samesite="Strict", secure=self._secure)
        return response
