"""Another user of the machine cannot use or read an ``Executor()``'s cluster.

Loopback is open to every user of a machine, so the test makes a second Unix
user (root only: ``useradd``; removed afterwards) and, as that user, attacks
the scheduler of an ``Executor()`` that was given no security settings:
through taskmill's own client (without a token, and with a guessed one), as a
raw client of the loopback shortcut (the abstract Unix socket, which has no
file permissions), and through the dashboard (plain, and with a login link
the owner already used).  It also tries to read the worker process's
environment, where the nanny put the secret.  Meanwhile the owner's code runs
tasks with no set-up at all.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskmill import Executor
from tests.dashboard.workload import inc

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
SECURITY_VARIABLES = ("TASKMILL_TOKEN", "TASKMILL_TOKEN_FILE", "TASKMILL_TLS_CA_FILE",
                      "TASKMILL_TLS_CERT_FILE", "TASKMILL_TLS_KEY_FILE")

# Runs as the other user: argv = scheduler address, dashboard URL, a used login
# link, worker pids.  Prints what each attack got, as JSON.
ATTACK = r"""
import asyncio, json, socket, sys, urllib.error, urllib.request
from taskmill import Executor, Security
from taskmill.comm.auth import AuthenticationError, client_handshake
from taskmill.comm.addressing import shortcut_name
from taskmill.comm.tcp import TCPComm
from taskmill.comm.addressing import parse_address
from taskmill.protocol import DEFAULT_LIMITS

address, dashboard, used_link, *pids = sys.argv[1:]
out = {}

def outcome(exc):
    return f"{type(exc).__name__}: {exc}"

for label, security in (("no token", None), ("a guessed token", Security(token="guess"))):
    try:
        Executor(address, timeout=10, security=security, set_as_default=False).close()
        out[label] = "connected"
    except Exception as exc:
        out[label] = outcome(exc)

async def through_the_shortcut(token):
    _, host, port = parse_address(address)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(shortcut_name(host, port))  # abstract: no file permissions to stop us
    _, comm = await asyncio.get_running_loop().create_unix_connection(
        lambda: TCPComm(DEFAULT_LIMITS), sock=sock)
    try:
        await client_handshake(comm, token)
        return "handshake passed"
    finally:
        comm.abort()

for label, token in (("shortcut, no token", None), ("shortcut, a guessed token", b"guess")):
    try:
        out[label] = asyncio.run(through_the_shortcut(token))
    except Exception as exc:
        out[label] = outcome(exc)

for label, url in (("dashboard", dashboard), ("used login link", used_link)):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            out[label] = r.status
    except urllib.error.HTTPError as exc:
        out[label] = exc.code

out["worker environments"] = []
for pid in pids:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            out["worker environments"].append("read: " + str(b"TASKMILL_TOKEN" in f.read()))
    except OSError as exc:
        out["worker environments"].append(outcome(exc))
print(json.dumps(out))
"""


def _run_as(user: pwd.struct_passwd, python: str, *args: str,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python args`` as ``user`` (setpriv keeps our environment choice exact),
    with this checkout and the venv's packages importable and no TASKMILL_*."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), sysconfig.get_paths()["purelib"]])}
    return subprocess.run(
        ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
         "--", python, *args],
        env=env, cwd="/tmp", capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def stranger() -> Iterator[pwd.struct_passwd]:
    if os.geteuid() != 0:
        pytest.skip("needs root: it creates a second Unix user (useradd) to attack the cluster as")
    for tool in ("useradd", "userdel", "setpriv"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs the {tool} command (Debian: passwd, util-linux)")
    name = f"tm-{uuid.uuid4().hex[:10]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True, timeout=30)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def stranger_python(stranger: pwd.struct_passwd) -> str:
    """An interpreter the other user can run that imports this checkout:
    ours, unless it lives in a directory they cannot enter (a /root pyenv),
    else the system's of the same version."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    failures = []
    for python in (sys.executable, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        if not os.path.exists(python):
            continue
        probe = _run_as(stranger, python, "-c", "import taskmill, aiohttp; print(taskmill.__file__)")
        if probe.returncode == 0 and probe.stdout.strip().startswith(str(ROOT)):
            return python
        failures.append(f"{python}: {(probe.stderr or probe.stdout).strip()[-300:]}")
    pytest.skip("the other user cannot run a Python that imports taskmill: " + "; ".join(failures))


def test_another_user_can_neither_connect_nor_read_the_dashboard(
        stranger: pwd.struct_passwd, stranger_python: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in SECURITY_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    with Executor(n_workers=1, threads_per_worker=1, set_as_default=False) as e:  # no set-up
        assert e.submit(inc, 1).result() == 2
        token = e.cluster.security.token
        assert token
        worker_pids = [str(nanny.process.pid) for nanny in e.cluster.workers]
        for pid in worker_pids:  # the secret went to the worker by environment, never argv
            assert token.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
            assert f"TASKMILL_TOKEN={token}".encode() in Path(f"/proc/{pid}/environ").read_bytes()
        used_link = e.dashboard_link
        assert used_link is not None
        with urllib.request.urlopen(used_link, timeout=10) as r:  # the owner logs in
            assert r.status == 200
        dashboard = e.scheduler_info()["dashboard"]

        attack = _run_as(stranger, stranger_python, "-c", ATTACK, e.scheduler_address,
                         dashboard, used_link, *worker_pids, timeout=90)
        assert attack.returncode == 0, attack.stderr
        got = json.loads(attack.stdout)
        assert got["no token"].startswith("AuthenticationError") and "requires a token" in got["no token"]
        assert got["a guessed token"].startswith("AuthenticationError")
        assert "refused our token" in got["a guessed token"]
        assert got["shortcut, no token"].startswith("AuthenticationError")
        assert got["shortcut, a guessed token"].startswith("AuthenticationError")
        assert got["dashboard"] == 401 and got["used login link"] == 401
        assert got["worker environments"] and all(
            r.startswith("PermissionError") for r in got["worker environments"])

        # the owner's cluster ran on, untouched
        assert e.submit(inc, 2).result() == 3
        assert len(e.scheduler_info()["workers"]) == 1
