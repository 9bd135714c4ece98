"""Scheduler state machine: graphs running to completion, queueing, placement."""

from __future__ import annotations

from scheduler_helpers import Sched, erred, finished, join, of, submit, task

from taskmill.core.scheduler.policy import SATURATION
from taskmill.protocol.vocabulary import (
    ComputeTask,
    FreeKeys,
    Heartbeat,
    KeyErred,
    KeyInMemory,
    KeyLost,
    TaskSpec,
    UpdateGraph,
)
from taskmill.core.scheduler.state import SchedulerState


def test_single_task_runs_and_reports():
    s = Sched("tcp://a")
    cmds = s(submit([task("inc-1")], wanted=["inc-1"]))
    (ct,) = of(cmds, ComputeTask)
    assert ct.worker == "tcp://a" and ct.key == "inc-1"
    assert ct.func == "<func inc>" and ct.who_has == {} and ct.priority == (0,)
    cmds = s(finished("tcp://a", "inc-1", nbytes=28))
    (rep,) = of(cmds, KeyInMemory)
    assert (rep.client, rep.key, rep.who_has, rep.type_name) == ("c1", "inc-1", ("tcp://a",), "int")
    assert s.state.task_state("inc-1") == "memory"
    assert s.state.who_has() == {"inc-1": ["tcp://a"]}
    assert s.state.has_what() == {"tcp://a": ["inc-1"]}
    info = s.state.workers_info()["tcp://a"]
    assert info["nbytes"] == 28 and info["in_memory"] == 1 and info["processing"] == 0


def test_chain_runs_in_order_and_frees_intermediates():
    s = Sched("tcp://a")
    cmds = s(submit([task("x-1"), task("y-1", "x-1"), task("z-1", "y-1")], wanted=["z-1"]))
    assert s.computes(cmds) == {"x-1": "tcp://a"}
    assert s.state.task_state("y-1") == "waiting"
    cmds = s(finished("tcp://a", "x-1"))
    (ct,) = of(cmds, ComputeTask)
    assert ct.key == "y-1" and ct.who_has == {"x-1": ("tcp://a",)} and ct.nbytes == {"x-1": 8}
    assert not of(cmds, FreeKeys)  # x still needed by y
    cmds = s(finished("tcp://a", "y-1"))
    assert s.computes(cmds) == {"z-1": "tcp://a"}
    # x no longer needed: y is in memory and nobody wants x
    # (sent first, so it comes before the ComputeTask: its epoch is one less)
    ct = of(cmds, ComputeTask)[0]
    assert of(cmds, FreeKeys) == [FreeKeys(cmds[0].stimulus_id, "tcp://a", ("x-1",), ct.epoch - 1)]
    assert s.state.task_state("x-1") == "released"  # kept as lineage
    cmds = s(finished("tcp://a", "z-1"))
    assert s.freed(cmds) == {"tcp://a": {"y-1"}}
    assert [r.key for r in of(cmds, KeyInMemory)] == ["z-1"]
    assert s.state.has_what() == {"tcp://a": ["z-1"]}


def test_diamond():
    s = Sched("tcp://a", "tcp://b")
    g = [task("a-1"), task("b-1", "a-1"), task("c-1", "a-1"), task("d-1", "b-1", "c-1")]
    cmds = s(submit(g, wanted=["d-1"]))
    assert s.computes(cmds) == {"a-1": "tcp://a"}
    cmds = s(finished("tcp://a", "a-1"))
    placed = s.computes(cmds)
    assert set(placed) == {"b-1", "c-1"}
    # data locality: both go where a-1 lives while it has free slots
    assert set(placed.values()) == {"tcp://a"}
    s(finished("tcp://a", "b-1"))
    assert s.state.task_state("d-1") == "waiting"
    cmds = s(finished("tcp://a", "c-1"))
    (ct,) = of(cmds, ComputeTask)
    assert ct.key == "d-1" and set(ct.who_has) == {"b-1", "c-1"}
    assert s.freed(cmds) == {"tcp://a": {"a-1"}}
    cmds = s(finished("tcp://a", "d-1"))
    assert s.freed(cmds) == {"tcp://a": {"b-1", "c-1"}}
    assert [r.key for r in s.reports()] == ["d-1"]


