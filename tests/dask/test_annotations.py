"""``dask.annotate`` becomes task options: packing (no cluster), then the
packed graphs on the simulated cluster (retries, resources, priority order).
Worker restrictions and the Executor's entry points are tested on an
in-process cluster (test_annotations_on_a_cluster.py)."""

from __future__ import annotations

from typing import Any

import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
db = pytest.importorskip("dask.bag")

from taskmill.client.dask_graph import pack_graph, to_key  # noqa: E402
from taskmill.protocol.vocabulary import TaskSpec  # noqa: E402
from taskmill.testing import SimCluster, SimTask  # noqa: E402

A = "tcp://127.0.0.1:40001"
B = "tcp://127.0.0.1:40002"


def inc(x: int) -> int:
    return x + 1


def compute_expr(*collections: Any, optimize_graph: bool = True) -> Any:
    """The expression ``compute`` submits (as dask.compute builds it)."""
    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr

    return FinalizeCompute(collections_to_expr(list(collections), optimize_graph)).optimize()


def persist_expr(collection: Any) -> Any:
    """The expression ``persist`` submits."""
    from dask.base import collections_to_expr

    return collections_to_expr([collection], True).optimize()


def packed(dsk: Any, **options: Any) -> dict[str, TaskSpec]:
    return {t.key: t for t in pack_graph(dsk, generation=1, options=options).tasks}


def options(task: TaskSpec) -> tuple[Any, ...]:
    return task.priority[0], task.retries, task.workers, task.allow_other_workers, task.resources


PLAIN = (0, 0, None, False, None)


# --------------------------------------------------------------------------- #
# Packing
# --------------------------------------------------------------------------- #
def test_each_annotation_becomes_the_option_of_its_tasks_only() -> None:
    with dask.annotate(retries=2, workers=[A, B], allow_other_workers=True,
                       resources={"GPU": 1}, priority=5):
        a = dask.delayed(inc)(1)
    with dask.annotate(workers="127.0.0.1:40001"):  # one address, as submit(workers=) takes
        b = dask.delayed(inc)(a)
    c = dask.delayed(inc)(b)
    tasks = packed(compute_expr(c))
    assert options(tasks[a.key]) == (-5, 2, (A, B), True, {"GPU": 1.0})
    assert options(tasks[b.key]) == (0, 0, (A,), False, None)
    assert options(tasks[c.key]) == PLAIN


def test_annotations_survive_array_fusion() -> None:
    with dask.annotate(retries=3, resources={"GPU": 1}):
        x = da.ones(10, chunks=5) + 1
    y = (x * 2).sum()
    # optimised: blockwise fusion merges the annotated layers with the
    # chunk-wise sum, and that fused task keeps their annotations
    tasks = packed(compute_expr(y))
    chunked = [t for t in tasks.values() if t.key.startswith("(") and "aggregate" not in t.key]
    assert len(chunked) == 2
    assert all(t.retries == 3 and t.resources == {"GPU": 1.0} for t in chunked)
    assert all(options(t) == PLAIN for t in tasks.values() if t not in chunked)
    # not optimised: exactly the tasks of the annotated layers
    tasks = packed(compute_expr(y, optimize_graph=False))
    annotated = {k for k in tasks if "ones_like" in k or x.name in k}
    assert len(annotated) == 4
    assert all(t.retries == (3 if k in annotated else 0) for k, t in tasks.items())
    # the annotated array itself, persisted
    tasks = packed(persist_expr(x))
    assert {to_key(k) for k in dask.core.flatten(x.__dask_keys__())} <= set(tasks)
    assert all(t.retries == 3 for t in tasks.values())


def test_annotations_survive_bag_fusion() -> None:
    with dask.annotate(resources={"GPU": 1}, retries=1):
        b = db.from_sequence(range(10), npartitions=2).map(inc)
    tasks = packed(compute_expr(b.sum()))
    fused = [t for t in tasks.values() if "from_sequence" in t.key]
    assert len(fused) == 2  # from_sequence, map and sum-part fused per partition
    assert all(t.resources == {"GPU": 1.0} and t.retries == 1 for t in fused)
    final = [t for t in tasks.values() if t.key.startswith("finalize")]
    assert final and all(options(t) == PLAIN for t in final)


