"""Which queued client messages leave now and which releases wait (taskmill.client.outbox)."""

from __future__ import annotations

import asyncio
import threading
import time

from taskmill.client.outbox import chunk_length, hold_releases, merge_releases
from taskmill.protocol import serialize
from taskmill.protocol.vocabulary import CancelKeys, ReleaseKeys, TaskSpec, UpdateGraph

ARGS = serialize(((1,), {}))


def graph(key: str, deps: tuple[str, ...] = (), wanted: tuple[str, ...] | None = None) -> UpdateGraph:
    spec = TaskSpec(key, "token", ARGS, deps)
    return UpdateGraph("", "client-1", (spec,), (key,) if wanted is None else wanted, {})


def release(*keys: str) -> ReleaseKeys:
    return ReleaseKeys("", "client-1", keys)


def test_a_release_waits_behind_graphs_that_do_not_name_its_keys() -> None:
    r, g1, g2 = release("a"), graph("b"), graph("c", deps=("b",))
    now, held = hold_releases([r, g1, g2])
    assert now == [g1, g2] and held == [r]


def test_a_release_goes_ahead_of_a_later_graph_that_defines_wants_or_needs_its_key() -> None:
    for later in (graph("a"), graph("x", wanted=("x", "a")), graph("y", deps=("a",))):
        r, g = release("a"), graph("b")
        now, held = hold_releases([r, g, later])
        assert now == [g, r, later] and held == []


def test_any_other_message_sends_the_held_releases_ahead_of_it_in_order() -> None:
    r1, r2, cancel, g = release("a"), release("b"), CancelKeys("", "client-1", ("z",), False), graph("c")
    now, held = hold_releases([r1, cancel, r2, g])
    assert now == [r1, cancel, g] and held == [r2]


def test_releases_alone_all_wait() -> None:
    r1, r2 = release("a"), release("b")
    assert hold_releases([r1, r2]) == ([], [r1, r2])


def test_runs_of_releases_fold_into_one_message_in_order() -> None:
    g = graph("c")
    out = merge_releases([release("a"), release("b"), g, release("d")])
    assert [type(m) for m in out] == [ReleaseKeys, UpdateGraph, ReleaseKeys]
    assert out[0].keys == ("a", "b") and out[1] is g and out[2].keys == ("d",)


def test_a_chunk_counts_tasks_and_skips_over_releases() -> None:
    releases = [release(f"r{i}") for i in range(5000)]
    graphs = [graph(f"g{i}") for i in range(3)]
    assert chunk_length([*releases, *graphs], 2) == 5002  # every release, then two tasks' worth
    assert chunk_length(releases, 2) == 5000
    assert chunk_length([], 2) == 0


class _Recorder:
    """Stands in for a session's stream: records what it is given."""

    def __init__(self) -> None:
        self.sent: list[list[object]] = []

    def send_messages(self, *msgs: object) -> None:
        self.sent.append(list(msgs))


def test_a_session_sends_a_graph_at_once_past_many_releases_which_follow_folded() -> None:
    from taskmill.client.session import RELEASE_DELAY, Session
    from taskmill.comm import run

    async def main() -> None:
        session = Session("tcp://127.0.0.1:1", asyncio.get_running_loop(), owner=None)
        stream = _Recorder()
        session._stream, session.status = stream, "running"  # type: ignore[assignment]
        session._loop_thread = threading.get_ident()
        for i in range(3000):
            session.send(release(f"r{i}"), urgent=False)
        g = graph("g")
        session.send(g)
        assert stream.sent == [[g]]  # the graph at once, none of the releases
        deadline = time.monotonic() + 10 * RELEASE_DELAY + 5
        while len(stream.sent) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(RELEASE_DELAY / 5)
        assert len(stream.sent) == 2
        (folded,) = stream.sent[1]
        assert isinstance(folded, ReleaseKeys) and folded.keys == tuple(f"r{i}" for i in range(3000))
        session._callbacks.shutdown(wait=False)

    run(main())
