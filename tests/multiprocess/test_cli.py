"""Scheduler and workers started from the command line as separate processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import taskmill
from taskmill import Executor
from tests.conftest import wait_for
from tests.multiprocess.helpers import BIN, Proc, running, start_scheduler

pytestmark = pytest.mark.timeout(120)


def slow_inc(x: int) -> int:
    time.sleep(0.2)
    return x + 1


def worker_pids(e: Executor) -> dict[str, int]:
    return {a: w["pid"] for a, w in e.scheduler_info()["workers"].items()}


def test_scheduler_and_two_workers_from_the_command_line() -> None:
    with running("taskmill-scheduler", "--port", "0") as sched:
        address = start_scheduler(sched)
        with running("taskmill-worker", address, "--nthreads", "1") as w1, \
                running("dworker", address, "--nthreads", "1") as w2:
            for w in (w1, w2):
                w.wait_for_line(r"worker listening at tcp://")
                w.wait_for_line(r"registered with scheduler " + address)
            sched.wait_for_line(r"worker tcp://\S+ joined")
            with Executor(address) as e:
                wait_for(lambda: len(e.nthreads()) == 2, message="two workers registered")
                a = e.submit(lambda x: x + 1, 1)
                b = e.submit(lambda x: x + 1, 100)
                assert e.submit(lambda x, y: x + y, a, b).result() == 103
                assert sorted(e.gather(e.map(slow_inc, range(10)))) == list(range(1, 11))
            assert w1.stop() == 0 and w2.stop() == 0
        assert sched.stop(signal.SIGINT) == 0


def test_worker_killed_mid_computation_results_stay_right() -> None:
    with running("taskmill-scheduler", "--port", "0") as sched:
        address = start_scheduler(sched)
        with running("taskmill-worker", address, "--nthreads", "1"), \
                running("taskmill-worker", address, "--nthreads", "1"):
            with Executor(address) as e:
                wait_for(lambda: len(e.nthreads()) == 2, timeout=30, message="two workers")
                futures = e.map(slow_inc, range(30))
                wait_for(lambda: sum(f.done() for f in futures) >= 3, timeout=30,
                         message="some tasks done")
                victim = next(iter(worker_pids(e).values()))
                os.kill(victim, signal.SIGKILL)
                assert e.gather(futures) == list(range(1, 31))
                # the nanny starts a new worker process in its place
                wait_for(lambda: len(e.nthreads()) == 2 and victim not in worker_pids(e).values(),
                         timeout=30, message="nanny restarted the killed worker")


def test_scheduler_refuses_public_interface_without_insecure() -> None:
    out = subprocess.run([os.path.join(BIN, "taskmill-scheduler"), "--host", "0.0.0.0", "--port", "0"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "--insecure" in out.stderr and "0.0.0.0" in out.stderr


def test_worker_with_bad_scheduler_address_fails_clearly() -> None:
    out = subprocess.run([os.path.join(BIN, "taskmill-worker"), "not an address", "--no-nanny"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "SCHEDULER_ADDRESS" in out.stderr


@pytest.mark.parametrize("alias", ["dcenter", "dscheduler", "dworker"])
def test_aliases_exist(alias: str) -> None:
    out = subprocess.run([os.path.join(BIN, alias), "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "Usage" in out.stdout


def test_scheduler_gone_fails_pending_futures() -> None:
    """After the client's reconnect window (here 1 s; a scheduler restarted
    within it resumes the work: tests/multiprocess/test_scheduler_restart.py)."""
    with running("taskmill-scheduler", "--port", "0") as sched, \
            taskmill.config.set({"comm.timeouts.client-reconnect": 1}):
        address = start_scheduler(sched)
        with running("taskmill-worker", address, "--nthreads", "1"):
            e = Executor(address)
            try:
                wait_for(lambda: len(e.nthreads()) == 1, timeout=30, message="worker")
                f = e.submit(time.sleep, 30, pure=False)
                os.kill(sched.popen.pid, signal.SIGKILL)
                start = time.monotonic()
                with pytest.raises(ConnectionError, match="scheduler"):
                    f.result(timeout=30)
                assert time.monotonic() - start < 30
                with pytest.raises(RuntimeError):
                    e.submit(slow_inc, 1)
            finally:
                e.close()


def test_embedded_cluster_leaves_no_process_when_program_is_killed(tmp_path: object) -> None:
    script = os.path.join(str(tmp_path), "prog.py")
    with open(script, "w") as fh:
        fh.write(
            "import os, sys, time\n"
            "from taskmill import Executor\n"
            "e = Executor(n_workers=2, threads_per_worker=1)\n"
            "pids = [w['pid'] for w in e.scheduler_info()['workers'].values()]\n"
            "print('PIDS', *pids, flush=True)\n"
            "time.sleep(600)\n")
    proc = subprocess.Popen([os.path.join(BIN, "python"), script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PIDS"), line
        pids = [int(p) for p in line.split()[1:]]
        assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
        proc.kill()
        proc.wait()
        wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                                 for p in pids), timeout=15, message="worker processes gone")
    finally:
        if proc.poll() is None:
            proc.kill()


def gpu_step(x: int) -> int:
    time.sleep(0.05)
    return x * 10


def test_worker_resources_from_the_command_line_reach_the_scheduler() -> None:
    with running("taskmill-scheduler", "--port", "0") as sched:
        address = start_scheduler(sched)
        with running("taskmill-worker", address, "--nthreads", "2",
                     "--resources", "GPU=2,MEMORY=10e9") as w1, \
                running("taskmill-worker", address, "--nthreads", "1", "--no-nanny") as w2:
            gpu_address = w1.wait_for_line(r"worker listening at (tcp://\S+)").group(1)
            w2.wait_for_line(r"registered with scheduler")
            sched.wait_for_line(r"worker " + gpu_address + r" joined .*resources GPU=2, MEMORY=1e\+10")
            with Executor(address) as e:
                wait_for(lambda: len(e.nthreads()) == 2, timeout=30, message="two workers")
                workers = e.scheduler_info()["workers"]
                assert workers[gpu_address]["resources"] == {"GPU": 2.0, "MEMORY": 1e10}
                (other,) = set(workers) - {gpu_address}
                assert workers[other]["resources"] == {}
                futures = e.map(gpu_step, range(6), resources={"GPU": 1, "MEMORY": 4e9})
                assert e.gather(futures) == [x * 10 for x in range(6)]
                assert {w for ws in e.who_has(futures).values() for w in ws} == {gpu_address}


def test_malformed_worker_resources_fail_clearly() -> None:
    out = subprocess.run([os.path.join(BIN, "taskmill-worker"), "127.0.0.1:8786", "--resources", "GPU:2"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "--resources" in out.stderr and "expected NAME=AMOUNT" in out.stderr, out.stderr


def test_workers_give_up_on_a_scheduler_that_stays_away(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker retries for TASKMILL_RECONNECT_TIMEOUT, then exits; its nanny
    does not respawn it against the missing scheduler but stops too."""
    monkeypatch.setenv("TASKMILL_RECONNECT_TIMEOUT", "2")
    with running("taskmill-scheduler", "--port", "0") as sched:
        address = start_scheduler(sched)
        with running("taskmill-worker", address, "--nthreads", "1") as worker:
            worker.wait_for_line("registered with scheduler")
            children = psutil.Process(worker.popen.pid).children(recursive=True)
            assert len(children) == 1  # the worker process under its nanny
            os.kill(sched.popen.pid, signal.SIGKILL)
            start = time.monotonic()
            worker.wait_for_line("trying to reconnect for 2s")
            assert worker.popen.wait(timeout=30) is not None  # the whole command ended
            assert time.monotonic() - start < 30
            assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
            assert sum("registered with scheduler" in line for line in worker.lines) == 1


