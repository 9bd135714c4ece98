"""Plugins on process workers (nanny plugins restart the worker process) and
``--preload`` on the command-line programs, as real processes."""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path
from typing import Any

import psutil
import pytest

from taskmill import Environ, Executor
from taskmill.server.nanny import Nanny
from tests.conftest import wait_for
from tests.multiprocess.helpers import running, start_scheduler

pytestmark = pytest.mark.timeout(120)


def read_env(name: str) -> tuple[str | None, int]:
    return os.environ.get(name), os.getpid()


def worker_pids(e: Executor) -> set[int]:
    return {w["pid"] for w in e.scheduler_info()["workers"].values()}


def test_environ_restarts_process_workers_with_the_variables_set() -> None:
    with Executor(n_workers=1, threads_per_worker=1, processes=True, dashboard_port=None,
                  set_as_default=False) as e:
        before = worker_pids(e)
        replies = e.register_plugin(Environ({"TM_PLUGIN_VAR": 42}))
        assert list(replies.values()) == ["OK"]  # one nanny
        assert set(replies) != set(e.nthreads())  # the nanny answered, not the worker
        wait_for(lambda: len(e.nthreads()) == 1 and not worker_pids(e) & before, timeout=30,
                 message="the nanny restarted its worker")
        value, pid = e.submit(read_env, "TM_PLUGIN_VAR", pure=False).result()
        assert value == "42" and pid not in before
        assert "TM_PLUGIN_VAR" not in os.environ  # set in the nanny process, not here
        # a later restart keeps it: the nanny's environment holds it; the nanny,
        # asked again for its plugins when the new worker joins, has this very
        # one and does not restart the worker a second time
        assert e.cluster is not None
        (nanny,) = e.cluster.workers
        restarts = nanny.restarts
        e.restart()
        assert e.submit(read_env, "TM_PLUGIN_VAR", pure=False).result()[0] == "42"
        pid_after_restart = worker_pids(e)
        scheduler = e.cluster.scheduler
        wait_for(lambda: not any("nanny-plugins" in t.get_name() for t in scheduler._background),
                 timeout=30, message="the joining worker's nanny answered for its plugins")
        assert nanny.restarts == restarts + 1 and worker_pids(e) == pid_after_restart
        # a nanny that joins later gets the plugin too (and restarts its worker once)
        late = e.session.sync(Nanny(e.scheduler_address, nthreads=1).start())
        try:
            wait_for(lambda: every_worker_has(e, "TM_PLUGIN_VAR", "42"), timeout=60,
                     message="the late nanny's worker runs with the variable")
        finally:
            e.session.sync(late.close())


def every_worker_has(e: Executor, name: str, value: str) -> bool:
    try:
        seen = e.run(read_env, name)
    except (OSError, ConnectionError):  # a worker restarting just then
        return False
    return len(seen) == 2 and all(v == value for v, _ in seen.values())


PRELOAD = '''
import os

MARKERS = {markers!r}


def taskmill_setup(node):
    kind = type(node).__name__
    with open(os.path.join(MARKERS, "setup-" + kind), "w") as f:
        f.write(node.address)


async def taskmill_teardown(node):
    kind = type(node).__name__
    with open(os.path.join(MARKERS, "teardown-" + kind), "w") as f:
        f.write(node.address)
'''


def test_preload_runs_its_hooks_in_scheduler_and_worker_processes(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    module = tmp_path / "tm_preload_marker.py"
    module.write_text(textwrap.dedent(PRELOAD.format(markers=str(markers))))

    def marker(name: str) -> Path:
        return markers / name

    with running("taskmill-scheduler", "--port", "0", "--no-dashboard",
                 "--preload", str(module)) as sched:
        address = start_scheduler(sched)
        wait_for(lambda: marker("setup-Scheduler").exists(), timeout=30,
                 message="the scheduler's preload ran")
        assert marker("setup-Scheduler").read_text() == address
        with running("taskmill-worker", address, "--nthreads", "1", "--preload", str(module)) as w:
            wait_for(lambda: marker("setup-Worker").exists(), timeout=30,
                     message="the worker process's preload ran")
            worker_address = marker("setup-Worker").read_text()
            assert worker_address.startswith("tcp://")
            assert w.stop() == 0
        wait_for(lambda: marker("teardown-Worker").exists(), timeout=30,
                 message="the worker's taskmill_teardown ran")
        assert marker("teardown-Worker").read_text() == worker_address
        assert sched.stop(signal.SIGINT) == 0
    assert marker("teardown-Scheduler").read_text() == address
    assert not psutil.Process().children(recursive=True)  # nothing left running


def test_preload_that_cannot_be_imported_fails_the_start_clearly() -> None:
    with running("taskmill-scheduler", "--port", "0", "--preload", "tm_no_such_module") as sched:
        code: Any = sched.popen.wait(30)
    assert code != 0
    out = "".join(sched.lines)
    assert "--preload" in out and "tm_no_such_module" in out
