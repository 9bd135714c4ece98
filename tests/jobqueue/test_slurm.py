"""SLURMCluster against a real SLURM (munged, slurmctld, slurmd on this machine)."""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path

import psutil
import pytest

from taskmill import Executor, config, wait
from taskmill.cluster.jobqueue import SLURMCluster
from taskmill.scheduler_file import read_scheduler_file
from taskmill.comm.addressing import contact_address, is_loopback, parse_address
from tests.conftest import wait_for
from tests.jobqueue.slurm_testbed import SlurmTestbed

pytestmark = pytest.mark.timeout(180)


def inc(x: int) -> int:
    return x + 1


def slow_square(x: int) -> int:
    time.sleep(1.0)
    return x * x


def read_option(key: str) -> object:
    return config.get(key)


def job_processes(cluster: SLURMCluster) -> list[int]:
    """Processes of this machine started for the cluster's jobs."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if cluster.scheduler_file in " ".join(p.info["cmdline"] or ()):
            found.append(p.pid)
    return found


def unique_name() -> str:
    return f"tm-{uuid.uuid4().hex[:6]}"


def test_scale_jobs_gives_registered_workers_and_keeps_the_token_out_of_jobs(
        slurm: SlurmTestbed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKMILL_TOKEN", raising=False)
    monkeypatch.delenv("TASKMILL_TOKEN_FILE", raising=False)
    name = unique_name()
    with config.set({"comm.timeouts.retire": 45}):  # options set here reach the workers
        cluster = SLURMCluster(cores=1, memory="1GB", walltime="00:10:00", job_name=name,
                               host="127.0.0.1", shared_directory=str(tmp_path / "shared"),
                               log_directory=str(tmp_path / "logs"), job_script_prologue=[
                                   'echo "token in the job: ${TASKMILL_TOKEN:-none}"'])
    with cluster:
        assert cluster.security is not None and cluster.security.token  # a fresh secret
        secret = cluster.security.token
        assert secret not in cluster.job_script()
        assert read_scheduler_file(cluster.scheduler_file).security.token == secret
        link = cluster.dashboard_link
        assert link is not None and link.startswith("http://127.0.0.1:")
        start = time.monotonic()
        cluster.scale(jobs=2)
        assert len(slurm.jobs(name)) == 2
        cluster.wait_for_workers(2, timeout=60)
        print(f"scale(jobs=2) to 2 registered workers: {time.monotonic() - start:.2f}s")
        with Executor(cluster) as e:
            assert sum(e.gather(e.map(inc, range(100)))) == sum(range(1, 101))
            names = {w["name"] for w in e.scheduler_info()["workers"].values()}
            assert set(e.run(read_option, "comm.timeouts.retire").values()) == {45}
        assert names == {f"{name}-0", f"{name}-1"}
        assert len(job_processes(cluster)) >= 2
        assert oct(os.stat(cluster.scheduler_file).st_mode & 0o777) == "0o600"
    assert slurm.jobs(name) == []
    wait_for(lambda: not job_processes(cluster), timeout=30, message="job processes gone")
    assert not os.path.exists(cluster.directory)
    outputs = list((tmp_path / "logs").iterdir())
    assert len(outputs) == 2
    for output in outputs:
        assert "token in the job: none" in output.read_text()


def test_by_default_the_scheduler_and_workers_listen_where_other_nodes_reach_them(
        slurm: SlurmTestbed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outward = contact_address("tcp://0.0.0.0:0")
    if is_loopback(parse_address(outward)[1]):
        pytest.skip("this machine has no address beyond loopback")
    secret = uuid.uuid4().hex
    monkeypatch.setenv("TASKMILL_TOKEN", secret)  # the environment's secret is the cluster's
    with SLURMCluster(cores=1, memory="1GB", job_name=unique_name(),
                      shared_directory=str(tmp_path), log_directory=str(tmp_path / "logs"),
                      job_script_prologue=['echo "token: ${TASKMILL_TOKEN:-none}"']) as cluster:
        assert cluster.security is not None and cluster.security.token == secret
        host = parse_address(outward)[1]
        assert parse_address(cluster.scheduler_address)[1] == host
        cluster.scale(jobs=1)
        cluster.wait_for_workers(1, timeout=60)
        with Executor(cluster) as e:
            assert e.submit(inc, 41).result() == 42
            (address,) = e.scheduler_info()["workers"]
        assert parse_address(address)[1] == host  # found by the job on its node
    (output,) = (tmp_path / "logs").iterdir()
    assert "token: none" in output.read_text()  # sbatch did not copy it into the job


def test_adapt_grows_on_a_burst_and_shrinks_to_zero_jobs_without_losing_keys(
        slurm: SlurmTestbed, tmp_path: Path) -> None:
    name = unique_name()
    with SLURMCluster(cores=1, memory="1GB", job_name=name, host="127.0.0.1",
                      shared_directory=str(tmp_path)) as cluster:
        cluster.adapt(minimum=0, maximum=2, target_duration="1s")
        with Executor(cluster) as e:
            futures = e.map(slow_square, range(12))
            wait_for(lambda: len(slurm.jobs(name)) == 2, timeout=60, interval=0.2,
                     message="two jobs for the burst")
            wait(futures, timeout=90)
            assert e.gather(futures) == [x * x for x in range(12)]
            # idle, holding the results: down to the worker(s) that keep them
            wait_for(lambda: len(slurm.jobs(name)) <= 1, timeout=60, interval=0.5,
                     message="shrinking after the burst")
            assert e.gather(futures) == [x * x for x in range(12)]  # no key lost
            for f in futures:
                f.release()
            del futures
            idle_since = time.monotonic()
            wait_for(lambda: not slurm.jobs(name), timeout=60, interval=0.5,
                     message="zero jobs after a minute of idleness")
            print(f"idle to zero jobs: {time.monotonic() - idle_since:.1f}s")
            assert cluster.groups == {}
    assert slurm.jobs(name) == []


def test_a_rejected_script_names_the_job_and_the_option(slurm: SlurmTestbed,
                                                         tmp_path: Path) -> None:
    name = unique_name()
    with SLURMCluster(cores=1, memory="1GB", queue="nosuchpartition", job_name=name,
                      host="127.0.0.1", shared_directory=str(tmp_path)) as cluster:
        with pytest.raises(RuntimeError) as info:
            cluster.scale(jobs=1)
        message = str(info.value)
        assert "sbatch" in message and f"{name}-0" in message
        assert "-p nosuchpartition" in message and "partition" in message.lower()
        assert cluster.groups == {}
        assert cluster.status == "running"
    assert slurm.jobs(name) == []


def test_a_job_that_dies_before_its_worker_registers_is_reported(slurm: SlurmTestbed,
                                                                  tmp_path: Path) -> None:
    name = unique_name()
    prologue = ["echo 'module: python/3.99 not found' >&2", "exit 3"]
    with SLURMCluster(cores=1, memory="1GB", job_name=name, host="127.0.0.1",
                      shared_directory=str(tmp_path), job_script_prologue=prologue) as cluster:
        cluster.scale(jobs=1)
        with pytest.raises(RuntimeError) as info:
            cluster.wait_for_workers(1, timeout=60)
        message = str(info.value)
        assert re.search(r"job \d+ left the queue before its workers registered", message)
        assert "module: python/3.99 not found" in message
        assert cluster.groups == {}
    assert slurm.jobs(name) == []


def test_close_cancels_pending_and_running_jobs(slurm: SlurmTestbed, tmp_path: Path) -> None:
    name = unique_name()
    cluster = SLURMCluster(cores=1, memory="1GB", job_name=name, host="127.0.0.1",
                           shared_directory=str(tmp_path))
    try:
        cluster.scale(jobs=3)  # two run at once on two cores; the third waits
        wait_for(lambda: job_processes(cluster) != [], timeout=30, message="a job running")
        assert len(slurm.jobs(name)) == 3
    finally:
        cluster.close()
    assert slurm.jobs(name) == []
    wait_for(lambda: not job_processes(cluster), timeout=30, message="job processes gone")


@pytest.mark.timeout(120)
def test_workers_leave_before_the_walltime_and_the_job_ends_by_itself(slurm: SlurmTestbed,
                                                                      tmp_path: Path) -> None:
    name = unique_name()
    with SLURMCluster(cores=1, memory="1GB", walltime="00:01:00", job_name=name,
                      host="127.0.0.1", shared_directory=str(tmp_path)) as cluster:
        start = time.monotonic()
        cluster.scale(jobs=1)
        cluster.wait_for_workers(1, timeout=60)
        with Executor(cluster) as e:
            assert e.submit(inc, 1).result() == 2
        # --lifetime 30s +- 7s: the worker retires, the job completes before its minute
        wait_for(lambda: not cluster.groups, timeout=55, interval=0.5,
                 message="the job ending by itself")
        assert time.monotonic() - start < 55
        assert "its workers had registered" in cluster.failures[-1]
        assert slurm.jobs(name) == []
