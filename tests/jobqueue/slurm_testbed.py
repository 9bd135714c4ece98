"""A real, single-node SLURM for the job-queue tests: munged, slurmctld, slurmd.

Theory of operation
-------------------
Debian's ``munge`` and ``slurm-wlm`` are started directly (no systemd), as
root, with a private configuration in a temporary directory: the daemons
get ``-f CONF`` and the client commands (``sbatch``, ``squeue``, ...) find
it through ``$SLURM_CONF``.  The settings are the ones that work in a
container without cgroups (``proctrack/linuxproc``, ``task/none``, no job
accounting), a node line taken from ``slurmd -C`` with 95% of its memory,
``select/cons_tres`` so that two one-core jobs share the node, and
``batch_sched_delay=0`` so that a job starts within a second.  The ports
are free ones picked at start, so a SLURM the machine runs already is not
disturbed; munged is reused when one answers, else started as the munge
user and stopped at the end.  ``stop()`` cancels every job, stops the
daemons it started and removes the directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable

DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")
MUNGE_SOCKET_DIR = "/run/munge"


def missing() -> str | None:
    """Why a SLURM cannot be started here, or None."""
    if os.geteuid() != 0:
        return "a real SLURM needs root (slurmd runs the jobs as their user)"
    absent = [d for d in DAEMONS if not os.path.exists(d)]
    if absent or shutil.which("sbatch") is None:
        return (f"SLURM or munge is not installed ({', '.join(absent) or 'sbatch'} missing): "
                "apt-get install munge slurm-wlm")
    return None


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _node_line() -> str:
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    fields = dict(kv.split("=", 1) for kv in out.splitlines()[0].split())
    memory = int(int(fields["RealMemory"]) * 0.95)
    return (f"NodeName=localhost NodeAddr=127.0.0.1 Sockets={fields['SocketsPerBoard']} "
            f"CoresPerSocket={fields['CoresPerSocket']} ThreadsPerCore={fields['ThreadsPerCore']} "
            f"RealMemory={memory} State=UNKNOWN")


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"SLURM test bed: {what} did not happen within {timeout}s")
        time.sleep(0.05)


class SlurmTestbed:
    """One slurmctld and one slurmd ("localhost") with partition ``debug``."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="taskmill-slurm-")
        self.conf = os.path.join(self.directory, "slurm.conf")
        self._started_munged = False
        self._old_conf = os.environ.get("SLURM_CONF")

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": self.conf}

    def run(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(cmd), capture_output=True, text=True, env=self.env(), timeout=30)

    def start(self) -> SlurmTestbed:
        try:
            self._start_munged()
            self._write_conf()
            for daemon in (["slurmctld", "-c", "-f", self.conf], ["slurmd", "-N", "localhost", "-c",
                                                                   "-f", self.conf]):
                result = self.run(*daemon)
                if result.returncode != 0:
                    raise RuntimeError(f"{daemon[0]} did not start: {result.stderr}{self._logs()}")
            _wait(lambda: "idle" in self.run("sinfo", "-h", "-o", "%t").stdout, 30,
                  f"the node becoming idle{self._logs()}")
        except BaseException:
            self.stop()
            raise
        os.environ["SLURM_CONF"] = self.conf
        return self

    def _start_munged(self) -> None:
        if subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
            return  # a munged answers already
        os.makedirs(MUNGE_SOCKET_DIR, exist_ok=True)
        shutil.chown(MUNGE_SOCKET_DIR, "munge", "munge")
        os.chmod(MUNGE_SOCKET_DIR, 0o755)
        result = subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"munged did not start: {result.stderr}")
        self._started_munged = True
        _wait(lambda: subprocess.run(["munge", "-n"], capture_output=True).returncode == 0, 10,
              "munged answering")

    def _write_conf(self) -> None:
        d = self.directory
        ctld_port, slurmd_port = _free_ports(2)
        for sub in ("state", "spool"):
            os.makedirs(os.path.join(d, sub))
        lines = [
            "ClusterName=taskmilltest", "SlurmctldHost=localhost(127.0.0.1)",
            f"SlurmctldPort={ctld_port}", f"SlurmdPort={slurmd_port}", "SlurmUser=root",
            "AuthType=auth/munge", "MpiDefault=none", "ReturnToService=2",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none", "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory", "SchedulerParameters=batch_sched_delay=0",
            "SchedulerType=sched/backfill", "KillWait=5", "MinJobAge=30",
            f"StateSaveLocation={d}/state", f"SlurmdSpoolDir={d}/spool",
            f"SlurmctldPidFile={d}/slurmctld.pid", f"SlurmdPidFile={d}/slurmd.pid",
            f"SlurmctldLogFile={d}/slurmctld.log", f"SlurmdLogFile={d}/slurmd.log",
            _node_line(), "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
        ]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def _logs(self) -> str:
        text = []
        for name in ("slurmctld.log", "slurmd.log"):
            try:
                with open(os.path.join(self.directory, name)) as f:
                    text.append(f"\n--- {name} ---\n" + "".join(f.readlines()[-15:]))
            except OSError:
                pass
        return "".join(text)

    def jobs(self, name: str | None = None) -> list[str]:
        """Ids of the jobs in the queue (of job name ``name``)."""
        cmd = ["squeue", "-h", "-o", "%i"] + ([f"--name={name}"] if name else [])
        return self.run(*cmd).stdout.split()

    def stop(self) -> None:
        if os.path.exists(self.conf):
            self.run("scancel", "--user=root")
        for pidfile in ("slurmd.pid", "slurmctld.pid"):
            self._kill(os.path.join(self.directory, pidfile))
        if self._started_munged:
            self._kill("/run/munge/munged.pid")
        if self._old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = self._old_conf
        shutil.rmtree(self.directory, ignore_errors=True)

    @staticmethod
    def _kill(pidfile: str) -> None:
        try:
            with open(pidfile) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
