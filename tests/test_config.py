"""taskmill.config: precedence, set as a context manager, the old variable
names, clear errors, and options set in a client reaching its worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from taskmill import Executor, config, timeouts
from taskmill.config_store import OLD_VARIABLES, variable_name

KEY = "comm.timeouts.request"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def home(tmp_path: Path, set_environment: Any) -> Path:
    """A HOME and a system directory of our own, no TASKMILL_* option variables."""
    set_environment({"HOME": str(tmp_path / "home"), "TASKMILL_ROOT_CONFIG": str(tmp_path / "etc"),
             "TASKMILL_CONFIG": None,
             **{name: None for name in OLD_VARIABLES}, variable_name(KEY): None})
    return tmp_path


def test_precedence_set_over_environment_over_user_file_over_system_file_over_defaults(
        home: Path, set_environment: Any) -> None:
    assert config.get(KEY) == 30
    assert config.origin(KEY) == "the defaults (taskmill/taskmill.yaml)"
    system = write(home / "etc" / "taskmill.yaml", "comm:\n  timeouts:\n    request: 11\n")
    set_environment({})
    assert config.get(KEY) == 11 and config.origin(KEY) == f"the file {system}"
    user = write(home / "home" / ".config" / "taskmill" / "mine.yml", "comm: {timeouts: {request: 12}}\n")
    set_environment({})
    assert config.get(KEY) == 12 and config.origin(KEY) == f"the file {user}"
    assert config.get("comm.timeouts.data") == 300  # the rest of the section keeps its defaults
    assert config.paths()[0] == str(home / "etc") and str(home / "home" / ".config" / "taskmill") in config.paths()
    set_environment({"TASKMILL_COMM__TIMEOUTS__REQUEST": "13"})
    assert config.get(KEY) == 13
    assert config.origin(KEY) == "the environment variable TASKMILL_COMM__TIMEOUTS__REQUEST"
    with config.set({KEY: 14}):
        assert config.get(KEY) == 14 and timeouts.REQUEST.get() == 14.0
        assert config.origin(KEY) == "taskmill.config.set"
        config.refresh()  # files and environment read again; the set stays in force
        assert config.get(KEY) == 14
    assert config.get(KEY) == 13 and timeouts.REQUEST.get() == 13.0


def test_set_as_context_manager_restores_and_nests(set_options: Any) -> None:
    before = config.get("comm.timeouts")
    with config.set({"comm.timeouts.connect": 1}):
        with config.set(comm__timeouts__connect=2, scheduler__allowed_failures=5):
            assert config.get("comm.timeouts.connect") == 2
            assert config.get("scheduler.allowed-failures") == 5
        assert config.get("comm.timeouts.connect") == 1
        assert config.get("scheduler.allowed-failures") == 3
    assert config.get("comm.timeouts") == before
    with config.set({"comm.timeouts": {"data": 7}}):  # a section given as a dict: only its leaves
        assert config.get("comm.timeouts.data") == 7
        assert config.get("comm.timeouts.connect") == before["connect"]
    with pytest.raises(RuntimeError), config.set({"comm.timeouts.data": 8}):
        raise RuntimeError("the block fails")
    assert config.get("comm.timeouts.data") == 300
    set_options({"comm.timeouts.data": 9})  # a set without with stays in force (the fixture ends it)
    assert config.get("comm.timeouts.data") == 9 and timeouts.DATA.get() == 9.0


def test_an_earlier_set_ending_first_keeps_the_later_one(set_options: Any) -> None:
    first = config.set({"comm.timeouts.data": 1})
    second = config.set({"comm.timeouts.data": 2})
    first.__exit__(None, None, None)
    assert config.get("comm.timeouts.data") == 2
    second.__exit__(None, None, None)
    assert config.get("comm.timeouts.data") == 300


@pytest.mark.parametrize("name", sorted(OLD_VARIABLES))
def test_every_old_variable_sets_its_option_and_the_new_name_wins(home: Path, set_environment: Any,
                                                                    name: str) -> None:
    key = OLD_VARIABLES[name]
    set_environment({name: "0.25"})
    assert config.get(key) == 0.25
    assert config.origin(key) == f"the environment variable {name} (the old name of {key})"
    set_environment({variable_name(key): "0.5"})
    assert config.get(key) == 0.5
    set_environment({name: ""})  # empty meant unset for the old names
    assert config.get(key) == 0.5


def test_old_variables_keep_their_forms(home: Path, set_environment: Any) -> None:
    from taskmill.server.memory import MemoryThresholds
    from taskmill.server.warmup import modules_to_preload

    set_environment({"TASKMILL_MEMORY_PAUSE": "off", "TASKMILL_PRELOAD": "json, colorsys",
             "TASKMILL_STRICT": "0", "TASKMILL_LOG_LEVEL": "debug", "TASKMILL_EVENT_LOOP": "asyncio"})
    assert MemoryThresholds.from_config().pause == 0.0
    assert modules_to_preload()[-2:] == ["json", "colorsys"]
    from taskmill import config_checks as c

    assert config.read("debug.strict", c.boolean) is False
    assert config.read("logging.level", c.log_level) == "DEBUG"
    from taskmill.comm.eventloop import new_event_loop

    loop = new_event_loop()
    try:
        assert type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()


@pytest.mark.parametrize("source", ["set", "environment", "file"])
def test_a_bad_timeout_names_the_option_and_where_it_came_from(home: Path, set_environment: Any, set_options: Any,
                                                                source: str) -> None:
    if source == "set":
        set_options({"comm.timeouts.connect": "soon"})
        where = "taskmill.config.set"
    elif source == "environment":
        set_environment({"TASKMILL_COMM__TIMEOUTS__CONNECT": "soon"})
        where = "the environment variable TASKMILL_COMM__TIMEOUTS__CONNECT"
    else:
        path = write(home / "etc" / "t.yaml", "comm:\n  timeouts:\n    connect: soon\n")
        set_environment({})
        where = f"the file {path}"
    with pytest.raises(ValueError) as info:
        timeouts.CONNECT.get()
    assert str(info.value) == (f"option comm.timeouts.connect = 'soon' from {where}: give a number of "
                               f"seconds > 0 (it bounds connecting to the scheduler)")


def test_other_bad_values(set_options: Any) -> None:
    from taskmill.comm.core import configured_limits
    from taskmill.logs import setup_logging

    set_options({"comm.max-message-bytes": "lots", "logging.level": "chatty"})
    with pytest.raises(ValueError, match=r"comm.max-message-bytes = 'lots' from taskmill.config.set: "
                                         r"cannot read 'lots' as a size"):
        configured_limits()
    with pytest.raises(ValueError, match="logging.level = 'chatty' .*expected a log level"):
        setup_logging()
    set_options({"comm.max-message-bytes": "1MiB"})
    assert configured_limits().max_message_bytes == 2**20


def test_unknown_options_are_refused_with_the_nearest_names(home: Path, set_environment: Any) -> None:
    with pytest.raises(KeyError, match="no option 'comm.timeouts.conect'; did you mean comm.timeouts.connect"):
        config.set({"comm.timeouts.conect": 3})
    with pytest.raises(KeyError, match="no option 'nothing.like.this'"):
        config.get("nothing.like.this")
    with pytest.warns(UserWarning, match="TASKMILL_WORKER__MEMORY__PAWS sets no taskmill option.*"
                                         "worker.memory.pause"):
        set_environment({"TASKMILL_WORKER__MEMORY__PAWS": "0.5"})
    typo = write(Path(os.environ["TASKMILL_ROOT_CONFIG"]) / "typo.yaml", "comm:\n  timeout:\n    data: 1\n")
    with pytest.warns(UserWarning, match=f"'comm.timeout.data' in {typo} sets no taskmill option.*"
                                         "comm.timeouts.data"):
        set_environment({"TASKMILL_WORKER__MEMORY__PAWS": None})
    typo.unlink()
    # variables that are not options (the shared secret, TLS files) are left alone
    set_environment({"TASKMILL_TOKEN": "not-an-option"})
    assert "token" not in [key.split(".")[0] for key, _, _ in config.entries()]


def test_values_are_cached_until_a_change(set_options: Any) -> None:
    calls = []

    def check(value: Any) -> float:
        calls.append(value)
        return float(value)

    key = "worker.memory.monitor-interval"
    assert config.read(key, check) == config.read(key, check) == 0.1
    assert len(calls) <= 1  # checked once (zero times if another reader cached it already)
    set_options({key: 0.2})
    assert config.read(key, check) == 0.2 and calls[-1] == 0.2


def test_import_taskmill_does_not_load_donfig() -> None:
    code = "import sys, taskmill; print('donfig' in sys.modules, 'yaml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def _seen_by_worker() -> tuple[Any, Any, Any]:
    from taskmill import config as worker_config

    return (worker_config.get("comm.timeouts.data"), worker_config.origin("comm.timeouts.data"),
            worker_config.get("worker.memory.pause"))


def test_a_worker_process_sees_options_set_in_the_client(no_leaks: None, set_options: Any) -> None:
    set_options({"comm.timeouts.data": 123})
    with config.set({"worker.memory.pause": 0.75}), \
            Executor(n_workers=1, threads_per_worker=1, processes=True, set_as_default=False) as e:
        seen = e.run(_seen_by_worker)
        (data, origin, pause), = seen.values()
        assert (data, pause) == (123, 0.75)
        assert origin == "taskmill.config.set in the parent process"


def test_an_option_worker_processes_cannot_receive_is_named(set_options: Any) -> None:
    set_options({"debug.stimulus-dir": Path("/tmp")})
    with pytest.raises(TypeError, match=r"option debug.stimulus-dir = PosixPath\('/tmp'\) \(set with "
                                        r"taskmill.config.set\) cannot be passed on to worker processes"):
        config.inheritable()


def test_each_timeout_names_the_old_variable_of_its_option() -> None:
    named = [t for t in vars(timeouts).values() if isinstance(t, timeouts.Timeout)]
    assert len(named) == 9
    assert all(OLD_VARIABLES[t.env] == t.key for t in named)
