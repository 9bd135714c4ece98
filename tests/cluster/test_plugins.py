"""Plugins (``register_plugin`` / ``unregister_plugin``) on an in-process
cluster: the plugin objects are unpickled in this process, so the hooks
record what they see in module-level lists.  The process-worker cases
(``Environ``, nanny restarts) and ``--preload`` are in
``tests/multiprocess/test_plugins.py``."""

from __future__ import annotations

import os
import sys
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from taskmill import (
    Environ,
    Executor,
    SchedulerPlugin,
    UploadDirectory,
    WorkerPlugin,
    get_worker,
)
from taskmill.protocol import RemoteTraceback
from taskmill.server.worker import Worker
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)

#: (event, worker address, plugin tag) recorded by the plugins below
EVENTS: list[tuple[str, str, str]] = []
#: (key, start, finish) seen by worker transition hooks
TRANSITIONS: list[tuple[str, str, str]] = []
#: what scheduler plugins saw: (hook, detail)
SCHEDULER_EVENTS: list[tuple[str, Any]] = []


class Recorder(WorkerPlugin):
    def __init__(self, tag: str, name: str | None = None) -> None:
        self.tag = tag
        if name is not None:
            self.name = name

    def setup(self, worker: Any) -> None:
        EVENTS.append(("setup", worker.address, self.tag))
        worker.recorder_tag = self.tag

    def teardown(self, worker: Any) -> None:
        EVENTS.append(("teardown", worker.address, self.tag))


class TransitionWatcher(WorkerPlugin):
    name = "transition-watcher"

    async def setup(self, worker: Any) -> None:  # a coroutine hook is awaited
        EVENTS.append(("setup", worker.address, "watcher"))

    def transition(self, key: str, start: str, finish: str, **kwargs: Any) -> None:
        assert kwargs["stimulus_id"]
        TRANSITIONS.append((key, start, finish))


class SetupBroke(ValueError):
    pass


class Broken(WorkerPlugin):
    name = "broken"

    def setup(self, worker: Any) -> None:
        raise SetupBroke(f"no disk on {worker.address}")


