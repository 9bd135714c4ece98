"""The harness: :func:`sweep` cleans up after a crashed session (the namespaces
and links whose session process is gone, and what runs in them); without root
the suite is skipped with the reason."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.multihost.cluster import wait_until
from tests.multihost.hosts import ip, missing, namespace_pids, sweep


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


def test_suite_skips_without_root_saying_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert missing() == "making network namespaces and a bridge needs root"