def test_unwanted_dangling_task_is_forgotten():
    s = Sched("tcp://a")
    cmds = s(submit([task("x-1")], wanted=[]))
    assert cmds == []
    assert s.state.task_state("x-1") is None


def test_queueing_when_workers_full_and_popping_in_priority_order():
    s = Sched("tcp://a")  # 1 thread -> SATURATION slots for normal tasks
    tasks = [task(f"t-{i}", priority=(10 - i,)) for i in range(6)]
    cmds = s(submit(tasks, wanted=[t.key for t in tasks]))
    first = [c.key for c in of(cmds, ComputeTask)]
    assert first == ["t-5", "t-4"][:SATURATION]
    assert sum(1 for t in s.state.tasks.values() if t.state == "queued") == 6 - SATURATION
    order = list(first)
    while True:
        proc = s.processing()
        if not proc:
            break
        key = sorted(proc)[0]
        cmds = s(finished("tcp://a", key))
        order += [c.key for c in of(cmds, ComputeTask)]
    assert order == [f"t-{i}" for i in range(5, -1, -1)]


def test_ties_broken_by_submission_order():
    s = Sched()
    s(submit([task("t-b"), task("t-a")], wanted=["t-a", "t-b"]))
    s(submit([task("t-c")], wanted=["t-c"]))
    assert all(t.state == "queued" for t in s.state.tasks.values())
    cmds = s(join("tcp://a", nthreads=2))  # 4 slots
    assert [c.key for c in of(cmds, ComputeTask)] == ["t-b", "t-a", "t-c"]


def test_tasks_wait_for_a_worker_then_run():
    s = Sched()
    s(submit([task("x-1")], wanted=["x-1"]))
    assert s.state.task_state("x-1") == "queued"
    cmds = s(join("tcp://a"))
    assert s.computes(cmds) == {"x-1": "tcp://a"}


def test_least_occupied_worker_for_root_tasks():
    s = Sched(("tcp://a", 1), ("tcp://b", 4))
    cmds = s(submit([task(f"t-{i}") for i in range(4)], wanted=[f"t-{i}" for i in range(4)]))
    placed = list(s.computes(cmds).values())
    assert placed.count("tcp://b") >= 3


def test_data_locality_prefers_holder_of_most_bytes():
    s = Sched(("tcp://a", 4), ("tcp://b", 4))
    s(submit([task("big-1", workers=("tcp://a",)), task("small-1", workers=("tcp://b",))],
             wanted=["big-1", "small-1"]))
    s(finished("tcp://a", "big-1", nbytes=10_000), finished("tcp://b", "small-1", nbytes=10))
    cmds = s(submit([task("f-1", "big-1", "small-1")], wanted=["f-1"]))
    assert s.computes(cmds) == {"f-1": "tcp://a"}
    cmds = s(submit([task("g-1", "small-1")], wanted=["g-1"]))
    assert s.computes(cmds) == {"g-1": "tcp://b"}


def test_locality_falls_back_when_holder_is_full():
    s = Sched("tcp://a", "tcp://b")
    s(submit([task("x-1", workers=("tcp://a",))], wanted=["x-1"]))
    s(finished("tcp://a", "x-1"))
    cmds = s(submit([task(f"y-{i}", "x-1") for i in range(4)], wanted=[f"y-{i}" for i in range(4)]))
    placed = s.computes(cmds)
    assert list(placed.values()).count("tcp://a") == SATURATION
    assert list(placed.values()).count("tcp://b") == 4 - SATURATION


