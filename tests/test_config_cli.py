"""``taskmill config``: get, list and paths, through click's CliRunner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner

from taskmill import config
from taskmill.cli.config_cli import config_command


def run(*args: str) -> Any:
    return CliRunner().invoke(config_command, list(args))


def test_get_prints_a_value_or_a_section(set_options: Any) -> None:
    set_options({"comm.timeouts.connect": 12.5})
    assert run("get", "comm.timeouts.connect").output == "12.5\n"
    section = run("get", "comm.timeouts")
    assert section.exit_code == 0
    assert "connect: 12.5\n" in section.output and "data: 300\n" in section.output
    assert run("get", "worker.preload").output == "[]\n"


def test_get_of_an_unknown_option_fails_with_the_nearest_names() -> None:
    result = run("get", "comm.timeouts.conect")
    assert result.exit_code == 1
    assert "no option 'comm.timeouts.conect'; did you mean comm.timeouts.connect" in result.output


def test_list_shows_every_option_its_value_and_origin(tmp_path: Path, set_environment: Any, set_options: Any) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "site.yaml").write_text("logging:\n  level: WARNING\n")
    set_environment({"TASKMILL_ROOT_CONFIG": str(tmp_path / "etc"), "TASKMILL_LOG_LEVEL": None,
             "TASKMILL_LOGGING__LEVEL": None, "TASKMILL_DATA_TIMEOUT": "99"})
    set_options({"worker.memory.pause": 0.5})
    lines = run("list").output.splitlines()
    assert len(lines) == len(config.entries())  # one line per option
    row = {line.split()[0]: line for line in lines}
    assert row["logging.level"].split("#")[1].strip() == f"the file {tmp_path / 'etc' / 'site.yaml'}"
    assert row["logging.level"].split()[1] == "WARNING"
    assert row["comm.timeouts.data"].split()[1] == "99"
    assert "TASKMILL_DATA_TIMEOUT (the old name of comm.timeouts.data)" in row["comm.timeouts.data"]
    assert row["worker.memory.pause"].endswith("# taskmill.config.set")
    assert row["comm.timeouts.connect"].endswith("# the defaults (taskmill/taskmill.yaml)")


def test_paths_lists_the_places_searched(tmp_path: Path, set_environment: Any) -> None:
    set_environment({"TASKMILL_ROOT_CONFIG": str(tmp_path), "HOME": str(tmp_path / "nobody")})
    lines = run("paths").output.splitlines()
    assert lines[0] == f"{tmp_path}  (exists)"
    assert lines[-1] == f"{tmp_path / 'nobody' / '.config' / 'taskmill'}  (missing)"