class Watcher(SchedulerPlugin):
    name = "scheduler-watcher"

    def start(self, scheduler: Any) -> None:
        SCHEDULER_EVENTS.append(("start", scheduler.address))

    def close(self) -> None:
        SCHEDULER_EVENTS.append(("close", None))

    def add_worker(self, scheduler: Any, worker: str) -> None:
        SCHEDULER_EVENTS.append(("add_worker", worker))

    def remove_worker(self, scheduler: Any, worker: str) -> None:
        SCHEDULER_EVENTS.append(("remove_worker", worker))

    def transition(self, key: str, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        SCHEDULER_EVENTS.append(("transition", (key, start, finish)))

    def update_graph(self, scheduler: Any, *, client: str, keys: set[str], tasks: list[str],
                     **kwargs: Any) -> None:
        SCHEDULER_EVENTS.append(("update_graph", (client, sorted(keys), sorted(tasks))))


def inc(x: int) -> int:
    return x + 1


def recorder_tag() -> str:
    return str(getattr(get_worker(), "recorder_tag", None))


@pytest.fixture
def e() -> Iterator[Executor]:
    EVENTS.clear()
    TRANSITIONS.clear()
    SCHEDULER_EVENTS.clear()
    with Executor(n_workers=2, threads_per_worker=1, processes=False, set_as_default=False) as ex:
        yield ex


def start_worker(e: Executor) -> Worker:
    """A worker joining the executor's in-process cluster (on its loop)."""
    return e.session.sync(Worker(e.scheduler_address, nthreads=1).start())  # type: ignore[no-any-return]


def events(kind: str, tag: str) -> list[str]:
    return sorted(address for event, address, t in EVENTS if event == kind and t == tag)


def test_worker_plugin_is_set_up_on_present_workers_and_on_a_worker_that_joins_later(
        e: Executor) -> None:
    workers = sorted(e.nthreads())
    replies = e.register_plugin(Recorder("one"), name="recorder")
    assert replies == {w: "OK" for w in workers}
    assert events("setup", "one") == workers
    late = start_worker(e)
    try:
        wait_for(lambda: late.address in e.nthreads(), message="the late worker joined")
        # set up before the scheduler lets it run anything
        assert events("setup", "one") == sorted([*workers, late.address])
        f = e.submit(recorder_tag, pure=False, workers=[late.address])
        assert f.result() == "one"
    finally:
        e.session.sync(late.close())
    # the late worker's teardown ran when it closed
    assert events("teardown", "one") == [late.address]


def test_registering_a_name_again_replaces_and_unregister_tears_down(e: Executor) -> None:
    workers = sorted(e.nthreads())
    e.register_plugin(Recorder("old", name="same"))
    e.register_plugin(Recorder("new", name="same"))  # name taken from plugin.name
    assert events("teardown", "old") == workers
    assert events("setup", "new") == workers
    assert [e.submit(recorder_tag, pure=False, workers=[w]).result() for w in workers] == ["new"] * 2
    assert e.unregister_plugin("same") == "OK"
    assert events("teardown", "new") == workers
    with pytest.raises(ValueError, match="no plugin named 'same'"):
        e.unregister_plugin("same")


def test_a_setup_that_raises_fails_the_registration_with_the_original_type(e: Executor) -> None:
    workers = sorted(e.nthreads())
    with pytest.raises(SetupBroke, match="no disk on tcp://") as info:
        e.register_plugin(Broken())
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "in setup" in str(info.value.__cause__)
    assert any("plugin 'broken' failed to set up" in note for note in info.value.__notes__)
    # the workers keep working, the plugin is not kept for workers that join later
    assert sorted(e.nthreads()) == workers
    assert e.submit(inc, 1).result() == 2
    with pytest.raises(ValueError, match="no plugin named 'broken'"):
        e.unregister_plugin("broken")


def test_register_plugin_refuses_what_is_not_a_plugin(e: Executor) -> None:
    with pytest.raises(TypeError, match="WorkerPlugin, SchedulerPlugin or NannyPlugin"):
        e.register_plugin(Recorder)  # the class, not an instance


def test_worker_transition_hook_sees_the_task_states(e: Executor) -> None:
    e.register_plugin(TransitionWatcher())
    f = e.submit(inc, 41, key="inc-watched")
    assert f.result() == 42
    wait_for(lambda: ("inc-watched", "executing", "memory") in TRANSITIONS,
             message="the executing -> memory transition reached the hook")
    e.unregister_plugin("transition-watcher")
    TRANSITIONS.clear()
    assert e.submit(inc, 1, key="inc-unwatched").result() == 2
    assert not any(k == "inc-unwatched" for k, _, _ in TRANSITIONS)


def test_scheduler_plugin_sees_workers_graphs_and_transitions(e: Executor) -> None:
    assert e.register_plugin(Watcher()) == {e.scheduler_address: "OK"}
    assert SCHEDULER_EVENTS == [("start", e.scheduler_address)]
    f = e.submit(inc, 1, key="inc-scheduler-watched")
    assert f.result() == 2
    wait_for(lambda: ("transition", ("inc-scheduler-watched", "processing", "memory"))
             in SCHEDULER_EVENTS, message="processing -> memory reached the scheduler plugin")
    graphs = [d for hook, d in SCHEDULER_EVENTS if hook == "update_graph"]
    assert graphs and graphs[0][1:] == (["inc-scheduler-watched"], ["inc-scheduler-watched"])
    late = start_worker(e)
    wait_for(lambda: ("add_worker", late.address) in SCHEDULER_EVENTS, message="add_worker called")
    e.session.sync(late.close())
    wait_for(lambda: ("remove_worker", late.address) in SCHEDULER_EVENTS,
             message="remove_worker called")
    e.unregister_plugin("scheduler-watcher")
    assert SCHEDULER_EVENTS[-1] == ("close", None)


def test_upload_directory_makes_its_modules_importable_on_workers(e: Executor, tmp_path: Any) -> None:
    module = f"tm_plugdir_{uuid.uuid4().hex[:8]}"
    source = tmp_path / "project"
    source.mkdir()
    (source / f"{module}.py").write_text(textwrap.dedent("""
        def answer():
            return 42
    """))
    (source / "tests").mkdir()
    (source / "tests" / "skipped.py").write_text("")

    def use() -> tuple[int, bool]:
        import importlib

        mod = importlib.import_module(module)
        here = os.path.dirname(mod.__file__)
        return mod.answer(), os.path.exists(os.path.join(here, "tests"))

    plugin = UploadDirectory(str(source), update_path=True)
    try:
        e.register_plugin(plugin)
        assert e.submit(use, pure=False).result() == (42, False)  # "tests" is skipped
        copies = [os.path.join(w.local_directory, "project") for w in e.cluster.workers]
        assert all(os.path.exists(os.path.join(c, f"{module}.py")) for c in copies)
        e.unregister_plugin(plugin.name)
        assert not set(copies) & set(sys.path)  # taken off sys.path again
    finally:
        sys.modules.pop(module, None)


def test_upload_directory_needs_a_directory(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="needs a directory"):
        UploadDirectory(str(tmp_path / "missing"))


def test_nanny_plugins_reach_no_in_process_worker(e: Executor) -> None:
    # in-process workers have no nanny (they share this process's environment)
    assert e.register_plugin(Environ({"TM_NOT_SET": "1"})) == {}
    assert "TM_NOT_SET" not in os.environ


class FailsOnLateWorkers(WorkerPlugin):
    name = "fails-on-late-workers"

    def __init__(self, present: list[str]) -> None:
        self.present = present

    def setup(self, worker: Any) -> None:
        if worker.address not in self.present:
            raise SetupBroke("not for late workers")
        EVENTS.append(("setup", worker.address, "picky"))


def test_a_setup_failing_on_a_joining_worker_is_logged_and_the_worker_joins(
        e: Executor, caplog: pytest.LogCaptureFixture) -> None:
    workers = sorted(e.nthreads())
    e.register_plugin(FailsOnLateWorkers(workers))
    late = start_worker(e)
    try:
        wait_for(lambda: late.address in e.nthreads(), message="the late worker joined")
        wait_for(lambda: "failed to set up on joining worker" in caplog.text,
                 message="the scheduler logged the failed setup")
        assert "not for late workers" in caplog.text
        assert e.submit(inc, 1, workers=[late.address]).result() == 2
    finally:
        e.session.sync(late.close())
    assert events("setup", "picky") == workers