def test_big_inputs_wait_for_their_busy_holder():
    s = Sched("tcp://a", "tcp://b")
    s(submit([task("big-1", workers=("tcp://a",))], wanted=["big-1"]))
    s(finished("tcp://a", "big-1", nbytes=100_000_000))
    s(submit([task(f"busy-{i}", workers=("tcp://a",)) for i in range(SATURATION)],
             wanted=[f"busy-{i}" for i in range(SATURATION)]))
    # a is full, b has every slot free, but moving 100 MB costs more than waiting
    cmds = s(submit([task("f-1", "big-1")], wanted=["f-1"]))
    assert s.computes(cmds) == {"f-1": "tcp://a"}


def test_dependents_go_to_their_holder_when_every_worker_is_full():
    s = Sched("tcp://a", "tcp://b")
    s(submit([task("x-1", workers=("tcp://b",))], wanted=["x-1"]))
    s(finished("tcp://b", "x-1"))
    roots = [f"r-{i}" for i in range(10)]
    s(submit([task(r) for r in roots], wanted=roots))  # fills both workers, the rest queue
    cmds = s(submit([task("y-1", "x-1", priority=(-1,))], wanted=["y-1"]))
    assert s.computes(cmds) == {"y-1": "tcp://b"}  # not queued behind the roots


def test_root_tasks_with_big_results_take_their_siblings_along():
    s = Sched("tcp://a", "tcp://b")
    s(submit([task("rs-0")], wanted=["rs-0"]))
    (addr,) = s.processing().values()
    s(finished(addr, "rs-0", nbytes=8_000_000))  # rs tasks make big results
    fill = [f"other-{i}" for i in range(2 * SATURATION)]
    s(submit([task(k) for k in fill], wanted=fill))  # every slot taken
    pairs = [("rs-1", "rs-2"), ("rs-3", "rs-4")]
    tasks = []
    for i, (p, q) in enumerate(pairs):
        tasks += [task(p, priority=(i, 0)), task(q, priority=(i, 1)),
                  task(f"sum-{p}", p, q, priority=(i, 2))]
    s(submit(tasks, wanted=[f"sum-{p}" for p, _ in pairs]))
    for key, worker in list(s.processing().items()):
        s(finished(worker, key, nbytes=8))  # slots free one by one; the pairs go out
    placed = s.processing()
    for p, q in pairs:
        assert placed.get(p) is not None and placed.get(p) == placed.get(q)


def test_function_sent_once_per_worker():
    s = Sched(("tcp://a", 8))
    cmds = s(submit([task(f"inc-{i}") for i in range(3)] + [task("dec-1")],
                    wanted=[f"inc-{i}" for i in range(3)] + ["dec-1"]))
    funcs = {c.key: c.func for c in of(cmds, ComputeTask)}
    assert funcs == {"inc-0": "<func inc>", "inc-1": None, "inc-2": None, "dec-1": "<func dec>"}
    # a worker that leaves and rejoins is a new process: it is sent again
    s(finished("tcp://a", "inc-0"))
    cmds = s(join("tcp://b"), submit([task("inc-9", workers=("tcp://b",))], wanted=["inc-9"]))
    assert of(cmds, ComputeTask)[0].func == "<func inc>"
    s(finished("tcp://b", "inc-9"))
    from scheduler_helpers import leave

    s(leave("tcp://b"))
    # inc-9's only copy was on b and it may only run on b: it waits for b
    assert s.state.task_state("inc-9") == "no-worker"
    cmds = s(join("tcp://b"))
    assert [(c.key, c.func) for c in of(cmds, ComputeTask)] == [("inc-9", "<func inc>")]
    cmds = s(submit([task("inc-10", workers=("tcp://b",))], wanted=["inc-10"]))
    assert of(cmds, ComputeTask)[0].func is None


