"""The command line for clusters, as real processes: the scheduler file, a
worker's lifetime, death timeout, name and local directory, and the
``taskmill`` umbrella command."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from taskmill import Executor, wait
from tests.conftest import wait_for
from tests.multiprocess.helpers import BIN, Proc, running, start_scheduler

pytestmark = pytest.mark.timeout(120)

#: `taskmill` is also `python -m taskmill` (the console script exists once installed)
TASKMILL = ("python", "-m", "taskmill")


def workers_of(e: Executor) -> dict[str, dict[str, object]]:
    return e.scheduler_info()["workers"]


def test_scheduler_file_carries_address_and_token_to_workers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker knows neither the address nor the token: both come from the
    file, which is private and disappears with the scheduler."""
    path = tmp_path / "scheduler.json"
    monkeypatch.setenv("TASKMILL_TOKEN", "file-secret")
    with running(*TASKMILL, "scheduler", "--port", "0", "--no-dashboard",
                 "--scheduler-file", str(path)) as sched:
        address = start_scheduler(sched)
        monkeypatch.delenv("TASKMILL_TOKEN")  # the worker starts without it
        sched.wait_for_line(f"scheduler file: {path}")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        content = json.loads(path.read_text())
        assert content["address"] == address and content["token"] == "file-secret"
        with running(*TASKMILL, "worker", "--scheduler-file", str(path), "--nthreads", "1") as w:
            w.wait_for_line("registered with scheduler " + address)
            with Executor(scheduler_file=str(path)) as e:  # the file's token, as the worker
                assert e.submit(lambda x: x + 1, 41).result() == 42
            assert w.stop() == 0
        assert sched.stop(signal.SIGINT) == 0
    assert not path.exists()


def test_without_the_file_a_client_lacks_the_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "scheduler.json"
    monkeypatch.setenv("TASKMILL_TOKEN", "file-secret")
    with running("taskmill-scheduler", "--port", "0", "--no-dashboard",
                 "--scheduler-file", str(path)) as sched:
        address = start_scheduler(sched)
        monkeypatch.delenv("TASKMILL_TOKEN")
        sched.wait_for_line("scheduler file:")
        with pytest.raises(OSError, match="requires a token"):
            Executor(address, timeout=10)
        with Executor(scheduler_file=str(path)) as e:
            assert e.scheduler_info()["address"] == address


def test_a_scheduler_with_a_file_and_no_token_makes_a_fresh_secret(tmp_path: Path) -> None:
    """Secure by default: the file carries a secret nobody set, which the
    worker and the Executor read from it; a client without the file is refused."""
    path = tmp_path / "scheduler.json"
    assert "TASKMILL_TOKEN" not in os.environ
    with running("taskmill-scheduler", "--port", "0", "--no-dashboard",
                 "--scheduler-file", str(path)) as sched:
        address = start_scheduler(sched)
        sched.wait_for_line("scheduler file:")
        assert len(json.loads(path.read_text())["token"]) >= 32
        with running("taskmill-worker", "--scheduler-file", str(path), "--nthreads", "1",
                     "--no-nanny") as w:
            w.wait_for_line("registered with scheduler")
            with Executor(scheduler_file=str(path)) as e:
                assert e.scheduler_address == address
                assert e.submit(lambda x: x * 2, 21).result() == 42
            with pytest.raises(OSError, match="requires a token"):
                Executor(address, timeout=10)


def test_a_worker_started_first_waits_for_the_scheduler_file(tmp_path: Path) -> None:
    path = tmp_path / "later.json"
    with running("taskmill-worker", "--scheduler-file", str(path), "--nthreads", "1",
                 "--death-timeout", "60s") as w:
        w.wait_for_line(f"waiting up to 60s for the scheduler file {path}")
        with running("taskmill-scheduler", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(path)) as sched:
            address = start_scheduler(sched)
            w.wait_for_line("registered with scheduler " + address, timeout=30)
            assert w.stop() == 0


