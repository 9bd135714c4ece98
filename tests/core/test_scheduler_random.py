"""Randomized scheduler scenarios: invariants hold after every event, and every
wanted key ends with exactly the report matching its final state.

Seeded ``random`` (hypothesis is not a dependency).  Keys have one global
definition each, as pure keys do: resubmitting a key resubmits the same task.
"""

from __future__ import annotations

import random

import pytest
from scheduler_helpers import erred, finished, join, leave, sid, submit, task, up_to_date

from taskmill.core.scheduler.events import (
    ClientDisconnected,
    RebalanceRequested,
    ReplicateRequested,
    RestartRequested,
    RetireCancelled,
    RetireRequested,
    SchedulerCommand,
    SchedulerEvent,
)
from taskmill.protocol.vocabulary import (
    AddKeys,
    CancelKeys,
    KeyCancelled,
    KeyErred,
    KeyInMemory,
    KeyLost,
    MissingData,
    Paused,
    ReleaseKeys,
    ReleasedKeys,
    ScatterDone,
    TaskSpec,
    WantKeys,
)
from taskmill.core.scheduler.state import SchedulerState

ADDRS = [f"tcp://w{i}" for i in range(4)]
CLIENTS = ["c0", "c1", "c2"]


class Harness:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.state = SchedulerState(validate=True, allowed_failures=3)
        self.defs: dict[str, TaskSpec] = {}
        self.scattered: set[str] = set()
        self.n = 0
        # (client, key) -> type name of the last report in the current want session
        self.last: dict[tuple[str, str], str | None] = {}
        self.last_result: SchedulerEvent | None = None

    # ---------------------------------------------------------------- #
    def send(self, *events: SchedulerEvent) -> list[SchedulerCommand]:
        cmds = self.state.handle(*up_to_date(self.state, events))
        for c in cmds:
            if isinstance(c, (KeyInMemory, KeyErred, KeyLost, KeyCancelled)):
                kind = type(c).__name__
                k = (c.client, c.key)
                if kind != "KeyCancelled":
                    assert self.last.get(k) != kind, f"duplicate {kind} for {k}"
                self.last[k] = kind
        return cmds

    def end_session(self, client: str, key: str) -> None:
        self.last.pop((client, key), None)

    def new_key(self) -> str:
        self.n += 1
        prefix = self.rng.choice(["inc", "add", "sum"])
        key = f"{prefix}-{self.n}"
        known = [k for k in self.defs if k not in self.scattered]
        deps = tuple(self.rng.sample(known, k=min(len(known), self.rng.choice([0, 0, 1, 1, 2, 3]))))
        workers = None
        loose = False
        if self.rng.random() < 0.1:
            workers = tuple(self.rng.sample(ADDRS, self.rng.choice([1, 2])))
            loose = self.rng.random() < 0.5
        self.defs[key] = task(
            key, *deps, priority=(self.rng.randint(0, 3),), retries=self.rng.choice([0, 0, 1]),
            workers=workers, allow_other_workers=loose,
        )
        return key

    def closure(self, keys: list[str]) -> list[TaskSpec]:
        out: dict[str, TaskSpec] = {}
        stack = list(keys)
        while stack:
            k = stack.pop()
            if k in out or k in self.scattered:
                continue
            out[k] = self.defs[k]
            stack.extend(self.defs[k].dependencies)
        return list(out.values())

    # ---------------------------------------------------------------- #
    def processing(self) -> list[tuple[str, str]]:
        return [
            (ts.key, ts.processing_on.address)
            for ts in self.state.tasks.values()
            if ts.processing_on is not None
        ]

    def step(self) -> None:
        rng = self.rng
        st = self.state
        op = rng.choices(
            ["submit", "finish", "err", "release", "want", "cancel", "leave", "join",
             "scatter", "has", "released", "missing", "disconnect", "restart", "stale", "dup",
             "replicate", "copied", "retire", "unretire", "pause", "rebalance"],
            weights=[20, 30, 4, 8, 3, 2, 2, 3, 2, 2, 1, 2, 1, 0.3, 2, 2, 2, 3, 1, 0.5, 2, 1],
        )[0]
        client = rng.choice(CLIENTS)
        if op == "submit":
            keys = [self.new_key() for _ in range(rng.randint(1, 4))]
            if self.defs and rng.random() < 0.4:
                keys.append(rng.choice([k for k in self.defs if k not in self.scattered] or keys))
            tasks = self.closure(keys)
            if rng.random() < 0.1 and len(tasks) > 1:
                tasks = tasks[: len(tasks) // 2]  # deps missing unless known
            wanted = [k for k in keys if rng.random() < 0.8]
            for k in {t.key for t in tasks}:
                ts = st.tasks.get(k)
                if ts is not None and ts.state == "erred":
                    for c in CLIENTS:
                        self.end_session(c, k)  # the new attempt is news to all
            self.send(submit(tasks, wanted=wanted, client=client))
        elif op in ("finish", "err"):
            proc = self.processing()
            if proc:
                key, addr = rng.choice(proc)
                if op == "finish":
                    ev = finished(addr, key, nbytes=rng.randint(1, 1000),
                                  duration=rng.choice([0.0001, 0.5]))
                else:
                    ev = erred(addr, key)
                self.last_result = ev
                self.send(ev)
        elif op == "dup":
            if self.last_result is not None:
                self.send(self.last_result)  # duplicate or late delivery
        elif op == "stale":
            if st.tasks and st.workers:
                key = rng.choice(list(st.tasks))
                addr = rng.choice(list(st.workers))
                if not any(k == key and a == addr for k, a in self.processing()):
                    self.send(rng.choice([finished, erred])(addr, key))
        elif op == "release":
            cs = st.clients.get(client)
            if cs and cs.wants:
                keys = [ts.key for ts in rng.sample(list(cs.wants), k=min(2, len(cs.wants)))]
                for k in keys:
                    self.end_session(client, k)
                self.send(ReleaseKeys(sid(), client=client, keys=tuple(keys)))
        elif op == "want":
            key = rng.choice(list(st.tasks) or ["nope"]) if rng.random() < 0.9 else "unknown-0"
            if key not in st.tasks:
                self.end_session(client, key)
                self.send(WantKeys(sid(), client=client, keys=(key,)))
                self.end_session(client, key)  # KeyLost for an unknown key: no want
            else:
                self.send(WantKeys(sid(), client=client, keys=(key,)))
        elif op == "cancel":
            if st.tasks:
                key = rng.choice(list(st.tasks))
                self.send(CancelKeys(sid(), client=client, keys=(key,)))
                for k in list(self.last):
                    if k[1] not in st.tasks:
                        del self.last[k]
        elif op == "leave":
            if st.workers:
                self.send(leave(rng.choice(list(st.workers)), "killed"))
        elif op == "join":
            self.send(join(rng.choice(ADDRS), nthreads=rng.randint(1, 2)))
        elif op == "scatter":
            if st.workers:
                self.n += 1
                key = f"data-{self.n}"
                self.scattered.add(key)
                self.defs[key] = task(key)
                addrs = tuple(rng.sample(list(st.workers), 1))
                self.send(ScatterDone(sid(), client=client, who_has={key: addrs}, nbytes={key: 10}))
        elif op == "has":
            mem = [ts.key for ts in st.tasks.values() if ts.state == "memory"]
            if mem and st.workers:
                self.send(AddKeys(sid(), worker=rng.choice(list(st.workers)),
                                        nbytes={rng.choice(mem): 5, "junk-key": 1}))
        elif op in ("released", "missing"):
            mem = [ts for ts in st.tasks.values() if ts.state == "memory"]
            if mem:
                ts = rng.choice(mem)
                holder = rng.choice(list(ts.who_has)).address
                if op == "released":
                    self.send(ReleasedKeys(sid(), worker=holder, keys=(ts.key,)))
                else:
                    asker = rng.choice(list(st.workers))
                    self.send(MissingData(sid(), worker=asker, errant_worker=holder,
                                                keys=(ts.key,)))
        elif op == "disconnect":
            for k in list(self.last):
                if k[0] == client:
                    del self.last[k]
            self.send(ClientDisconnected(sid(), client=client))
        elif op == "restart":
            self.send(RestartRequested(sid(), reason="restart"))
            self.last.clear()
        elif op == "replicate":
            mem = [ts.key for ts in st.tasks.values() if ts.state == "memory"]
            if mem:
                self.send(ReplicateRequested(sid(), tuple(rng.sample(mem, min(2, len(mem)))),
                                             rng.choice([None, 1, 2])))
        elif op == "rebalance":
            self.send(RebalanceRequested(sid(), None, rng.choice([None, tuple(ADDRS[:2])])))
        elif op == "copied":  # a worker reports (or declines) a copy it was asked for
            pending = [(ts.key, ws.address) for ts in st.tasks.values() for ws in ts.acquiring_on]
            if pending:
                key, addr = rng.choice(pending)
                if rng.random() < 0.8:
                    self.send(AddKeys(sid(), worker=addr, nbytes={key: 5}))
                else:
                    self.send(ReleasedKeys(sid(), worker=addr, keys=(key,)))
        elif op == "retire":
            if st.workers:
                self.send(RetireRequested(sid(), (rng.choice(list(st.workers)),)))
        elif op == "unretire":
            if st.replicas.retiring:
                self.send(RetireCancelled(sid(), tuple(ws.address for ws in st.replicas.retiring), "timeout"))
        elif op == "pause":
            if st.workers:
                self.send(Paused(sid(), rng.choice(list(st.workers)), rng.random() < 0.5))

    def settle(self) -> None:
        for _ in range(10_000):
            for addr in ADDRS:  # again after each step: retirements remove workers
                if addr not in self.state.workers:
                    self.send(join(addr))
            for ws in list(self.state.workers.values()):
                if ws.paused:
                    self.send(Paused(sid(), ws.address, False))
            copies = [(ts.key, ws.address) for ts in self.state.tasks.values()
                      for ws in ts.acquiring_on]
            if copies:  # retirements finish once their copies are made
                key, addr = copies[0]
                self.send(AddKeys(sid(), worker=addr, nbytes={key: 5}))
                continue
            proc = self.processing()
            if not proc:
                break
            key, addr = proc[0]
            self.send(finished(addr, key))
        else:  # pragma: no cover
            raise AssertionError("did not settle")

    def check_final(self) -> None:
        st = self.state
        for ts in st.tasks.values():
            assert ts.state in ("memory", "erred", "released"), (ts, st.story(ts.key))
        for client, cs in st.clients.items():
            for ts in cs.wants:
                expected = {"memory": {"KeyInMemory"},
                            "erred": {"KeyErred", "KeyLost"}}[ts.state]
                got = self.last.get((client, ts.key))
                assert got in expected, (client, ts.key, ts.state, got, st.story(ts.key))


@pytest.mark.parametrize("seed", range(40))
def test_random_scenarios(seed: int) -> None:
    h = Harness(seed)
    for addr in ADDRS[:2]:
        h.send(join(addr))
    for _ in range(150):
        h.step()
    h.settle()
    h.check_final()
    # releasing everything leaves nothing behind
    for client in list(h.state.clients):
        h.send(ClientDisconnected(sid(), client=client))
    assert h.state.tasks == {}
    assert all(not ws.has_what and not ws.processing for ws in h.state.workers.values())