def test_tiny_tasks_get_more_slots():
    s = Sched("tcp://a")
    n = 200
    cmds = s(submit([task(f"tiny-{i}") for i in range(n)], wanted=[f"tiny-{i}" for i in range(n)]))
    assert len(of(cmds, ComputeTask)) == SATURATION
    cmds = s(finished("tcp://a", "tiny-0", duration=0.0001))
    # once the prefix is known to be tiny, many more are in flight at once
    assert len(s.processing()) > 10 * SATURATION


def test_pure_key_submitted_twice_shares_one_task():
    s = Sched("tcp://a")
    s(submit([task("inc-1")], wanted=["inc-1"], client="c1"))
    cmds = s(submit([task("inc-1")], wanted=["inc-1"], client="c2"))
    assert of(cmds, ComputeTask) == []
    cmds = s(finished("tcp://a", "inc-1"))
    assert sorted(r.client for r in of(cmds, KeyInMemory)) == ["c1", "c2"]
    # a late submission of a finished key reports at once
    cmds = s(submit([task("inc-1")], wanted=["inc-1"], client="c3"))
    assert [(r.client, r.key) for r in of(cmds, KeyInMemory)] == [("c3", "inc-1")]


def test_missing_dependency_errs_at_once():
    s = Sched("tcp://a")
    cmds = s(submit([task("y-1", "x-1"), task("z-1", "y-1")], wanted=["y-1", "z-1"]))
    errs = {r.key: r for r in of(cmds, KeyErred)}
    assert set(errs) == {"y-1", "z-1"}
    assert errs["y-1"].error_type == "MissingDependencyError"
    assert errs["y-1"].exception is None and errs["y-1"].worker == ""
    assert errs["y-1"].exception_text == (
        "task 'y-1' depends on key 'x-1', which no task provides and no client holds"
    )
    assert errs["z-1"].error_type == "MissingDependencyError"
    assert of(cmds, ComputeTask) == []


def test_dependency_on_existing_key():
    s = Sched("tcp://a")
    s(submit([task("x-1")], wanted=["x-1"]))
    s(finished("tcp://a", "x-1"))
    cmds = s(submit([task("y-1", "x-1")], wanted=["y-1"], client="c2"))
    assert s.computes(cmds) == {"y-1": "tcp://a"}


def test_unknown_key_wanted_reports_lost():
    from taskmill.protocol.vocabulary import WantKeys

    s = Sched("tcp://a")
    cmds = s(WantKeys("s", client="c1", keys=("nope",)))
    (r,) = of(cmds, KeyLost)
    assert r.key == "nope" and "not known" in r.reason
    cmds = s(submit([], wanted=["nope2"]))
    assert [r.key for r in of(cmds, KeyLost)] == ["nope2"]


def test_keys_wanted_existing_in_memory_reports():
    from taskmill.protocol.vocabulary import WantKeys

    s = Sched("tcp://a")
    s(submit([task("x-1")], wanted=["x-1"]))
    s(finished("tcp://a", "x-1"))
    cmds = s(WantKeys("s", client="c2", keys=("x-1",)))
    assert [(r.client, r.key) for r in of(cmds, KeyInMemory)] == [("c2", "x-1")]


def test_heartbeat_updates_figures_only():
    s = Sched("tcp://a")
    assert s(Heartbeat("s", worker="tcp://a", now=5.0, memory=123)) == []
    assert s.state.workers_info()["tcp://a"]["memory"] == 123
    assert s(Heartbeat("s", worker="tcp://zzz", now=5.0)) == []


def test_queries():
    s = Sched(("tcp://a", 2), ("tcp://b", 1))
    assert s.state.nthreads() == {"tcp://a": 2, "tcp://b": 1}
    assert s.state.who_has(["nope"]) == {"nope": []}
    assert s.state.task_state("nope") is None
    spots = s.state.workers_for_scatter(4)
    assert len(spots) == 4 and set(spots) == {"tcp://a", "tcp://b"}
    assert SchedulerState().workers_for_scatter(3) == []


