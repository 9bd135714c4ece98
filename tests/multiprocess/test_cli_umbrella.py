"""The ``taskmill`` command: its subcommands are the programs themselves, and
``taskmill info`` describes the installation and a running cluster."""

from __future__ import annotations

import json

import platform
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from taskmill.cli import config_cli, info_cli, scheduler_cli, worker_cli
from taskmill.cli.umbrella import main
from tests.multiprocess.helpers import running, start_scheduler

pytestmark = pytest.mark.timeout(120)


def test_subcommands_are_the_programs_not_copies() -> None:
    assert main.commands["scheduler"] is scheduler_cli.main
    assert main.commands["worker"] is worker_cli.main
    assert main.commands["info"] is info_cli.info
    assert main.commands["config"] is config_cli.config_command
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in ("scheduler", "worker", "info", "config"):
        assert name in result.output
    assert CliRunner().invoke(main, ["config", "get", "comm.timeouts.reconnect"]).output == "300\n"


def test_subcommand_help_is_the_program_help() -> None:
    result = CliRunner().invoke(main, ["worker", "--help"])
    assert result.exit_code == 0
    assert "Usage: main worker [OPTIONS] [SCHEDULER_ADDRESS]" in result.output
    for option in ("--scheduler-file", "--lifetime", "--lifetime-stagger", "--death-timeout",
                   "--name", "--local-directory"):
        assert option in result.output
    assert "--scheduler-file" in CliRunner().invoke(main, ["scheduler", "--help"]).output


def test_python_dash_m_taskmill_is_the_command() -> None:
    out = subprocess.run([sys.executable, "-m", "taskmill", "--version"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("taskmill, version ")


def test_info_prints_versions() -> None:
    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(None, 1) for line in result.output.splitlines())
    assert list(lines) == ["taskmill", "python", "dask", "distributed", "platform"]
    assert lines["python"].startswith(platform.python_version())
    assert lines["platform"] == platform.platform()
    for name in ("taskmill", "dask", "distributed"):
        assert lines[name] == info_cli.installed_version(name)


def test_info_says_when_a_package_is_missing() -> None:
    assert info_cli.installed_version("no-such-distribution-here") == "not installed"


def test_info_describes_a_running_cluster(tmp_path: Path) -> None:
    path = tmp_path / "scheduler.json"
    with running("taskmill-scheduler", "--port", "0", "--no-dashboard",
                 "--scheduler-file", str(path)) as sched:
        address = start_scheduler(sched)
        with running("taskmill-worker", "--scheduler-file", str(path), "--nthreads", "2",
                     "--memory-limit", "1GB", "--name", "w1") as w:
            w.wait_for_line("registered with scheduler")
            by_file = CliRunner().invoke(main, ["info", "--scheduler-file", str(path)])
            token = json.loads(path.read_text())["token"]  # the scheduler's fresh secret
            by_address = CliRunner().invoke(main, ["info", address], env={"TASKMILL_TOKEN": token})
    for result in (by_file, by_address):
        assert result.exit_code == 0, result.output
        assert f"scheduler    {address}" in result.output
        assert "workers      1, 2 threads, 1.00 GB memory" in result.output
        assert "(w1): 2 threads, 1.00 GB memory" in result.output


def test_info_with_a_bad_scheduler_file_or_no_scheduler_fails_clearly(tmp_path: Path) -> None:
    missing = tmp_path / "absent.json"
    result = CliRunner().invoke(main, ["info", "--scheduler-file", str(missing)])
    assert result.exit_code == 2 and f"no scheduler file at {missing}" in result.output
    result = CliRunner().invoke(main, ["info", "tcp://127.0.0.1:9", "--timeout", "1s"])
    assert result.exit_code == 1 and "cannot reach the scheduler" in result.output
    result = CliRunner().invoke(main, ["info", "not an address"])
    assert result.exit_code == 2 and "SCHEDULER_ADDRESS" in result.output
    result = CliRunner().invoke(main, ["info", "tcp://127.0.0.1:9", "--scheduler-file", str(missing)])
    assert result.exit_code == 2 and "not both" in result.output

