"""Abstract worker resources in the pure scheduler: tasks run only where the
resources they ask for are declared, and only while they are free there.

Every ``Sched`` validates the whole state (resource accounting included)
after each event.
"""

from __future__ import annotations

import dataclasses
import random

import pytest
from scheduler_helpers import Sched, erred, finished, join, leave, of, sid, submit, task
from test_scheduler_random import ADDRS, Harness

from taskmill.core.resources import check_resources, parse_resources, resource_spec
from taskmill.core.scheduler.events import (
    RestartRequested,
    RetireRequested,
    SchedulerCommand,
    SchedulerEvent,
    TaskStalled,
)
from taskmill.protocol.vocabulary import (
    AddKeys,
    CancelKeys,
    ComputeTask,
    Paused,
    RegisterWorker,
    ReleaseKeys,
    TaskSpec,
)

GPU = {"GPU": 1}


def gpu_cluster(*extra: SchedulerEvent) -> Sched:
    """a: 2 threads and GPU=1; b: 2 threads, no GPU."""
    s = Sched()
    s(join("tcp://a", 2, resources={"GPU": 1}), join("tcp://b", 2), *extra)
    return s


def used(s: Sched, addr: str) -> dict[str, float]:
    return dict(s.state.workers[addr].resources_used)


# --------------------------------------------------------------------------- #
# Placement and counting
# --------------------------------------------------------------------------- #
def test_tasks_needing_a_resource_run_one_at_a_time_where_it_is_declared() -> None:
    s = gpu_cluster()
    cmds = s(submit([task(f"g-{i}", resources=GPU) for i in range(3)], wanted=["g-0", "g-1", "g-2"]))
    assert s.computes(cmds) == {"g-0": "tcp://a"}  # a has free slots, but only one GPU
    assert used(s, "tcp://a") == {"GPU": 1.0}
    assert s.state.task_state("g-1") == s.state.task_state("g-2") == "queued"
    cmds = s(finished("tcp://a", "g-0"))
    assert s.computes(cmds) == {"g-1": "tcp://a"}
    s.run_all()
    assert [c.worker for c in of(s.log, ComputeTask)] == ["tcp://a"] * 3
    assert used(s, "tcp://a") == {}


def test_unrestricted_tasks_still_use_every_worker() -> None:
    s = gpu_cluster()
    cmds = s(submit([task("g-1", resources=GPU)] + [task(f"x-{i}") for i in range(4)],
                    wanted=["g-1"] + [f"x-{i}" for i in range(4)]))
    placed = s.computes(cmds)
    assert placed["g-1"] == "tcp://a"
    assert set(placed.values()) == {"tcp://a", "tcp://b"}


def test_amounts_add_up_and_a_big_request_waits_for_enough_to_free() -> None:
    s = Sched()
    s(join("tcp://a", 4, resources={"GPU": 2}))
    cmds = s(submit([task("half-1", resources={"GPU": 0.5}), task("half-2", resources={"GPU": 0.5}),
                     task("one-1", resources={"GPU": 1}), task("two-1", resources={"GPU": 2})],
                    wanted=["half-1", "half-2", "one-1", "two-1"]))
    assert set(s.computes(cmds)) == {"half-1", "half-2", "one-1"}
    assert used(s, "tcp://a") == {"GPU": 2.0}
    assert s.state.task_state("two-1") == "queued"
    assert s.computes(s(finished("tcp://a", "half-1"))) == {}
    assert s.computes(s(finished("tcp://a", "one-1"))) == {}  # 1.5 free: not enough
    assert s.computes(s(finished("tcp://a", "half-2"))) == {"two-1": "tcp://a"}


def test_several_resources_must_all_be_declared_on_one_worker() -> None:
    s = Sched()
    s(join("tcp://a", resources={"GPU": 1}), join("tcp://b", resources={"MEM": 8}),
      join("tcp://c", resources={"GPU": 1, "MEM": 4}))
    cmds = s(submit([task("both-1", resources={"GPU": 1, "MEM": 4})], wanted=["both-1"]))
    assert s.computes(cmds) == {"both-1": "tcp://c"}


