"""``SLURMCluster``: taskmill workers in SLURM batch jobs.

Theory of operation
-------------------
Each job is one ``sbatch`` submission of a script that asks for one node
with ``cores`` CPUs (``--cpus-per-task``) and ``memory`` (``--mem``, in
MiB rounded up: SLURM reads ``M`` as MiB), and runs ``processes`` workers;
the scheduler runs in the submitting process (see
:class:`~taskmill.cluster.jobqueue.base.JobQueueCluster`).  ``sbatch
--parsable`` answers with the job id; ``scancel`` cancels a job;
``squeue --jobs`` lists those of a cluster's jobs that are still pending,
running or completing (a job that finished shows a final state for a while,
or is unknown to squeue once purged: both mean gone).
"""

from __future__ import annotations

import math

from taskmill.cluster.jobqueue.base import JobQueueCluster
from taskmill.cluster.jobqueue.batch import BatchSystem, run_command
from taskmill.cluster.jobqueue.script import JobSpec, hms

#: squeue states of a job that is still there (the others are final)
LIVE_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED",
                         "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING",
                         "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"})


class Slurm(BatchSystem):
    """sbatch, scancel, squeue."""

    name = "SLURM"
    package = "SLURM (Debian/Ubuntu: the slurm-client or slurm-wlm package)"
    submit_command = "sbatch"
    cancel_command = "scancel"
    directive = "#SBATCH"

    def directives(self, spec: JobSpec, output: str) -> list[str]:
        lines = [f"-J {spec.job_name}", f"-o {output}", "-N 1", "-n 1",
                 f"--cpus-per-task={spec.cores}", f"--mem={math.ceil(spec.memory / 2**20)}M"]
        if spec.walltime is not None:
            days, rest = divmod(int(spec.walltime), 86400)
            lines.append(f"-t {days}-{hms(rest)}" if days else f"-t {hms(rest)}")
        if spec.queue:
            lines.append(f"-p {spec.queue}")
        if spec.account:
            lines.append(f"-A {spec.account}")
        return [f"{self.directive} {line}" for line in (*lines, *spec.job_extra_directives)]

    def submit_args(self, script: str) -> list[str]:
        return [self.submit_command, "--parsable", script]

    async def queued(self, job_ids: list[str]) -> set[str] | None:
        done = await run_command(["squeue", "--noheader", "--format=%i %T",
                                  f"--jobs={','.join(job_ids)}"], self.package)
        if done.returncode != 0:
            # squeue refuses a list of job ids none of which it knows any more
            return set() if "Invalid job id" in done.stderr else None
        return {job for job, state in (line.split()[:2] for line in done.stdout.splitlines()
                                       if len(line.split()) >= 2)
                if state in LIVE_STATES}


class SLURMCluster(JobQueueCluster):
    """Workers in SLURM jobs: each job runs ``processes`` workers sharing
    ``cores`` cores and ``memory``; see
    :class:`~taskmill.cluster.jobqueue.base.JobQueueCluster` for the options."""

    batch = Slurm()