def test_the_options_of_the_call_apply_to_every_task_the_graph_does_not_annotate() -> None:
    with dask.annotate(retries=4, resources={"CPU": 2}):
        a = dask.delayed(inc)(1)
    b = dask.delayed(inc)(a)
    tasks = packed(compute_expr(b), resources={"GPU": 1}, workers=[A], retries=1)
    assert options(tasks[a.key]) == (0, 4, (A,), False, {"CPU": 2.0})  # its layer's win
    assert options(tasks[b.key]) == (0, 1, (A,), False, {"GPU": 1.0})


def test_annotations_around_the_call_apply_to_every_task_the_graph_does_not_annotate() -> None:
    with dask.annotate(retries=4):
        a = dask.delayed(inc)(1)
    b = dask.delayed(inc)(a)
    with dask.annotate(retries=1, workers=A):  # as around e.compute(b) or b.compute()
        tasks = packed(compute_expr(b))
    assert options(tasks[a.key]) == (0, 4, (A,), False, None)
    assert options(tasks[b.key]) == (0, 1, (A,), False, None)


def test_an_annotated_priority_adds_to_the_priority_of_the_call() -> None:
    with dask.annotate(priority=5):
        a = dask.delayed(inc)(1)
    b = dask.delayed(inc)(a)
    tasks = packed(compute_expr(b), priority=10)
    assert tasks[a.key].priority[0] == -15 and tasks[b.key].priority[0] == -10
    with dask.annotate(priority=-3):
        tasks = packed(compute_expr(b), priority=10)
    assert tasks[a.key].priority[0] == -15 and tasks[b.key].priority[0] == -7


def test_callable_annotations_are_called_with_each_key() -> None:
    with dask.annotate(priority=lambda key: int(key.split("-")[1])):
        parts = [dask.delayed(inc)(i, dask_key_name=f"part-{i}") for i in range(3)]
    total = dask.delayed(sum)(parts)
    tasks = packed(compute_expr(total))
    assert [tasks[f"part-{i}"].priority[0] for i in range(3)] == [0, -1, -2]
    with dask.annotate(retries=lambda key: 2 if key == total.key else 0):
        tasks = packed(compute_expr(total))
    assert tasks[total.key].retries == 2 and tasks["part-1"].retries == 0


def test_unknown_annotations_are_ignored_and_plain_graphs_get_plain_options() -> None:
    with dask.annotate(qux="bar", span="x"):
        a = dask.delayed(inc)(1)
    assert options(packed(compute_expr(a))[a.key]) == PLAIN
    assert [options(t) for t in packed({"x": (inc, 1), "y": (inc, "x")}).values()] == [PLAIN, PLAIN]


def test_a_high_level_graph_given_to_get_keeps_its_layer_annotations() -> None:
    with dask.annotate(workers=A):
        y = dask.delayed(inc)(1)
    with dask.annotate(workers=B):
        z = dask.delayed(inc)(y)
    tasks = packed(z.__dask_graph__())
    assert tasks[y.key].workers == (A,) and tasks[z.key].workers == (B,)


@pytest.mark.parametrize("annotation, message", [
    ({"priority": 1.5}, "priority annotation of task .* must be a whole number, not 1.5"),
    ({"retries": -1}, "retries annotation of task .* must be 0 or more"),
    ({"resources": {"GPU": -1}}, "resources annotation of task .*: amount of 'GPU' must be"),
    ({"workers": ["nowhere"]}, "workers annotation of task .*: invalid address 'nowhere'"),
    ({"workers": lambda key: 42}, "workers annotation of task .* must be a worker address or a list"),
    ({"allow_other_workers": lambda key: "yes"}, "allow_other_workers annotation .* True or False"),
])
def test_a_bad_annotation_value_fails_naming_it_and_the_task(annotation: dict[str, Any],
                                                            message: str) -> None:
    with dask.annotate(**annotation):
        a = dask.delayed(inc)(1)
    with pytest.raises((TypeError, ValueError), match=message):
        packed(compute_expr(a))


