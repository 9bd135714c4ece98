"""The job scripts of SLURMCluster and PBSCluster, and their option checks (no batch system)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from taskmill import Security
from taskmill.cluster.jobqueue import PBSCluster, SLURMCluster
from taskmill.cluster.jobqueue.script import lifetime, parse_walltime

pytestmark = pytest.mark.timeout(60)

OPTIONS = dict(cores=4, memory="8GB", processes=2, walltime="02:00:00", queue="short",
               account="proj42", job_extra_directives=["--gres=gpu:1"],
               job_script_prologue=["module load python/3.11", "export OMP_NUM_THREADS=1"],
               job_name="tm-test", host="127.0.0.1", asynchronous=True)


def directives(script: str, prefix: str) -> list[str]:
    return [line[len(prefix) + 1:] for line in script.splitlines() if line.startswith(prefix + " ")]


def command(script: str) -> list[str]:
    line = script.rstrip().splitlines()[-1]
    assert line.startswith("exec ")
    return line.split()[1:]


def option(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_slurm_script_asks_for_the_node_and_splits_it_among_the_processes() -> None:
    cluster = SLURMCluster(**OPTIONS)  # type: ignore[arg-type]
    script = cluster.job_script()
    assert script.startswith("#!/usr/bin/env bash\n")
    lines = directives(script, "#SBATCH")
    assert lines[:2] == ["-J tm-test", f"-o {cluster.output_path('tm-test-0')}"]
    for expected in ("-N 1", "-n 1", "--cpus-per-task=4", "--mem=7630M", "-t 02:00:00",
                     "-p short", "-A proj42", "--gres=gpu:1"):
        assert expected in lines
    assert lines[-1] == "--gres=gpu:1"  # extra directives come last: they can override
    body = script.splitlines()
    assert body.index("module load python/3.11") < body.index("export OMP_NUM_THREADS=1") < len(body) - 1
    cmd = command(script)
    assert cmd[:3] == [sys.executable, "-m", "taskmill.cli.worker_cli"]
    assert option(cmd, "--nthreads") == "2" and option(cmd, "--nworkers") == "2"
    assert option(cmd, "--memory-limit") == "4000000000"
    assert option(cmd, "--name") == "tm-test-0" and option(cmd, "--host") == "127.0.0.1"
    assert option(cmd, "--scheduler-file") == cluster.scheduler_file
    assert option(cmd, "--lifetime") == "6900s" and option(cmd, "--lifetime-stagger") == "75s"
    assert option(cmd, "--death-timeout") == "60s"
    assert "tm-test-5" in cluster.job_script("tm-test-5")
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_pbs_script_uses_select_walltime_and_joined_output() -> None:
    cluster = PBSCluster(**OPTIONS)  # type: ignore[arg-type]
    lines = directives(cluster.job_script(), "#PBS")
    assert lines == ["-N tm-test", f"-o {cluster.output_path('tm-test-0')}", "-j oe",
                     "-l select=1:ncpus=4:mem=7630mb", "-l walltime=02:00:00", "-q short",
                     "-A proj42", "--gres=gpu:1"]
    torque = PBSCluster(**OPTIONS, resource_spec="nodes=1:ppn=4")  # type: ignore[arg-type]
    assert "-l nodes=1:ppn=4" in directives(torque.job_script(), "#PBS")
    cmd = command(cluster.job_script())
    assert option(cmd, "--nthreads") == "2" and option(cmd, "--memory-limit") == "4000000000"


@pytest.mark.parametrize("text, seconds", [
    ("01:30:00", 5400), ("0:00:45", 45), ("1-00:00:00", 86400), ("2-12:30:15", 217815),
    ("90m", 5400), ("2h", 7200), (None, None)])
def test_walltime_forms(text: str | None, seconds: float | None) -> None:
    assert parse_walltime(text) == seconds


@pytest.mark.parametrize("text, fragment", [
    ("30", "ambiguous"), ("10:00", "ambiguous"), ("00:61:00", "below 60"),
    ("soon", "HH:MM:SS"), ("00:00:00", "longer than zero")])
def test_walltime_errors_say_how_to_write_it(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_walltime(text)


def test_days_of_walltime_are_spelled_per_batch_system() -> None:
    options = {**OPTIONS, "walltime": "1-06:00:00"}
    assert "-t 1-06:00:00" in directives(SLURMCluster(**options).job_script(), "#SBATCH")  # type: ignore[arg-type]
    assert "-l walltime=30:00:00" in directives(PBSCluster(**options).job_script(), "#PBS")  # type: ignore[arg-type]


@pytest.mark.parametrize("walltime", [30, 120, 600, 3600, 12 * 3600, 7 * 86400])
def test_workers_leave_before_the_walltime_with_time_to_move_their_data(walltime: float) -> None:
    life, stagger = lifetime(walltime)
    latest = life + stagger
    assert 0 < life < walltime and latest < walltime
    assert walltime - latest >= min(45.0, walltime * 3 / 8)  # time left to hand data over


def test_no_walltime_no_lifetime() -> None:
    script = SLURMCluster(**{**OPTIONS, "walltime": None}).job_script()  # type: ignore[arg-type]
    assert "--lifetime" not in script and not any(d.startswith("-t ")
                                                   for d in directives(script, "#SBATCH"))


@pytest.mark.parametrize("change, fragment", [
    ({"cores": 0}, "cores=0"), ({"cores": 2, "processes": 3}, "at least one core"),
    ({"memory": "lots"}, "memory='lots'"), ({"memory": "1kB"}, "too small"),
    ({"job_name": "my job"}, "job_name"), ({"job_extra_directives": "--exclusive"}, "list of lines"),
    ({"job_script_prologue": ["a\nb"]}, "one line"), ({"walltime": "30"}, "ambiguous"),
    ({"dashboard_address": "host:http"}, "dashboard_address")])
def test_bad_options_are_named(change: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        SLURMCluster(**{**OPTIONS, **change})  # type: ignore[arg-type]


def test_beyond_loopback_needs_a_secret_which_never_enters_the_script(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKMILL_TOKEN", raising=False)
    monkeypatch.delenv("TASKMILL_TOKEN_FILE", raising=False)
    with pytest.raises(ValueError, match="beyond loopback without a secret"):
        SLURMCluster(**{**OPTIONS, "host": "10.1.2.3", "security": Security()})  # type: ignore[arg-type]
    cluster = SLURMCluster(**{**OPTIONS, "host": "10.1.2.3"})  # type: ignore[arg-type]
    assert cluster.security is not None and cluster.security.token  # a fresh one
    script = cluster.job_script()
    assert cluster.security.token not in script
    # each node finds its own address for its workers
    assert '--host "$(' in script and "contact_address" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    monkeypatch.setenv("TASKMILL_TOKEN", "s3cret-for-this-test")
    assert SLURMCluster(**OPTIONS).security == Security(token="s3cret-for-this-test")  # type: ignore[arg-type]


def test_missing_sbatch_names_the_command_and_the_package(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    assert shutil.which("sbatch") is None
    with SLURMCluster(cores=1, memory="1GB", host="127.0.0.1",
                      shared_directory=str(tmp_path / "shared")) as cluster:
        with pytest.raises(RuntimeError) as info:
            cluster.scale(jobs=1)
        assert "`sbatch` is not installed" in str(info.value)
        assert "slurm" in str(info.value).lower()
        assert cluster.groups == {} and cluster.status == "running"
    assert list((tmp_path / "shared").iterdir()) == []


def test_refused_options_of_a_blocking_cluster_start_nothing(no_leaks: None,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKMILL_TOKEN", raising=False)
    monkeypatch.delenv("TASKMILL_TOKEN_FILE", raising=False)
    for options in ({"cores": 0}, {"host": "10.1.2.3", "security": Security()},
                    {"dashboard_address": "host:http"}):
        with pytest.raises(ValueError):
            SLURMCluster(**{"cores": 1, "memory": "1GB", "host": "127.0.0.1", **options})  # type: ignore[arg-type]


def test_a_batch_command_cancelled_midway_is_killed_and_reaped() -> None:
    """A cluster closing cancels its queue poll: the command must not be left
    running, nor as a zombie for nobody to reap."""
    import asyncio

    import psutil

    from taskmill.cluster.jobqueue.batch import run_command

    async def main() -> int:
        task = asyncio.ensure_future(run_command(["sleep", "30"], "coreutils"))
        deadline = asyncio.get_running_loop().time() + 10
        while not psutil.Process().children():
            assert asyncio.get_running_loop().time() < deadline, "the command never started"
            await asyncio.sleep(0.01)
        (child,) = psutil.Process().children()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return child.pid

    pid = asyncio.run(main())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    assert pid not in [p.pid for p in psutil.Process().children()]
