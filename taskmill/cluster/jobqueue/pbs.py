"""``PBSCluster``: taskmill workers in PBS (PBS Pro, OpenPBS, Torque) batch jobs.

Theory of operation
-------------------
Each job is one ``qsub`` submission of a script that asks for one chunk of
``ncpus=cores`` and ``mem=memory`` (``-l select=1:ncpus=..:mem=..mb``, PBS
Pro's spelling; Torque sites pass their own ``-l nodes=1:ppn=..`` through
``resource_spec=``), with stdout and stderr joined into one output file.
``qsub`` answers with the job id (``123.server``); ``qdel`` cancels a job;
``qstat JOBIDS`` lists the jobs still known, with their state in the fifth
column (``C`` and ``F`` are finished), and says "Unknown Job Id" (Torque,
or a purged job) or "Job has finished" (PBS Pro) on stderr for the others.
"""

from __future__ import annotations

import math
import re
from typing import Any

from taskmill.cluster.jobqueue.base import JobQueueCluster
from taskmill.cluster.jobqueue.batch import BatchSystem, run_command
from taskmill.cluster.jobqueue.script import JobSpec, hms

#: qstat states of a job that left: completed (Torque), finished (PBS Pro)
FINISHED_STATES = frozenset({"C", "F"})
#: what qstat says on stderr of a job it no longer lists (the others it lists)
LEFT_MESSAGES = r"Unknown Job Id|Job has finished"


class Pbs(BatchSystem):
    """qsub, qdel, qstat."""

    name = "PBS"
    package = "PBS (OpenPBS, PBS Pro or Torque: their client commands)"
    submit_command = "qsub"
    cancel_command = "qdel"
    directive = "#PBS"

    def __init__(self, resource_spec: str | None = None) -> None:
        self.resource_spec = resource_spec

    def directives(self, spec: JobSpec, output: str) -> list[str]:
        resources = (self.resource_spec or
                     f"select=1:ncpus={spec.cores}:mem={math.ceil(spec.memory / 2**20)}mb")
        lines = [f"-N {spec.job_name}", f"-o {output}", "-j oe", f"-l {resources}"]
        if spec.walltime is not None:
            lines.append(f"-l walltime={hms(spec.walltime)}")
        if spec.queue:
            lines.append(f"-q {spec.queue}")
        if spec.account:
            lines.append(f"-A {spec.account}")
        return [f"{self.directive} {line}" for line in (*lines, *spec.job_extra_directives)]

    async def queued(self, job_ids: list[str]) -> set[str] | None:
        done = await run_command(["qstat", *job_ids], self.package)
        if done.returncode != 0 and not re.search(LEFT_MESSAGES, done.stderr):
            return None
        wanted = {job.split(".")[0]: job for job in job_ids}
        live = set()
        for line in done.stdout.splitlines():
            fields = line.split()
            if len(fields) >= 5 and fields[0].split(".")[0] in wanted:
                if fields[4] not in FINISHED_STATES:
                    live.add(wanted[fields[0].split(".")[0]])
        return live


class PBSCluster(JobQueueCluster):
    """Workers in PBS jobs: each job runs ``processes`` workers sharing
    ``cores`` cores and ``memory``; ``resource_spec`` replaces the default
    ``select=1:ncpus=CORES:mem=MEMORYmb`` request.  See
    :class:`~taskmill.cluster.jobqueue.base.JobQueueCluster` for the options."""

    def __init__(self, cores: int, memory: str | int, *args: Any,
                 resource_spec: str | None = None, **kwargs: Any) -> None:
        self.batch = Pbs(resource_spec)
        super().__init__(cores, memory, *args, **kwargs)
