"""Job-queue clusters: taskmill workers in SLURM or PBS batch jobs.

``SLURMCluster`` and ``PBSCluster`` share :class:`JobQueueCluster` (the
scheduler here, one batch job per worker group); what differs between the
batch systems is in :mod:`.slurm` and :mod:`.pbs`.
"""

from taskmill.cluster.jobqueue.base import JobQueueCluster
from taskmill.cluster.jobqueue.batch import BatchCommandError
from taskmill.cluster.jobqueue.pbs import PBSCluster
from taskmill.cluster.jobqueue.slurm import SLURMCluster

__all__ = ["BatchCommandError", "JobQueueCluster", "PBSCluster", "SLURMCluster"]
