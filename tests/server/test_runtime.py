"""The scheduler process freezes a large heap so full collections skip it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from taskmill.server import runtime
from taskmill.server.runtime import HeapFreezer


@pytest.fixture
def server_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(runtime, "_server_process", True)
    yield
    gc.unfreeze()


def test_freezes_as_the_graph_grows_and_thaws_when_it_is_gone(server_process: None) -> None:
    gc.unfreeze()
    freezer = HeapFreezer(every=100)
    keep = [[i] for i in range(1000)]  # some tracked objects to freeze
    freezer.observe(50)
    assert gc.get_freeze_count() == 0
    freezer.observe(120)
    assert gc.get_freeze_count() > 0 and freezer.frozen_at == 120
    freezer.observe(200)  # not yet another 100 tasks more
    assert freezer.frozen_at == 120
    freezer.observe(40)  # more than a quarter left: stay frozen
    assert gc.get_freeze_count() > 0
    freezer.observe(30)
    assert gc.get_freeze_count() == 0 and freezer.frozen_at == 0
    del keep


def test_does_nothing_in_a_user_program(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_server_process", False)
    gc.unfreeze()
    freezer = HeapFreezer(every=1)
    freezer.observe(10)
    assert gc.get_freeze_count() == 0 and freezer.frozen_at == 0


def test_embedded_schedulers_collect_young_objects_less_often_then_restore() -> None:
    from taskmill import Executor

    before = gc.get_threshold()
    with Executor(n_workers=1, threads_per_worker=1, processes=False, dashboard_port=None) as e:
        assert gc.get_threshold()[0] == max(before[0], runtime.EMBEDDED_GEN0_THRESHOLD)
        with Executor(n_workers=1, threads_per_worker=1, processes=False, dashboard_port=None):
            pass  # a second embedded cluster closing does not restore early
        assert gc.get_threshold()[0] == max(before[0], runtime.EMBEDDED_GEN0_THRESHOLD)
        assert e.submit(abs, -1).result() == 1
    assert gc.get_threshold() == before
