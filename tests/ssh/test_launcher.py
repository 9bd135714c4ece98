"""The launcher on this machine, without SSH: the secret arrives on stdin, the
program's whole process group goes when stdin ends, and the launcher exits
with the program's status when the program ends by itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil

from taskmill.cluster.launcher import NO_TASKMILL_EXIT, STARTED
from taskmill.cluster.remote import LAUNCHER_SOURCE
from tests.conftest import wait_for
from tests.ssh.conftest import ROOT


def _launch(*args: str, python: str = sys.executable, cwd: Path = ROOT) -> subprocess.Popen[str]:
    return subprocess.Popen([python, "-c", LAUNCHER_SOURCE, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_secret_on_stdin_and_the_group_goes_at_eof() -> None:
    launcher = _launch("tests.ssh.sleeper")
    assert launcher.stdin is not None and launcher.stdout is not None
    try:
        launcher.stdin.write(json.dumps({"TASKMILL_TOKEN": "s3cret"}) + "\n")
        launcher.stdin.flush()
        assert launcher.stdout.readline().startswith(STARTED)
        line = launcher.stdout.readline()
        assert line.startswith("token=s3cret ")
        grandchild = psutil.Process(int(line.split("grandchild=")[1]))
        program = grandchild.parent()
        assert "s3cret" not in " ".join(program.cmdline())
        launcher.stdin.close()  # the SSH channel closes
        assert launcher.wait(15) != 0
        wait_for(lambda: not program.is_running() and not grandchild.is_running(), timeout=15,
                 message="the program and its child gone")
    finally:
        launcher.kill()
        launcher.wait()
        launcher.stdout.close()


def test_the_launcher_exits_with_the_programs_status() -> None:
    launcher = _launch("tests.ssh.sleeper", "exit")
    assert launcher.stdin is not None and launcher.stdout is not None
    launcher.stdin.write("{}\n")
    launcher.stdin.flush()  # and stdin stays open: the client is still there
    try:
        assert launcher.wait(30) == 3, launcher.stdout.read()
    finally:
        launcher.stdin.close()
        launcher.stdout.close()


def test_a_python_without_taskmill_is_told_apart(tmp_path: Path) -> None:
    bare = tmp_path / "python"  # no site-packages, and a working directory without taskmill
    bare.write_text(f"#!/bin/sh\nunset PYTHONPATH\nexec {sys.executable} -S \"$@\"\n")
    bare.chmod(0o755)
    launcher = _launch("tests.ssh.sleeper", python=str(bare), cwd=tmp_path)
    out, _ = launcher.communicate("{}\n", timeout=30)
    assert launcher.returncode == NO_TASKMILL_EXIT, out
    assert "cannot import taskmill" in out
