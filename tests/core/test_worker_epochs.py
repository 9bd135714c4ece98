"""The worker state machine echoes the scheduler's ``epoch`` (``seen``).

Every ``ComputeTask``, ``FreeKeys`` and ``AcquireReplicas`` carries the
scheduler's ``epoch``; what the worker tells the scheduler carries the last
one it handled, and ``MissingData`` the one it had when it asked the peer (see
"Epochs" in :mod:`taskmill.core.worker.state`).
"""

from __future__ import annotations

import dataclasses

from taskmill.core.worker.events import FetchFailed, FetchSucceeded
from taskmill.protocol.vocabulary import (
    AcquireReplicas,
    AddKeys,
    FreeKeys,
    MissingData,
    ReleasedKeys,
    TaskErred,
    TaskFinished,
)
from tests.core.test_worker_state import ME, A, compute, err, of, ok, ws


def test_results_carry_the_epoch_of_the_last_scheduler_message_handled() -> None:
    w = ws(nthreads=2)
    w.handle(dataclasses.replace(compute("x"), epoch=3), dataclasses.replace(compute("y"), epoch=4))
    w.handle(FreeKeys("free", ME, ("nothing",), 6))
    assert w.epoch == 6
    (done,) = of(w.handle(ok("x")), TaskFinished)
    assert done.seen == 6
    (failed,) = of(w.handle(err("y")), TaskErred)
    assert failed.seen == 6
    (again,) = of(w.handle(dataclasses.replace(compute("x"), epoch=9)), TaskFinished)
    assert again.seen == 9  # answered at once: already in memory


def test_copies_and_declines_carry_the_epoch_of_the_request() -> None:
    w = ws()
    w.handle(dataclasses.replace(compute("x"), epoch=2))
    w.handle(ok("x"))
    cmds = w.handle(AcquireReplicas("acq", ME, {"x": (A,)}, {"x": 8}, 5))
    assert cmds == [AddKeys("acq", ME, {"x": 8}, 5)]
    w.handle(dataclasses.replace(compute("z"), epoch=6))  # executing here
    cmds = w.handle(AcquireReplicas("acq", ME, {"z": (A,)}, {"z": 8}, 7))
    assert cmds == [ReleasedKeys("acq", ME, ("z",), 7)]
    w.handle(AcquireReplicas("acq", ME, {"c": (A,)}, {"c": 8}, 8))  # fetched from A
    cmds = w.handle(FreeKeys("free", ME, ("z",), 9), FetchSucceeded("got", A, ("c",), {"c": 8}))
    assert of(cmds, AddKeys) == [AddKeys("got", ME, {"c": 8}, 9)]


def test_missing_data_carries_the_epoch_it_had_when_it_asked() -> None:
    w = ws()
    w.handle(dataclasses.replace(compute("y", {"d": (A,)}), epoch=4))  # asks A for d
    w.handle(FreeKeys("free", ME, ("other",), 8))  # handled while the request is out
    (missing,) = of(w.handle(FetchSucceeded("got", A, ("d",), {})), MissingData)
    assert missing == MissingData("got", ME, A, ("d",), 4)
    assert w.epoch == 8


def test_a_failed_fetch_reports_the_epoch_it_had_when_it_asked() -> None:
    w = ws()
    w.handle(dataclasses.replace(compute("y", {"d": (A,)}), epoch=4))
    w.handle(FreeKeys("free", ME, ("other",), 8))
    cmds = w.handle(FetchFailed("failed", A, ("d",), "OSError: unreachable"))
    assert of(cmds, MissingData) == [MissingData("failed", ME, A, ("d",), 4)]