def test_story_records_transitions():
    s = Sched("tcp://a")
    ev = submit([task("x-1")], wanted=["x-1"])
    s(ev)
    s(finished("tcp://a", "x-1"))
    states = [(e[1], e[2]) for e in s.state.story("x-1")]
    assert states == [("forgotten", "released"), ("released", "waiting"),
                      ("waiting", "processing"), ("processing", "memory")]
    assert s.state.story("x-1")[1][3] == ev.stimulus_id


def test_graph_submitted_with_many_workers_is_fine():
    s = Sched(*[f"tcp://w{i}" for i in range(40)])
    n = 100
    cmds = s(submit([task(f"t-{i}") for i in range(n)], wanted=[f"t-{i}" for i in range(n)]))
    assert len(of(cmds, ComputeTask)) == min(n, 40 * SATURATION)


def test_new_task_defaults_roundtrip():
    nt = TaskSpec("k", "tok", ())
    s = SchedulerState(validate=True)
    cmds = s.handle(UpdateGraph("s", client="c", tasks=(nt,), wanted=("k",)))
    assert cmds == []
    assert s.task_state("k") == "queued"
    assert erred  # helper imported for other modules


def test_missing_edge_raises_with_story():
    import pytest

    from taskmill.core.scheduler.state import InvalidTransition
    from taskmill.core.scheduler.step import Step

    s = Sched("tcp://a")
    s(submit([task("x-1")], wanted=["x-1"]))
    ts = s.state.tasks["x-1"]
    step = Step("test", s.state.machine.transition_log, [])
    with pytest.raises(InvalidTransition) as info:
        s.state.machine.transition(step, ts, "no-worker")  # processing -> no-worker: no such edge
    assert "x-1" in str(info.value) and "waiting" in str(info.value)


def test_validate_reports_broken_invariant_with_story():
    import pytest

    s = Sched("tcp://a")
    s(submit([task("x-1")], wanted=["x-1"]))
    s(finished("tcp://a", "x-1"))
    s.state.tasks["x-1"].who_has = {}  # corrupt it
    with pytest.raises(AssertionError) as info:
        s.state.validate()
    assert "x-1" in str(info.value) and "processing" in str(info.value)


def test_unknown_event_type_is_rejected():
    import pytest

    from taskmill.core.scheduler.events import SchedulerEvent

    with pytest.raises(TypeError):
        SchedulerState().handle(SchedulerEvent("s"))


def test_client_connected_is_harmless():
    from taskmill.core.scheduler.events import ClientConnected, ClientDisconnected

    s = Sched("tcp://a")
    assert s(ClientConnected("s", client="c9")) == []
    assert s(ClientDisconnected("s", client="c9"), ClientDisconnected("s", client="c9")) == []


def test_ready_dependent_with_better_priority_goes_before_queued_roots():
    s = Sched("tcp://a")
    roots = [task(f"r-{i}", priority=(5,)) for i in range(5)]
    s(submit(roots, wanted=[t.key for t in roots]))
    s(submit([task("d-1", "r-0", priority=(1,))], wanted=["d-1"]))
    cmds = s(finished("tcp://a", "r-0"))
    assert [c.key for c in of(cmds, ComputeTask)] == ["d-1"]
    # and a worse-priority dependent waits behind the queued roots
    s(submit([task("e-1", "r-1", priority=(9,))], wanted=["e-1"]))
    cmds = s(finished("tcp://a", "r-1"))
    assert [c.key for c in of(cmds, ComputeTask)] == ["r-2"]
    assert s.state.task_state("e-1") == "queued"


def test_key_prefix_of_plain_and_dask_tuple_keys() -> None:
    from taskmill.core.scheduler.records import key_prefix

    assert key_prefix("inc-4f2a") == "inc"
    assert key_prefix("plain") == "plain"
    assert key_prefix("('sum-aggregate-4f2a', 3, 1)") == "sum-aggregate"
    assert key_prefix("('x', 7)") == "x"
    assert key_prefix('("it\'s-9", 0)') == "it's"
