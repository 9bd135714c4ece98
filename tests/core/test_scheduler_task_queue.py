"""The shared queue (``TaskQueue``): a sorted run beside a heap gives the order one heap gives."""

from __future__ import annotations

import heapq
import random

from taskmill.core.scheduler.records import QUEUED, RELEASED, TaskRecord
from taskmill.core.scheduler.task_queue import TaskQueue
from taskmill.protocol.vocabulary import ComputeTask

from tests.core.scheduler_helpers import Sched, of, submit, task


def queued(seq: int, priority: tuple[int, ...] = (0,)) -> TaskRecord:
    ts = TaskRecord(f"t-{seq}", None, priority, seq)
    ts.state = QUEUED
    ts.queue_epoch = 1
    return ts


def drain(q: TaskQueue) -> list[TaskRecord]:
    out = []
    while (ts := q.peek()) is not None:
        q.pop()
        out.append(ts)
    return out


def test_tasks_queued_in_order_stay_in_the_run_and_leave_in_order() -> None:
    q = TaskQueue()
    tasks = [queued(i) for i in range(100)]
    for ts in tasks:
        q.push(ts)
    assert len(q.run) == 100 and not q.heap and q.in_order()
    assert drain(q) == tasks and len(q) == 0


def test_any_order_of_pushes_and_pops_leaves_as_one_heap_would() -> None:
    rng = random.Random(15)
    q, heap = TaskQueue(), []
    seq = 0
    for _ in range(3000):
        if rng.random() < 0.6 or not heap:
            seq += 1
            # mostly in order, sometimes a task with a better priority
            ts = queued(seq, (0,) if rng.random() < 0.8 else (-rng.randrange(3),))
            q.push(ts)
            heapq.heappush(heap, (ts.sort_key, ts))
        else:
            best = q.peek()
            q.pop()
            assert best is heapq.heappop(heap)[1]
        assert q.in_order()
    assert drain(q) == [ts for _, ts in sorted(heap, key=lambda e: e[0])]


def test_dead_entries_are_skipped_at_either_front() -> None:
    q = TaskQueue()
    a, b, c = queued(1), queued(2), queued(3, (-1,))
    for ts in (a, b, c):
        q.push(ts)
    assert q.heap and q.peek() is c  # c came out of order: in the heap, and first
    c.state = RELEASED  # left the queue: its entry dies
    a.queue_epoch += 1  # queued again: the old entry dies, a new one goes in
    q.push(a)
    assert set(q.live()) == {a, b}
    assert drain(q) == [a, b]  # a keeps its place (its sort key), from the heap now


def test_the_scheduler_hands_out_queued_tasks_by_priority_then_submission() -> None:
    s = Sched("w1")  # one worker, one thread: most tasks wait in the queue
    keys = [f"t-{i}" for i in range(30)]
    s(submit([task(k) for k in keys], keys))
    queue = s.state.placement.queue
    started = [c.key for c in of(s.log, ComputeTask)]
    assert len(queue.run) == 30 - len(started) and not queue.heap  # queued in order
    s(submit([task("u-1", priority=(-1,))], ["u-1"]))  # better than every queued one
    assert len(queue.heap) == 1
    s.run_all()
    assert [c.key for c in of(s.log, ComputeTask)] == [*started, "u-1", *keys[len(started):]]
