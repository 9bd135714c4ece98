"""``JobQueueCluster``: a scheduler here, its workers in batch jobs (SLURM, PBS).

Theory of operation
-------------------
The scheduler runs in this process, on the cluster's event loop, listening
where the compute nodes reach it (``host=``; by default this machine's
outward address).  It writes the scheduler file (address and the cluster's
token, mode 0600, :mod:`~taskmill.scheduler_file`) into the
cluster's own directory (mode 0700) under ``shared_directory``, which must
be on a filesystem the nodes share (the home directory by default).

Each worker group of the :class:`~taskmill.cluster.base.Cluster` base is one
batch job (:class:`Job`) running ``processes`` workers named after the group:

* ``start()`` writes the job script (:meth:`JobQueueCluster.job_script`)
  and submits it; a refusal raises with the submit command's stderr and the
  script's directives, so the option at fault is named;
* ``close()`` cancels the job and waits until the batch system no longer
  lists it, so that nothing is left behind;
* ``ended()`` reports a job that left the queue by itself.  Which jobs are
  still queued is asked once per look of the cluster's watcher, with one
  status command for all jobs (``_poll_groups``); a job that left before any
  of its workers registered is a failure, reported with the job id and the
  end of its output file.

Scaling, adaptivity and the order of going down (retire the workers, then
cancel their jobs) come from the base.  On close the scheduler file and the
cluster's directory (scripts, and the jobs' output unless ``log_directory``
is given) are removed.  Options set with ``taskmill.config.set`` when the
cluster is made reach its workers as they reach a nanny's: exported by the
job script (they are options, not secrets).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shlex
import shutil
import uuid

from taskmill import config
from taskmill.cluster.base import Cluster, WorkerGroup
from taskmill.cluster.jobqueue.batch import BatchCommandError, BatchSystem, run_command
from taskmill.cluster.jobqueue.script import JobSpec, job_spec, render
from taskmill.cluster.local import in_process_dashboard_link, port_of_dashboard
from taskmill.scheduler_file import remove_scheduler_file, write_scheduler_file
from taskmill.comm.addressing import contact_address, is_loopback
from taskmill.security import Security, own_cluster_security
from taskmill.server.scheduler import Scheduler

logger = logging.getLogger("taskmill.cluster.jobqueue")

#: seconds to wait for a cancelled job to leave the queue
CANCEL_TIMEOUT = 60.0
#: how much of a failed job's output an error shows
OUTPUT_TAIL_LINES = 20
OUTPUT_TAIL_CHARS = 3000

#: the job script's shell expression for the node's outward IP address
_NODE_ADDRESS = ("from taskmill.comm.addressing import contact_address as c; "
                 "print(c('tcp://0.0.0.0:0')[6:].rsplit(':', 1)[0])")


class Job(WorkerGroup):
    """One batch job running ``processes`` workers named after it."""

    def __init__(self, name: str, cluster: JobQueueCluster) -> None:
        super().__init__(name, cluster.spec.processes)
        self.cluster = cluster
        self.batch: BatchSystem = cluster.batch
        #: the batch system's id, once submitted
        self.job_id: str | None = None
        self.script_path = os.path.join(cluster.directory, f"{name}.sh")
        self.output_path = cluster.output_path(name)
        #: whether one of its workers was seen registered with the scheduler
        self.registered = False
        self.closing = False
        self._left: str | None = None
        #: set once start() has submitted the job, or failed to
        self._submitted: asyncio.Event | None = None

    async def start(self) -> None:
        self._submitted = asyncio.Event()
        try:
            await self._submit()
        finally:
            self._submitted.set()

    async def _submit(self) -> None:
        script = self.cluster.job_script(self.name)
        with open(self.script_path, "w", encoding="utf-8") as f:
            f.write(script)
        # submitted from the user's working directory, as by hand: a SLURM job runs there, so
        # the modules of the user's project import on the nodes as they do here
        done = await run_command(self.batch.submit_args(self.script_path), self.batch.package)
        if done.returncode != 0:
            directives = [line for line in script.splitlines()
                          if line.startswith(self.batch.directive)]
            raise BatchCommandError(
                f"`{self.batch.submit_command}` rejected the job script of {self.name} "
                f"({self.script_path}): {(done.stderr or done.stdout).strip()}; the script asks "
                f"for: {'; '.join(directives)}")
        self.job_id = self.batch.job_id(done.stdout)
        logger.info("%s: submitted %s as job %s", type(self.cluster).__name__, self.name,
                    self.job_id)

    async def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if self._submitted is not None:  # a submission under way may yet make a job
            await self._submitted.wait()
        if self.job_id is not None:
            await self._cancel(self.job_id)

    async def _cancel(self, job_id: str) -> None:
        """Cancel the job and wait until the batch system no longer lists it."""
        done = await run_command([self.batch.cancel_command, job_id], self.batch.package)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CANCEL_TIMEOUT
        while True:
            queued = await self.batch.queued([job_id])
            if queued is not None and job_id not in queued:
                return
            if loop.time() > deadline:
                raise BatchCommandError(
                    f"job {job_id} ({self.name}) is still in the queue {CANCEL_TIMEOUT:g}s "
                    f"after `{self.batch.cancel_command} {job_id}` "
                    f"({(done.stderr or done.stdout).strip() or 'no answer'})")
            await asyncio.sleep(0.1)

    def ended(self) -> str | None:
        return None if self.closing else self._left

    def left_queue(self) -> None:
        """The batch system no longer lists the job: note why it ended."""
        if self.registered:
            self._left = (f"job {self.job_id} ended (its workers had registered: they reached "
                          f"their --lifetime, or the job its walltime); output in "
                          f"{self.output_path}")
        else:
            self._left = (f"job {self.job_id} left the queue before its workers registered; "
                          f"the end of its output ({self.output_path}):\n{self._output_tail()}")

    def _output_tail(self) -> str:
        try:
            with open(self.output_path, encoding="utf-8", errors="replace") as f:
                lines = f.readlines()[-OUTPUT_TAIL_LINES:]
        except OSError as exc:
            return f"(no output: {exc.strerror})"
        return "".join(lines)[-OUTPUT_TAIL_CHARS:] or "(empty)"


class JobQueueCluster(Cluster):
    """A scheduler in this process and workers in batch jobs.

    Each job asks for one node with ``cores`` cores and ``memory`` and runs
    ``processes`` workers there (``cores // processes`` threads and
    ``memory / processes`` each); ``scale(jobs=n)`` runs ``n`` jobs,
    ``scale(n)`` enough jobs for ``n`` workers.  ``walltime`` ("HH:MM:SS",
    "D-HH:MM:SS" or "90m") is the job's time limit: workers leave a margin
    before it, their data moved.  ``queue`` and ``account`` select where jobs
    run; ``job_extra_directives`` are more directive lines (without the
    prefix, e.g. ``["--gres=gpu:1"]``), ``job_script_prologue`` shell lines
    run before the workers (e.g. ``["module load python"]``); ``python`` is
    the interpreter on the nodes (default: this one).

    ``job_name`` names the jobs (and, numbered, the workers);
    ``shared_directory`` is where the cluster's scheduler file and job
    scripts go (default ``~/.taskmill/jobqueue``: it must be visible from the
    nodes), ``log_directory`` keeps the jobs' output after ``close()``.
    ``host`` is where the scheduler listens (default: this machine's outward
    address).  ``security``: the cluster's secret (default: the environment's
    token or TLS files if it has them, else a fresh ``Security.temporary()``);
    the workers read the token from the scheduler file.
    """

    #: the batch system's commands and directives (set by each subclass)
    batch: BatchSystem

    def __init__(self, cores: int, memory: str | int, processes: int = 1,
                 walltime: str | None = None, queue: str | None = None,
                 account: str | None = None, job_extra_directives: tuple[str, ...] | list[str] = (),
                 job_script_prologue: tuple[str, ...] | list[str] = (), python: str | None = None,
                 *, job_name: str = "taskmill-worker", log_directory: str | None = None,
                 shared_directory: str | None = None, host: str | None = None,
                 n_workers: int = 0, dashboard_address: str | None = ":0",
                 security: Security | None = None, asynchronous: bool = False) -> None:
        cls = type(self).__name__
        self.spec: JobSpec = job_spec(cores, memory, processes, walltime, queue, account,
                                      job_extra_directives, job_script_prologue, python,
                                      job_name, cls)
        security = own_cluster_security(security)
        self.host = host or contact_address("tcp://0.0.0.0:0")[6:].rsplit(":", 1)[0]
        if not is_loopback(self.host) and security.token is None and not security.require_encryption:
            raise ValueError(
                f"{cls}(host={self.host!r}, security={security!r}): the scheduler would listen "
                "beyond loopback without a secret, and whoever reaches it can run code as you; "
                "leave security= out (the cluster makes a fresh secret), give it a token or TLS "
                "files (docs/security.md), or use host='127.0.0.1' when the jobs run on this machine")
        self.dashboard_port = port_of_dashboard(dashboard_address)
        # all checks above: the base starts the event-loop thread of a blocking cluster
        super().__init__(asynchronous=asynchronous, security=security,
                         workers_per_group=self.spec.processes,
                         threads_per_worker=self.spec.threads_per_process)
        self.group_prefix = job_name
        self.log_directory = os.path.abspath(log_directory) if log_directory else None
        root = os.path.abspath(os.path.expanduser(shared_directory or "~/.taskmill/jobqueue"))
        #: the cluster's own directory: scheduler file, job scripts, output
        self._tag = uuid.uuid4().hex[:8]
        self.directory = os.path.join(root, f"{job_name}-{self._tag}")
        self.scheduler_file = os.path.join(self.directory, "scheduler.json")
        self.scheduler: Scheduler | None = None
        #: the options set with taskmill.config.set here, for the jobs (as a nanny passes them)
        self._inherited = config.inheritable()
        self._initial_jobs = math.ceil(n_workers / self.spec.processes)
        self._start_if_blocking()

    async def _start(self, n_groups: int = 0) -> JobQueueCluster:
        await super()._start(n_groups or self._initial_jobs)
        return self

    def output_path(self, name: str) -> str:
        """Where the job of group ``name`` writes its output."""
        return os.path.join(self.log_directory or self.directory, f"{name}-{self._tag}.out")

    def job_script(self, name: str | None = None) -> str:
        """The job script of the group ``name`` (default: the first job's);
        the jobs' scripts differ only in that name and their output file."""
        name = name or f"{self.group_prefix}-0"
        if is_loopback(self.host):
            worker_host = self.host
        else:  # the node's own outward address, found on the node
            worker_host = f"$({shlex.quote(self.spec.python)} -c {shlex.quote(_NODE_ADDRESS)})"
        command = self.spec.worker_command(self.scheduler_file, name, worker_host)
        exports = [f"export {k}={shlex.quote(v)}" for k, v in self._inherited.items()]
        return render(self.batch.directives(self.spec, self.output_path(name)),
                      [*exports, *self.spec.job_script_prologue], command)

    # ------------------------------------------------------------------ #
    # The Cluster base's hooks
    # ------------------------------------------------------------------ #
    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's URL (a fresh one-time login link each time)."""
        return in_process_dashboard_link(self)

    async def _start_scheduler(self) -> tuple[str, str | None]:
        os.makedirs(os.path.dirname(self.directory), mode=0o700, exist_ok=True)
        os.makedirs(self.directory, mode=0o700)
        try:
            if self.log_directory:
                os.makedirs(self.log_directory, exist_ok=True)
            self.scheduler = await Scheduler(host=self.host, port=0, security=self.security,
                                             dashboard_port=self.dashboard_port).start()
            address = contact_address(self.scheduler.address)  # host="0.0.0.0": where nodes reach it
            assert self.security is not None
            write_scheduler_file(self.scheduler_file, address, self.security, self.scheduler.id)
        except BaseException:
            await self._close_scheduler()  # and the directory
            raise
        return address, None

    async def _close_scheduler(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.close()
            remove_scheduler_file(self.scheduler_file, self.scheduler.id)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _new_group(self, name: str) -> Job:
        return Job(name, self)

    async def _poll_groups(self) -> None:
        jobs = [g for g in self.groups.values()
                if isinstance(g, Job) and g.job_id is not None and not g.closing]
        if not jobs:
            return
        try:
            queued = await self.batch.queued([job.job_id for job in jobs if job.job_id])
        except BatchCommandError as exc:
            logger.warning("%s: cannot ask which jobs are queued: %s", type(self).__name__, exc)
            return
        if queued is None:
            return
        names = {info.get("name") for info in self._seen_workers.values()}
        for job in jobs:
            if names.intersection(job.worker_names):
                job.registered = True
            if job.job_id not in queued:
                job.left_queue()
