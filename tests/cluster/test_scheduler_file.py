"""The scheduler file: written privately and atomically, read only when safe."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from pathlib import Path

import pytest

from taskmill import Executor
from taskmill.scheduler_file import (SchedulerFileError, read_scheduler_file,
                                             remove_scheduler_file, wait_for_scheduler_file,
                                             write_scheduler_file)
from taskmill.security import Security


def test_written_with_mode_0600_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "scheduler.json"
    old_umask = os.umask(0)  # even a permissive umask gives a private file
    try:
        write_scheduler_file(str(path), "tcp://127.0.0.1:8786", Security(token="s3cret"), "sched-1")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["token"] == "s3cret"
    contact = read_scheduler_file(str(path))
    assert contact.address == "tcp://127.0.0.1:8786"
    assert contact.security.token == "s3cret" and contact.id == "sched-1"
    assert [p.name for p in tmp_path.iterdir()] == ["scheduler.json"]  # no temporary file left


def test_without_a_token_the_file_has_none(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    write_scheduler_file(str(path), "127.0.0.1:9000", Security(), "sched-1")
    assert "token" not in json.loads(path.read_text())
    assert read_scheduler_file(str(path)).security == Security()


def test_rewriting_replaces_atomically_and_keeps_it_private(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text("old content")
    path.chmod(0o644)
    write_scheduler_file(str(path), "tcp://127.0.0.1:1", Security(token="t"), "sched-2")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_scheduler_file(str(path)).id == "sched-2"


def test_removed_only_by_the_scheduler_that_wrote_it(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    write_scheduler_file(str(path), "tcp://127.0.0.1:1", Security(), "sched-new")
    remove_scheduler_file(str(path), "sched-old")  # an older scheduler closing late
    assert path.exists()
    remove_scheduler_file(str(path), "sched-new")
    assert not path.exists()
    remove_scheduler_file(str(path), "sched-new")  # gone already: fine


def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SchedulerFileError, match=r"cannot write the scheduler file .*nowhere"):
        write_scheduler_file(str(tmp_path / "nowhere" / "s.json"), "tcp://127.0.0.1:1",
                             Security(), "x")


def test_missing_file_says_how_to_make_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(SchedulerFileError, match=rf"no scheduler file at {path}: start .*"
                                                 rf"--scheduler-file {path}"):
        read_scheduler_file(str(path))


def _private(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


@pytest.mark.parametrize("text, why", [
    ("{not json", "not JSON"),
    ('["a list"]', "\"type\" is not 'taskmill-scheduler'"),
    ('{"type": "taskmill-scheduler"}', "no \"address\""),
    ('{"type": "taskmill-scheduler", "address": "nowhere at all"}', "invalid address"),
    ('{"type": "taskmill-scheduler", "address": "tcp://h:1", "token": 5}', "\"token\" is not"),
])
def test_malformed_files_are_named_with_the_fix(tmp_path: Path, text: str, why: str) -> None:
    path = _private(tmp_path / "bad.json", text)
    with pytest.raises(SchedulerFileError) as info:
        read_scheduler_file(path)
    message = str(info.value)
    assert path in message and why in message and "--scheduler-file" in message


def test_a_directory_is_not_a_scheduler_file(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir(mode=0o700)
    with pytest.raises(SchedulerFileError, match="not a regular file"):
        read_scheduler_file(str(tmp_path / "d"))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620])
def test_a_file_others_may_access_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "s.json"
    write_scheduler_file(str(path), "tcp://127.0.0.1:1", Security(token="t"), "x")
    path.chmod(mode)
    with pytest.raises(SchedulerFileError, match=rf"{path} is accessible to other users .*"
                                                 rf"chmod 600 {path}"):
        read_scheduler_file(str(path))


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file to another user needs root")
def test_a_file_of_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    write_scheduler_file(str(path), "tcp://127.0.0.1:1", Security(token="t"), "x")
    os.chown(path, 65534, 65534)  # nobody
    with pytest.raises(SchedulerFileError, match=rf"{path} belongs to user 'nobody' .*not to you"):
        read_scheduler_file(str(path))


def test_waiting_for_a_file_that_appears(tmp_path: Path) -> None:
    path = tmp_path / "later.json"

    async def scenario() -> str:
        waiter = asyncio.ensure_future(wait_for_scheduler_file(str(path), 10.0))
        await asyncio.sleep(0.3)  # the scheduler starts after the worker
        assert not waiter.done()
        write_scheduler_file(str(path), "tcp://127.0.0.1:5", Security(), "x")
        return (await waiter).address

    assert asyncio.run(scenario()) == "tcp://127.0.0.1:5"


def test_waiting_gives_up_after_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "never.json"
    start = time.monotonic()
    with pytest.raises(SchedulerFileError, match=r"no scheduler file at .* after waiting 0.5s "
                                                 r"\(--death-timeout\)"):
        asyncio.run(wait_for_scheduler_file(str(path), 0.5))
    assert time.monotonic() - start < 5


def test_executor_refuses_a_bad_file_and_an_address_with_it(tmp_path: Path) -> None:
    path = _private(tmp_path / "bad.json", "{}")
    with pytest.raises(SchedulerFileError, match="not a taskmill scheduler file"):
        Executor(scheduler_file=path)
    with pytest.raises(ValueError, match="address or scheduler_file=, not both"):
        Executor("tcp://127.0.0.1:1", scheduler_file=path)



def test_the_file_token_comes_with_this_machines_tls_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.json"
    write_scheduler_file(str(path), "tcp://127.0.0.1:1", Security(), "x")
    assert read_scheduler_file(str(path)).security_here() is None  # the environment's settings
    write_scheduler_file(str(path), "tcp://127.0.0.1:1", Security(token="t"), "x")
    monkeypatch.setenv("TASKMILL_TOKEN", "another")
    monkeypatch.setenv("TASKMILL_TLS_CA_FILE", "/ca.pem")
    monkeypatch.setenv("TASKMILL_TLS_CERT_FILE", "/node.pem")
    here = read_scheduler_file(str(path)).security_here()
    assert here == Security(token="t", tls_ca_file="/ca.pem", tls_cert="/node.pem")