def test_worker_whose_scheduler_file_never_appears_exits_within_its_death_timeout(
        tmp_path: Path) -> None:
    path = tmp_path / "never.json"
    start = time.monotonic()
    out = subprocess.run([os.path.join(BIN, "taskmill-worker"), "--scheduler-file", str(path),
                          "--death-timeout", "2s"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert time.monotonic() - start < 15
    assert f"no scheduler file at {path} after waiting 2s (--death-timeout)" in out.stderr, out.stderr


@pytest.mark.parametrize("nanny", [True, False], ids=["nanny", "no-nanny"])
def test_worker_whose_scheduler_never_appears_exits_within_its_death_timeout(nanny: bool) -> None:
    address = "tcp://127.0.0.1:9"  # the discard port: nothing listens
    start = time.monotonic()
    out = subprocess.run([os.path.join(BIN, "taskmill-worker"), address, "--death-timeout", "2s",
                          *(() if nanny else ("--no-nanny",))],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert time.monotonic() - start < 15
    assert (f"scheduler {address} unreachable for 2s (--death-timeout; default: option "
            "comm.timeouts.reconnect, $TASKMILL_RECONNECT_TIMEOUT)") in out.stderr, out.stderr


def test_worker_with_another_token_fails_at_once_not_after_its_death_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMILL_TOKEN", "the-cluster's")
    with running("taskmill-scheduler", "--port", "0", "--no-dashboard") as sched:
        address = start_scheduler(sched)
        monkeypatch.setenv("TASKMILL_TOKEN", "a-guess")
        start = time.monotonic()
        out = subprocess.run([os.path.join(BIN, "taskmill-worker"), address, "--no-nanny",
                              "--death-timeout", "60s"], capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "refused our token" in out.stderr, out.stderr
        assert time.monotonic() - start < 30


def test_worker_that_loses_its_scheduler_exits_after_its_death_timeout() -> None:
    with running("taskmill-scheduler", "--port", "0", "--no-dashboard") as sched:
        address = start_scheduler(sched)
        with running("taskmill-worker", address, "--death-timeout", "2s") as w:
            w.wait_for_line("registered with scheduler")
            os.kill(sched.popen.pid, signal.SIGKILL)
            start = time.monotonic()
            w.wait_for_line("trying to reconnect for 2s")
            assert w.popen.wait(timeout=30) is not None
            assert time.monotonic() - start < 15
            w.wait_for_line(r"unreachable for 2s \(--death-timeout.*worker shuts down")


def test_a_worker_leaves_at_the_end_of_its_lifetime_with_its_data_moved() -> None:
    with running("taskmill-scheduler", "--port", "0", "--no-dashboard") as sched:
        address = start_scheduler(sched)
        with running("taskmill-worker", address, "--nthreads", "1", "--name", "stays") as stays, \
                Executor(address) as e:
            stays.wait_for_line("registered with scheduler")
            with running("taskmill-worker", address, "--nthreads", "1", "--name", "leaves",
                         "--lifetime", "2s") as leaves:
                wait_for(lambda: len(workers_of(e)) == 2, message="both workers joined")
                leaving = next(a for a, w in workers_of(e).items() if w["name"] == "leaves")
                data = e.submit(lambda: list(range(1000)), workers=[leaving], pure=False)
                wait([data])
                assert e.who_has([data])[data.key] == [leaving]
                assert leaves.popen.wait(timeout=30) == 0  # the whole command ended on its own
                leaves.wait_for_line("worker lifetime of 2s reached: retiring")
                assert sum("registered with scheduler" in line for line in leaves.lines) == 1
            wait_for(lambda: list(workers_of(e)) != [leaving] and len(workers_of(e)) == 1,
                     message="only the other worker is left")
            # restricted to the worker that left, the task could not run again elsewhere:
            # the value was moved
            assert data.result() == list(range(1000))
            assert e.who_has([data])[data.key] == list(workers_of(e))


def test_lifetime_from_the_option_worker_lifetime_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMILL_WORKER__LIFETIME__DURATION", "1s")
    with running("taskmill-scheduler", "--port", "0", "--no-dashboard") as sched:
        address = start_scheduler(sched)
        with running("taskmill-worker", address, "--no-nanny") as w:
            assert w.popen.wait(timeout=30) == 0
            w.wait_for_line("worker lifetime of 1s reached: retiring")


def test_a_bad_duration_is_refused_naming_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    out = subprocess.run([os.path.join(BIN, "taskmill-worker"), "127.0.0.1:8786",
                          "--lifetime", "soon"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "--lifetime" in out.stderr and "write e.g. '90s', '5m', '1h'" in out.stderr
    monkeypatch.setenv("TASKMILL_WORKER__LIFETIME__STAGGER", "a while")
    out = subprocess.run([os.path.join(BIN, "taskmill-worker"), "127.0.0.1:8786"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "worker.lifetime.stagger" in out.stderr and "--lifetime-stagger" in out.stderr, out.stderr


def test_a_taken_worker_name_is_refused_clearly() -> None:
    with running("taskmill-scheduler", "--port", "0", "--no-dashboard") as sched:
        address = start_scheduler(sched)
        with running("taskmill-worker", address, "--name", "alice") as first:
            first.wait_for_line("registered with scheduler")
            out = subprocess.run([os.path.join(BIN, "taskmill-worker"), address, "--name", "alice",
                                  "--death-timeout", "5s"], capture_output=True, text=True, timeout=60)
            assert out.returncode != 0
            assert "the name 'alice' is already taken by the worker at tcp://" in out.stderr, out.stderr
            assert "give each worker a unique --name" in out.stderr


def test_a_restarted_worker_keeps_its_name() -> None:
    """The nanny's next worker process may take the name before the scheduler
    has removed its killed predecessor."""
    with running("taskmill-scheduler", "--port", "0", "--no-dashboard") as sched:
        address = start_scheduler(sched)
        with running("taskmill-worker", address, "--name", "bob") as w, Executor(address) as e:
            pid = int(w.wait_for_line(r"watching worker \S+ \(pid (\d+)\)").group(1))
            wait_for(lambda: len(workers_of(e)) == 1, message="worker joined")
            ((killed, info),) = workers_of(e).items()
            assert info["pid"] == pid
            os.kill(pid, signal.SIGKILL)

            def replaced() -> bool:
                now = workers_of(e)
                return killed not in now and [i["name"] for i in now.values()] == ["bob"]

            try:
                wait_for(replaced, timeout=30, message="a new worker named bob")
            except AssertionError:
                raise AssertionError(f"workers {workers_of(e)}\nscheduler:\n{''.join(sched.lines)}"
                                     f"\nworker:\n{''.join(w.lines)}") from None
            assert "already taken" not in "".join(w.lines)


@pytest.mark.parametrize("how", ["flag", "option"])
def test_local_directory_holds_each_worker_process_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    base = tmp_path / "scratch"
    if how == "option":  # the option worker.local-directory, from the environment
        monkeypatch.setenv("TASKMILL_WORKER__LOCAL_DIRECTORY", str(base))
    flag = ("--local-directory", str(base)) if how == "flag" else ()
    with running("taskmill-scheduler", "--port", "0", "--no-dashboard") as sched:
        address = start_scheduler(sched)
        with running("taskmill-worker", address, *flag) as w, Executor(address) as e:
            w.wait_for_line("registered with scheduler")
            wait_for(lambda: len(workers_of(e)) == 1, message="worker joined")
            from taskmill import get_worker

            where = e.submit(lambda: get_worker().local_directory, pure=False).result()
            assert Path(where).parent == base
            assert w.stop() == 0
        assert list(base.iterdir()) == []  # the nanny removed its worker's directory


def test_local_directory_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = subprocess.run([os.path.join(BIN, "taskmill-worker"), "127.0.0.1:8786",
                          "--local-directory", str(blocker / "sub")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "--local-directory" in out.stderr and str(blocker / "sub") in out.stderr


@pytest.mark.parametrize("problem", ["group-readable", "malformed"])
def test_worker_with_a_bad_scheduler_file_names_it_and_the_fix(tmp_path: Path, problem: str) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"type": "taskmill-scheduler", "address": "tcp://127.0.0.1:1"}'
                    if problem == "group-readable" else "garbage")
    path.chmod(0o640 if problem == "group-readable" else 0o600)
    out = subprocess.run([os.path.join(BIN, "taskmill-worker"), "--scheduler-file", str(path)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and str(path) in out.stderr
    assert ("chmod 600" if problem == "group-readable" else "not a taskmill scheduler file") \
        in out.stderr


def test_worker_needs_an_address_or_a_scheduler_file_not_both(tmp_path: Path) -> None:
    for args in ((), ("127.0.0.1:8786", "--scheduler-file", str(tmp_path / "s.json"))):
        out = subprocess.run([os.path.join(BIN, "taskmill-worker"), *args],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 2 and "--scheduler-file PATH, not both and not neither" in out.stderr


def test_scheduler_file_in_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "s.json"
    out = subprocess.run([os.path.join(BIN, "taskmill-scheduler"), "--port", "0",
                          "--no-dashboard", "--scheduler-file", str(path)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert f"cannot write the scheduler file {path}" in out.stderr, out.stderr


def test_scheduler_on_every_interface_writes_a_reachable_address(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.json"
    monkeypatch.setenv("TASKMILL_TOKEN", "t")
    with running("taskmill-scheduler", "--host", "0.0.0.0", "--port", "0", "--no-dashboard",
                 "--scheduler-file", str(path)) as sched:
        sched.wait_for_line("scheduler file:")
        assert not json.loads(path.read_text())["address"].startswith("tcp://0.0.0.0:")