# --------------------------------------------------------------------------- #
# The packed graphs on the simulated cluster
# --------------------------------------------------------------------------- #
def sim_tasks(tasks: dict[str, TaskSpec], fail: dict[str, int] | None = None) -> list[SimTask]:
    """The packed tasks as simulated ones (their options as packed)."""
    fail = fail or {}
    return [SimTask(t.key, t.dependencies, fail=fail.get(t.key, 0), retries=t.retries,
                    priority=t.priority, workers=t.workers,
                    allow_other_workers=t.allow_other_workers, resources=t.resources, func="dask")
            for t in tasks.values()]


def test_annotated_retries_rerun_a_task_that_failed_once() -> None:
    with dask.annotate(retries=1):
        flaky = dask.delayed(inc)(1, dask_key_name="flaky")
    fragile = dask.delayed(inc)(2, dask_key_name="fragile")
    cluster = SimCluster(2, seed=3)
    client = cluster.client()
    client.submit(*sim_tasks(packed(compute_expr(flaky, fragile)), fail={"flaky": 1, "fragile": 1}))
    cluster.run_until_idle()
    assert client.outcome("flaky") == "memory" and cluster.book.runs["flaky"] == 2
    assert client.outcome("fragile") == "erred" and cluster.book.runs["fragile"] == 1


def test_annotated_resources_choose_the_worker_that_has_them() -> None:
    with dask.annotate(resources={"GPU": 1}):
        x = da.ones(8, chunks=2) + 1
    total = x.sum()
    tasks = packed(compute_expr(total))
    cluster = SimCluster([(2, None), (2, {"GPU": 1.0})], seed=5)
    client = cluster.client()
    client.submit(*sim_tasks(tasks))
    cluster.run_until_idle()
    gpu_tasks = [k for k, t in tasks.items() if t.resources]
    assert len(gpu_tasks) == 4
    assert all(cluster.who_has(k) == ["sim://w1"] for k in gpu_tasks if cluster.who_has(k))
    assert all(client.outcome(k) == "memory" for k in client.wanted)


def test_annotated_resources_no_worker_has_leave_the_tasks_waiting_saying_why() -> None:
    with dask.annotate(resources={"GPU": 1}):
        a = dask.delayed(inc)(1, dask_key_name="needs-gpu")
    b = dask.delayed(inc)(a, dask_key_name="after-gpu")
    cluster = SimCluster(2, seed=6)
    client = cluster.client()
    client.submit(*sim_tasks(packed(compute_expr(b))))
    cluster.run_until_idle()
    assert cluster.task_state("needs-gpu") == "no-worker"
    assert cluster.task_state("after-gpu") == "waiting"
    notes = [e[4] for e in cluster.state.story("needs-gpu") if e[2] == "no-worker"]
    assert notes and "none declares GPU" in notes[0]
    assert client.outcome("after-gpu") is None


def test_annotated_priorities_order_the_queue() -> None:
    order = {"low": -5, "high": 9, "middle": 2, "plain": 0}
    parts = []
    for name, priority in order.items():
        with dask.annotate(priority=priority):
            parts.append(dask.delayed(inc)(1, dask_key_name=name))
    cluster = SimCluster(1, seed=1, trace=True)
    client = cluster.client()
    client.submit(*sim_tasks(packed(compute_expr(*parts))))
    cluster.run_until_idle()
    started = [k for k in cluster.book.runs if k in order]
    assert started == sorted(order, key=lambda k: -order[k])


def test_workers_fused_to_none_in_common_restrict_nothing() -> None:
    with dask.annotate(workers=A):
        x = da.ones(4, chunks=2) + 1
    with dask.annotate(workers=B):
        y = x * 2  # blockwise fusion: the workers both layers allow, none
    tasks = packed(persist_expr(y))
    assert len(tasks) == 2 and all(t.workers is None for t in tasks.values())


def test_a_bad_option_of_the_call_fails_naming_it() -> None:
    a = dask.delayed(inc)(1)
    with pytest.raises(TypeError, match=r"the priority option \(or annotation around the call\) "
                                        "must be a whole number"):
        packed(compute_expr(a), priority="high")
    with pytest.raises(ValueError, match="the retries option .* must be 0 or more"):
        packed(compute_expr(a), retries=-2)