@contextlib.contextmanager
def public_cluster() -> Iterator[tuple[str, Proc]]:
    """A scheduler on every interface (``--host 0.0.0.0``) with one worker;
    yields the scheduler's loopback address and process, after a task ran."""
    with running("taskmill-scheduler", "--host", "0.0.0.0", "--port", "0") as sched:
        address = "tcp://127.0.0.1:" + start_scheduler(sched).rsplit(":", 1)[1]
        with running("taskmill-worker", address, "--nthreads", "1") as w:
            w.wait_for_line(r"registered with scheduler")
            with Executor(address) as e:
                assert e.submit(lambda x: x + 1, 41).result() == 42
            yield address, sched
            assert w.stop() == 0
        assert sched.stop(signal.SIGINT) == 0


def test_a_shared_token_admits_its_holders_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """With $TASKMILL_TOKEN the programs may listen beyond loopback; clients and
    workers must prove they know it."""
    monkeypatch.setenv("TASKMILL_TOKEN", "cluster-secret")
    with public_cluster() as (address, sched):
        monkeypatch.setenv("TASKMILL_TOKEN", "a-guess")
        with pytest.raises(OSError, match="refused our token"):
            Executor(address, timeout=10)
        monkeypatch.delenv("TASKMILL_TOKEN")
        with pytest.raises(OSError, match=r"requires a token: set \$TASKMILL_TOKEN"):
            Executor(address, timeout=10)
        sched.wait_for_line(r"refused a connection from")


def test_tls_certificates_let_the_programs_listen_beyond_loopback(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.tls_certs import make_ca, make_node

    make_ca(tmp_path, "cluster")
    cert, key = make_node(tmp_path, "cluster", "node")
    monkeypatch.setenv("TASKMILL_TLS_CA_FILE", str(tmp_path / "cluster-ca.pem"))
    monkeypatch.setenv("TASKMILL_TLS_CERT_FILE", str(cert))
    monkeypatch.setenv("TASKMILL_TLS_KEY_FILE", str(key))
    with public_cluster():
        pass  # the scheduler and the worker talked over TLS, and a task ran
