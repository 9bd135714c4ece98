"""A real OpenSSH server on a loopback port, for the SSHCluster tests.

``sshd`` (Debian's openssh-server, started by absolute path with a
configuration of its own) listens on 127.0.0.1, .2 and .3 with a generated host key and
admits root with a generated user key (``authorized_keys`` in the fixture's
directory, ``StrictModes no`` since it is under /tmp).  The tests log in as
root: they skip, saying why, when sshd is missing or they are not root.
Remote commands get root's login environment, so the fixture writes a
``python`` script that runs this interpreter with this checkout on
PYTHONPATH, the ``remote_python`` of the tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

SSHD = Path("/usr/sbin/sshd")
ROOT = Path(__file__).resolve().parents[2]
#: addresses sshd listens on: three "hosts" (all of 127/8 is this machine's loopback)
LOOPBACK_HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]


@dataclass
class SSHServer:
    """The running sshd: where it listens and how to log in."""

    port: int
    process: subprocess.Popen[bytes]
    directory: Path
    client_key: Path
    python: str

    def connect_options(self, **extra: Any) -> dict[str, Any]:
        """asyncssh.connect options for this server (host keys not checked)."""
        return {"port": self.port, "username": "root", "client_keys": [str(self.client_key)],
                "known_hosts": None, **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            return conn.recv(4).startswith(b"SSH-")
    except OSError:
        return False


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    if not SSHD.exists():
        pytest.skip(f"{SSHD} is missing: apt-get install openssh-server (.ci/run does)")
    if os.geteuid() != 0:
        pytest.skip("the sshd tests log in as root with a generated key: run them as root")
    asyncssh = pytest.importorskip("asyncssh")
    directory = tmp_path_factory.mktemp("sshd")
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key.write_private_key(str(directory / "host_key"))
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key.write_private_key(str(directory / "client_key"))
    client_key.write_public_key(str(directory / "authorized_keys"))
    for key in ("host_key", "client_key"):
        (directory / key).chmod(0o600)
    python = directory / "python"
    python.write_text(f"#!/bin/sh\nexport PYTHONPATH={ROOT}\nexec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    port = _free_port()
    config = directory / "sshd_config"
    config.write_text("\n".join([
        *(f"ListenAddress {host}:{port}" for host in LOOPBACK_HOSTS), f"HostKey {directory / 'host_key'}",
        f"AuthorizedKeysFile {directory / 'authorized_keys'}", f"PidFile {directory / 'sshd.pid'}",
        "StrictModes no", "PermitRootLogin prohibit-password", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", "MaxStartups 100", "LogLevel ERROR", ""]))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = open(directory / "sshd.log", "wb")
    process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not _accepting(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {(directory / 'sshd.log').read_text()}")
            time.sleep(0.05)
        yield SSHServer(port, process, directory, directory / "client_key", str(python))
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def cluster_processes(server: SSHServer, token: str | None) -> list[str]:
    """What runs for the tests' clusters on the "remote" side: sshd's session
    processes and their children, and every process carrying ``token`` in
    its environment (a launched program, even if it lost its parent)."""
    found: dict[int, str] = {}
    try:
        for child in psutil.Process(server.process.pid).children(recursive=True):
            found[child.pid] = " ".join(child.cmdline())[:120]
    except psutil.NoSuchProcess:
        pass
    if token is not None:
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if proc.environ().get("TASKMILL_TOKEN") == token:
                    found[proc.pid] = " ".join(proc.info["cmdline"] or [])[:120]
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
    return [f"{pid}: {cmd}" for pid, cmd in sorted(found.items())]