def test_priority_order_holds_across_resource_and_plain_queues() -> None:
    s = Sched()
    s(join("tcp://a", 1, resources={"GPU": 1}))
    s(submit([task(f"x-{i}") for i in range(2)], wanted=["x-0", "x-1"]))  # fills a's two slots
    s(submit([task("g-1", resources=GPU, priority=(-5,)), task("x-9", priority=(0,))],
             wanted=["g-1", "x-9"]))
    assert s.state.task_state("g-1") == "queued"
    cmds = s(finished("tcp://a", "x-0"))
    assert s.computes(cmds) == {"g-1": "tcp://a"}  # higher priority than the queued x-9


def test_inputs_pull_a_resource_task_to_their_holder_among_those_with_the_resource() -> None:
    s = Sched()
    s(join("tcp://a", 2, resources={"GPU": 1}), join("tcp://b", 2, resources={"GPU": 1}))
    cmds = s(submit([task("x-1", workers=("tcp://b",))], wanted=["x-1"]))
    s(finished("tcp://b", "x-1", nbytes=10_000))
    cmds = s(submit([task("g-1", "x-1", resources=GPU)], wanted=["g-1"]))
    assert s.computes(cmds) == {"g-1": "tcp://b"}


def test_allow_other_workers_prefers_the_named_worker_but_resources_stay_strict() -> None:
    s = Sched()
    s(join("tcp://a", 2, resources={"GPU": 1}), join("tcp://b", 2, resources={"GPU": 1}),
      join("tcp://c", 2))
    cmds = s(submit([task("g-1", workers=("tcp://b",), allow_other_workers=True, resources=GPU),
                     task("g-2", workers=("tcp://c",), allow_other_workers=True, resources=GPU)],
                    wanted=["g-1", "g-2"]))
    assert s.computes(cmds) == {"g-1": "tcp://b", "g-2": "tcp://a"}


def test_strict_workers_and_resources_both_hold() -> None:
    s = Sched()
    s(join("tcp://a", 2, resources={"GPU": 1}), join("tcp://b", 2, resources={"GPU": 1}))
    cmds = s(submit([task(f"g-{i}", workers=("tcp://b",), resources=GPU) for i in range(2)],
                    wanted=["g-0", "g-1"]))
    assert s.computes(cmds) == {"g-0": "tcp://b"}
    assert s.state.task_state("g-1") == "queued"
    assert s.computes(s(finished("tcp://b", "g-0"))) == {"g-1": "tcp://b"}
    # restricted to a worker without the resource: no-worker, saying why
    cmds = s(submit([task("g-9", workers=("tcp://a",), resources={"GPU": 2})], wanted=["g-9"]))
    assert s.state.task_state("g-9") == "no-worker"
    assert "allowed workers" in of(cmds, TaskStalled)[0].reason


# --------------------------------------------------------------------------- #
# No worker declares enough
# --------------------------------------------------------------------------- #
def test_no_worker_declaring_it_means_no_worker_with_a_reason_then_runs_when_one_joins() -> None:
    s = gpu_cluster()
    cmds = s(submit([task(f"t-{i}", resources={"TPU": 1}) for i in range(3)],
                    wanted=[f"t-{i}" for i in range(3)]))
    assert s.computes(cmds) == {}
    assert {s.state.task_state(f"t-{i}") for i in range(3)} == {"no-worker"}
    stalled = of(cmds, TaskStalled)
    assert [c.key for c in stalled] == ["t-0"]  # one warning for the group, not one per task
    assert "TPU=1" in stalled[0].reason and "none declares TPU" in stalled[0].reason
    assert any("none declares TPU" in e[4] for e in s.state.story("t-2"))
    # too little is not enough either, and says how much there is
    cmds = s(submit([task("g-9", resources={"GPU": 3})], wanted=["g-9"]))
    assert "at most GPU=1" in of(cmds, TaskStalled)[0].reason
    cmds = s(join("tcp://c", 1, resources={"TPU": 1}))
    assert s.computes(cmds) == {"t-0": "tcp://c"}
    assert {s.state.task_state(f"t-{i}") for i in (1, 2)} == {"queued"}
    s(finished("tcp://c", "t-0"), finished("tcp://c", "t-1"), finished("tcp://c", "t-2"))
    assert s.state.task_state("g-9") == "no-worker"


