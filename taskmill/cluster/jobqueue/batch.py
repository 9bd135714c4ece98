"""Talking to a batch system: its commands, and what each system spells differently.

Theory of operation
-------------------
A job-queue cluster drives a batch system only through its command-line
programs (``sbatch``/``squeue``/``scancel``, ``qsub``/``qstat``/``qdel``),
run as subprocesses without a shell.  :func:`run_command` runs one with a
deadline and turns the failures a user can meet into errors that say what to
do: the program is not installed (naming it and the package that brings it),
it failed (its stderr), it hung.

A :class:`BatchSystem` is the part that differs between SLURM and PBS: the
directives of a job script, how to submit one and read the job id from the
answer, how to cancel a job, and which of some jobs are still in the queue
(one status call for all of a cluster's jobs, made once a second by the
cluster's watcher).  The commands run in an environment without the
taskmill token variables: batch systems copy the submitter's environment
into the job (``sbatch --export=ALL``), and the workers read the secret from
the scheduler file instead.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from abc import ABC, abstractmethod
from dataclasses import dataclass

from taskmill.cluster.jobqueue.script import JobSpec
from taskmill.security import TOKEN_ENV, TOKEN_FILE_ENV

#: seconds a batch command may take
COMMAND_TIMEOUT = 60.0


class BatchCommandError(RuntimeError):
    """A batch-system command is missing, failed or hung."""


@dataclass(frozen=True)
class Completed:
    """What a finished command returned."""

    returncode: int
    stdout: str
    stderr: str


def submission_environment() -> dict[str, str]:
    """This process's environment without the taskmill token variables."""
    return {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, TOKEN_FILE_ENV)}


async def run_command(args: list[str], package: str, timeout: float = COMMAND_TIMEOUT) -> Completed:
    """Run ``args``; a :class:`BatchCommandError` when the program is missing
    (``package`` brings it) or does not finish within ``timeout`` seconds."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=submission_environment())
    except FileNotFoundError:
        raise BatchCommandError(
            f"`{args[0]}` is not installed here (not on $PATH): it comes with {package}; run "
            f"on a machine that submits jobs (a login node) or install it") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        try:
            proc.kill()
        except ProcessLookupError:
            pass  # it exited; a child of it holds its output open
        await proc.wait()
        raise BatchCommandError(f"`{' '.join(args)}` did not answer within {timeout:g}s: is "
                                "the batch system's controller up?") from None
    except asyncio.CancelledError:  # the cluster closing: leave no zombie behind
        _kill_and_reap(proc.pid)
        raise
    return Completed(proc.returncode or 0, out.decode(errors="replace"),
                     err.decode(errors="replace"))


def _kill_and_reap(pid: int) -> None:
    """Kill a command whose caller was cancelled and reap it at once: the event
    loop that would have reaped it may be closing (a killed process is reaped
    within milliseconds)."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass  # already gone, or already reaped by the loop


class BatchSystem(ABC):
    """What SLURM and PBS spell differently."""

    #: e.g. "SLURM"
    name: str
    #: what installs the commands, for the "not installed" error
    package: str
    submit_command: str
    cancel_command: str
    #: the prefix of a directive line, e.g. "#SBATCH"
    directive: str

    @abstractmethod
    def directives(self, spec: JobSpec, output: str) -> list[str]:
        """The directive lines of a job script writing its output to ``output``."""

    def submit_args(self, script: str) -> list[str]:
        """The command that submits the job script at ``script``."""
        return [self.submit_command, script]

    def job_id(self, stdout: str) -> str:
        """The job id in the submit command's answer."""
        m = re.search(r"\d+(?:\.[\w.-]+)?", stdout)
        if m is None:
            raise BatchCommandError(f"`{self.submit_command}` answered {stdout.strip()!r}, "
                                    "in which there is no job id")
        return m.group(0)

    @abstractmethod
    async def queued(self, job_ids: list[str]) -> set[str] | None:
        """Which of ``job_ids`` are still in the queue (pending, running or
        ending); None when the batch system could not be asked."""
