"""What one batch job of a job-queue cluster asks for and runs: its job script.

Theory of operation
-------------------
A :class:`JobSpec` holds the options every job of a cluster shares
(``cores``, ``memory``, ``processes``, ``walltime``, ``queue``, ...), checked
once, with an error naming the option and the fix.  A job asks the batch
system for ``cores`` cores and ``memory`` for one node and runs
``processes`` workers there, each with ``cores // processes`` threads and
``memory / processes`` bytes, through ``taskmill-worker`` (``python -m
taskmill.cli.worker_cli``) under nannies.

The script never holds the cluster's secret: the workers read the
scheduler's address and token from the scheduler file (mode 0600, on a
filesystem the nodes share) named by ``--scheduler-file``.

Workers must leave before the batch system kills the job at its walltime,
so that their data moves to the workers that stay: they get ``--lifetime``
= walltime - margin, with margin = 10% of the walltime, at least one and
at most five minutes (at most half a short walltime), and
``--lifetime-stagger`` = margin / 4 so that the workers of jobs started
together do not all leave at once.  Without a walltime the queue's default
limit applies, unknown here: no ``--lifetime``.

The batch-system-specific parts (directives, the walltime's spelling) are
in :mod:`~taskmill.cluster.jobqueue.slurm` and
:mod:`~taskmill.cluster.jobqueue.pbs`; :func:`render` puts a script
together.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from taskmill.units import parse_bytes, parse_seconds

#: seconds a worker leaves before the walltime: 10% of it, within these bounds
MARGIN_BOUNDS = (60.0, 300.0)
#: the worker's --death-timeout: it exits when its scheduler is gone this long
DEATH_TIMEOUT = 60


def parse_walltime(walltime: str | None) -> float | None:
    """``"01:30:00"`` or ``"1-00:00:00"`` (days-hours:minutes:seconds), or a
    duration with a unit (``"90m"``, ``"2h"``) -> seconds; None -> None."""
    if walltime is None:
        return None
    if not isinstance(walltime, str):
        raise ValueError(f"walltime={walltime!r}: write it as 'HH:MM:SS' (e.g. '01:30:00'), "
                         "'D-HH:MM:SS' or with a unit ('90m', '2h')")
    m = re.fullmatch(r"\s*(?:(\d+)-)?(\d+):(\d{1,2}):(\d{1,2})\s*", walltime)
    if m is not None:
        days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
        if minutes >= 60 or seconds >= 60:
            raise ValueError(f"walltime={walltime!r}: minutes and seconds must be below 60")
        value = float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)
    elif re.fullmatch(r"\s*[0-9.]+\s*", walltime) or ":" in walltime:
        raise ValueError(f"walltime={walltime!r} is ambiguous (batch systems read a bare number "
                         "or 'MM:SS' differently): write 'HH:MM:SS', 'D-HH:MM:SS' or a duration "
                         "with a unit such as '90m'")
    else:
        try:
            value = parse_seconds(walltime)
        except ValueError:
            raise ValueError(f"walltime={walltime!r}: write 'HH:MM:SS' (e.g. '01:30:00'), "
                             "'D-HH:MM:SS' or a duration with a unit ('90m', '2h')") from None
    if value <= 0:
        raise ValueError(f"walltime={walltime!r} must be longer than zero")
    return value


def hms(seconds: float) -> str:
    """3723 -> ``"01:02:03"`` (hours may exceed 24)."""
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def lifetime(walltime: float) -> tuple[float, float]:
    """-> (``--lifetime``, ``--lifetime-stagger``) in seconds for a walltime."""
    low, high = MARGIN_BOUNDS
    margin = min(max(0.1 * walltime, low), high, walltime / 2)
    return walltime - margin, margin / 4


@dataclass(frozen=True)
class JobSpec:
    """The options every job of one cluster shares (see :func:`job_spec`)."""

    cores: int
    memory: int
    processes: int
    walltime: float | None
    queue: str | None
    account: str | None
    job_extra_directives: tuple[str, ...]
    job_script_prologue: tuple[str, ...]
    python: str
    job_name: str

    @property
    def threads_per_process(self) -> int:
        return self.cores // self.processes

    @property
    def memory_per_process(self) -> int:
        return self.memory // self.processes

    def worker_command(self, scheduler_file: str, name: str, host: str) -> list[str]:
        """The ``taskmill-worker`` command line of the job whose workers are ``name``."""
        cmd = [self.python, "-m", "taskmill.cli.worker_cli", "--scheduler-file", scheduler_file,
               "--nthreads", str(self.threads_per_process), "--nworkers", str(self.processes),
               "--memory-limit", str(self.memory_per_process), "--name", name, "--host", host]
        if self.walltime is not None:
            life, stagger = lifetime(self.walltime)
            cmd += ["--lifetime", f"{int(life)}s", "--lifetime-stagger", f"{int(stagger)}s"]
        return cmd + ["--death-timeout", f"{DEATH_TIMEOUT}s"]


def job_spec(cores: int, memory: str | int, processes: int, walltime: str | None,
             queue: str | None, account: str | None, job_extra_directives: Iterable[str],
             job_script_prologue: Iterable[str], python: str | None, job_name: str,
             cluster: str) -> JobSpec:
    """Check the options of a ``cluster`` (its class name, for errors) -> a JobSpec."""
    if not isinstance(cores, int) or isinstance(cores, bool) or cores < 1:
        raise ValueError(f"{cluster}(cores={cores!r}): the cores of one job, an integer >= 1")
    if not isinstance(processes, int) or isinstance(processes, bool) or processes < 1:
        raise ValueError(f"{cluster}(processes={processes!r}): worker processes per job, an "
                         "integer >= 1")
    if processes > cores:
        raise ValueError(f"{cluster}(cores={cores}, processes={processes}): each worker process "
                         "needs at least one core; ask for more cores or fewer processes")
    try:
        nbytes = parse_bytes(memory)
    except (ValueError, TypeError):
        raise ValueError(f"{cluster}(memory={memory!r}): the memory of one job, e.g. '4GB' or "
                         "'16GiB'") from None
    if nbytes < 2**20 * processes:
        raise ValueError(f"{cluster}(memory={memory!r}) is too small: at least 1 MiB per worker "
                         "process (e.g. memory='4GB')")
    if not job_name or not re.fullmatch(r"[A-Za-z0-9_.-]+", job_name):
        raise ValueError(f"{cluster}(job_name={job_name!r}): letters, digits, '.', '_' and '-' "
                         "only (it names the jobs and their files)")
    return JobSpec(cores, nbytes, processes, parse_walltime(walltime), queue, account,
                   _lines("job_extra_directives", job_extra_directives, cluster),
                   _lines("job_script_prologue", job_script_prologue, cluster),
                   python or sys.executable, job_name)


def _lines(option: str, value: Iterable[str], cluster: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ValueError(f"{cluster}({option}={value!r}): give a list of lines, e.g. [{value!r}]")
    lines = tuple(value)
    for line in lines:
        if not isinstance(line, str) or "\n" in line:
            raise ValueError(f"{cluster}({option}=...): {line!r} is not one line of text")
    return lines


def render(directives: Sequence[str], prologue: Sequence[str], command: Sequence[str]) -> str:
    """A bash job script: the directives, the prologue, then ``exec`` the
    command (so the batch system's signals reach the workers directly).  Each
    argument is quoted for the shell, but one that is a command substitution
    (``$(...)``, e.g. the node's address found on the node) is double-quoted,
    so that the shell runs it."""
    lines = ["#!/usr/bin/env bash", *directives, "", *prologue,
             "exec " + " ".join(shlex.quote(c) if not c.startswith("$(") else f'"{c}"'
                                for c in command)]
    return "\n".join(lines) + "\n"