def test_a_worker_with_an_unrelated_resource_does_not_wake_stalled_tasks() -> None:
    s = Sched()
    s(join("tcp://a"))
    s(submit([task("t-1", resources={"TPU": 1})], wanted=["t-1"]))
    cmds = s(join("tcp://b", resources={"GPU": 4}))
    assert s.computes(cmds) == {} and of(cmds, TaskStalled) == []
    assert s.state.task_state("t-1") == "no-worker"


def test_releasing_a_stalled_task_forgets_it() -> None:
    s = gpu_cluster()
    s(submit([task("t-1", resources={"TPU": 1})], wanted=["t-1"]))
    s(ReleaseKeys(sid(), "c1", ("t-1",)))
    assert "t-1" not in s.state.tasks
    assert s.state.resource_index.groups == {}


# --------------------------------------------------------------------------- #
# Giving resources back: finish, error, retry, cancel, death, retirement, restart
# --------------------------------------------------------------------------- #
def test_an_error_gives_the_resource_back() -> None:
    s = gpu_cluster()
    s(submit([task("g-1", resources=GPU), task("g-2", resources=GPU)], wanted=["g-1", "g-2"]))
    cmds = s(erred("tcp://a", "g-1"))
    assert s.state.task_state("g-1") == "erred"
    assert s.computes(cmds) == {"g-2": "tcp://a"}


def test_a_retry_gives_the_resource_back_and_queues_behind_earlier_tasks() -> None:
    s = gpu_cluster()
    s(submit([task("g-1", resources=GPU, retries=1), task("g-2", resources=GPU)],
             wanted=["g-1", "g-2"]))
    cmds = s(erred("tcp://a", "g-1"))
    assert s.computes(cmds) == {"g-1": "tcp://a"}  # g-1 still has the better priority
    assert used(s, "tcp://a") == {"GPU": 1.0}
    assert s.state.task_state("g-2") == "queued"
    s.run_all()
    assert s.state.task_state("g-1") == s.state.task_state("g-2") == "memory"


def test_cancel_while_holding_the_resource_frees_it_for_the_next_task() -> None:
    s = gpu_cluster()
    s(submit([task("g-1", resources=GPU), task("g-2", resources=GPU)], wanted=["g-1", "g-2"]))
    cmds = s(CancelKeys(sid(), "c1", ("g-1",)))
    assert s.freed(cmds) == {"tcp://a": {"g-1"}}
    assert s.computes(cmds) == {"g-2": "tcp://a"}
    assert used(s, "tcp://a") == {"GPU": 1.0}


def test_worker_death_moves_the_task_to_another_worker_with_the_resource() -> None:
    s = gpu_cluster(join("tcp://c", 1, resources={"GPU": 1}))
    cmds = s(submit([task("g-1", resources=GPU), task("g-2", resources=GPU),
                     task("g-3", resources=GPU)], wanted=["g-1", "g-2", "g-3"]))
    where = s.computes(cmds)
    assert sorted(where.values()) == ["tcp://a", "tcp://c"]
    dying = where["g-1"]
    other = "tcp://a" if dying == "tcp://c" else "tcp://c"
    s(leave(dying))
    assert s.state.tasks["g-1"].suspicious == 1
    assert s.state.task_state("g-1") == "queued"  # the survivor's GPU is busy
    cmds = s(finished(other, "g-2"))
    assert s.computes(cmds) == {"g-1": other}


