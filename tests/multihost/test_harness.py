"""The harness cleans up after a crashed session: :func:`sweep` removes the
namespaces and links whose session process is gone, and what runs in them."""

from __future__ import annotations

import subprocess

from tests.multihost.hosts import ip, namespace_pids, sweep
from tests.multihost.cluster import wait_until


def test_sweep_removes_what_a_dead_session_left(namespaces_usable: None) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()  # a session process that is no longer alive
    namespace, bridge = f"tmh{gone.pid}-old", f"tmh{gone.pid}br"
    ip("netns", "add", namespace)
    ip("link", "add", bridge, "type", "bridge")
    sleeper = subprocess.Popen(["ip", "netns", "exec", namespace, "sleep", "300"])
    try:
        wait_until(lambda: namespace_pids(namespace), 10, "the sleeper starting in the namespace")
        removed = sweep()
        assert namespace in removed and bridge in removed
        assert sleeper.wait(10) == -9
        assert namespace not in ip("netns", "list").stdout
        assert ip("link", "show", bridge, check=False).returncode != 0
    finally:
        sleeper.kill()
        sleeper.wait()
        ip("netns", "del", namespace, check=False)
        ip("link", "del", bridge, check=False)