def test_last_worker_with_the_resource_dying_stalls_running_and_queued_tasks() -> None:
    s = gpu_cluster()
    s(submit([task("g-1", resources=GPU), task("g-2", resources=GPU)], wanted=["g-1", "g-2"]))
    cmds = s(leave("tcp://a"))
    assert s.state.task_state("g-1") == s.state.task_state("g-2") == "no-worker"
    assert len(of(cmds, TaskStalled)) == 1
    cmds = s(join("tcp://d", 2, resources={"GPU": 1}))
    assert s.computes(cmds) == {"g-1": "tcp://d"}
    s.run_all()
    assert s.state.task_state("g-2") == "memory"


def test_killed_worker_error_gives_the_resource_back() -> None:
    s = Sched(allowed_failures=1)
    s(join("tcp://a", 1, resources={"GPU": 1}), join("tcp://b", 1, resources={"GPU": 1}))
    s(submit([task("g-1", resources=GPU)], wanted=["g-1"]))
    addr = s.processing()["g-1"]
    s(leave(addr, "killed"))
    assert s.state.task_state("g-1") == "erred"
    assert all(not ws.resources_used for ws in s.state.workers.values())


def test_retiring_worker_hands_its_tasks_on_and_gets_no_new_ones() -> None:
    s = Sched()
    s(join("tcp://a", 2, resources={"GPU": 1}), join("tcp://b", 2, resources={"GPU": 1}))
    s(submit([task("g-1", resources=GPU, workers=("tcp://a",), allow_other_workers=True)],
             wanted=["g-1"]))
    assert s.processing() == {"g-1": "tcp://a"}
    s(RetireRequested(sid(), ("tcp://a",)))
    assert "tcp://a" not in s.state.workers
    assert s.processing() == {"g-1": "tcp://b"}
    assert s.state.tasks["g-1"].suspicious == 0


def test_paused_worker_gets_no_resource_task_until_it_resumes() -> None:
    s = gpu_cluster()
    s(Paused(sid(), "tcp://a", True))
    cmds = s(submit([task("g-1", resources=GPU)], wanted=["g-1"]))
    assert s.computes(cmds) == {} and s.state.task_state("g-1") == "queued"
    cmds = s(Paused(sid(), "tcp://a", False))
    assert s.computes(cmds) == {"g-1": "tcp://a"}


def test_restart_clears_the_accounting() -> None:
    s = gpu_cluster()
    s(submit([task(f"g-{i}", resources=GPU) for i in range(2)], wanted=["g-0", "g-1"]))
    s(submit([task("t-1", resources={"TPU": 1})], wanted=["t-1"]))
    s(RestartRequested(sid()))
    assert used(s, "tcp://a") == {} and s.state.resource_index.groups == {}
    cmds = s(submit([task("g-5", resources=GPU)], wanted=["g-5"]))
    assert s.computes(cmds) == {"g-5": "tcp://a"}


def test_worker_rejoining_at_the_same_address_with_other_resources() -> None:
    s = gpu_cluster()
    s(submit([task(f"g-{i}", resources=GPU) for i in range(2)], wanted=["g-0", "g-1"]))
    s(join("tcp://a", 2))  # came back without its GPU
    assert {s.state.task_state(f"g-{i}") for i in range(2)} == {"no-worker"}
    assert s.state.workers_info()["tcp://a"]["resources"] == {}


def test_scheduler_info_shows_declared_and_used_resources() -> None:
    s = gpu_cluster()
    s(submit([task("g-1", resources={"GPU": 0.5})], wanted=["g-1"]))
    info = s.state.workers_info()
    assert info["tcp://a"]["resources"] == {"GPU": 1.0}
    assert info["tcp://a"]["resources_used"] == {"GPU": 0.5}
    assert info["tcp://b"]["resources"] == {}


def test_many_distinct_requirements_only_cost_their_groups() -> None:
    s = Sched()
    s(join("tcp://a", 1, resources={"GPU": 1, "MEM": 100}))
    tasks = [task(f"m-{i}", resources={"MEM": 1 + i % 7}) for i in range(50)]
    s(submit(tasks, wanted=[t.key for t in tasks]))
    assert len(s.state.resource_index.groups) <= 7
    s.run_all()
    assert all(s.state.task_state(t.key) == "memory" for t in tasks)
    s(submit([task("x-1")], wanted=["x-1"]))
    s.run_all()
    assert s.state.resource_index.groups == {}


# --------------------------------------------------------------------------- #
# Specifications
# --------------------------------------------------------------------------- #
def test_parse_resources_accepts_commas_and_spaces() -> None:
    assert parse_resources("GPU=2,MEMORY=10e9") == {"GPU": 2.0, "MEMORY": 1e10}
    assert parse_resources(" GPU=1  FOO=0.5 ") == {"GPU": 1.0, "FOO": 0.5}
    assert parse_resources("") == {}


@pytest.mark.parametrize("text, words", [
    ("GPU", "expected NAME=AMOUNT"),
    ("GPU=", "expected NAME=AMOUNT"),
    ("GPU=two", "bad amount 'two'"),
    ("GPU=1,GPU=2", "given twice"),
    ("GPU=-1", "zero or more"),
    ("1GPU=1", "bad resource name"),
])
def test_parse_resources_says_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_resources(text)


def test_task_requirements_are_checked() -> None:
    assert check_resources({"GPU": 1}, "task resources") == {"GPU": 1.0}
    with pytest.raises(ValueError, match="more than zero"):
        check_resources({"GPU": 0}, "task resources")
    with pytest.raises(TypeError, match="must be a number"):
        check_resources({"GPU": "1"}, "task resources")
    with pytest.raises(TypeError, match="must be a dict"):
        check_resources(["GPU"], "task resources")  # type: ignore[arg-type]
    assert resource_spec({}) is None
    assert resource_spec({"b": 1, "a": 2}) == (("a", 2.0), ("b", 1.0))


# --------------------------------------------------------------------------- #
# Random scenarios with resources (the general harness, resources added)
# --------------------------------------------------------------------------- #
#: Worker resources by address; w0 can run every requirement below.
DECLARED = {ADDRS[0]: {"GPU": 2, "MEM": 4, "TPU": 1}, ADDRS[1]: {"GPU": 1},
            ADDRS[2]: {}, ADDRS[3]: {"GPU": 1, "MEM": 3}}
NEEDS = [{"GPU": 1}, {"GPU": 2}, {"GPU": 0.5, "MEM": 3}, {"TPU": 1}, {"MEM": 1}]


class ResourceHarness(Harness):
    def new_key(self) -> str:
        key = super().new_key()
        nt: TaskSpec = self.defs[key]
        if self.rng.random() < 0.4:
            workers = nt.workers
            if workers is not None and not nt.allow_other_workers and ADDRS[0] not in workers:
                workers += (ADDRS[0],)  # so that the run can settle
            self.defs[key] = dataclasses.replace(nt, resources=self.rng.choice(NEEDS),
                                                 workers=workers)
        return key

    def send(self, *events: SchedulerEvent) -> list[SchedulerCommand]:
        events = tuple(dataclasses.replace(e, resources=DECLARED[e.worker])
                       if isinstance(e, RegisterWorker) else e for e in events)
        return super().send(*events)


@pytest.mark.parametrize("seed", range(40))
def test_random_scenarios_with_resources(seed: int) -> None:
    h = ResourceHarness(seed)
    for addr in random.Random(seed).sample(ADDRS, 2):
        h.send(join(addr))
    for _ in range(150):
        h.step()
    h.settle()
    h.check_final()
    for ws in h.state.workers.values():
        assert not ws.resources_used
    for client in list(h.state.clients):
        h.send(ReleaseKeys(sid(), client=client, keys=tuple(ts.key for ts in h.state.clients[client].wants)))
    h.send(AddKeys(sid(), worker=next(iter(h.state.workers)), nbytes={}))
    assert h.state.tasks == {}
