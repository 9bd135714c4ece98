"""The decisions behind Lock, Semaphore and Event, driven synchronously
with the time given as numbers (taskmill.core.locks)."""

from __future__ import annotations

import pytest

from taskmill.core.locks import EVENT, LOCK, SEMAPHORE, Answer, Coordination, _Leases


def acquire(c: Coordination, lease: str, *, client: str = "c1", name: str = "x", kind: str = LOCK,
            max_leases: int = 1, now: float = 0.0, timeout: float | None = None) -> list[Answer]:
    return c.acquire(kind, name, lease, client, max_leases=max_leases, now=now, timeout=timeout)


def test_a_free_lock_is_granted_at_once_and_a_held_one_makes_the_next_wait() -> None:
    c = Coordination(lease_timeout=None)
    assert acquire(c, "a") == [Answer("a", True)]
    assert acquire(c, "b") == []
    assert c.value(LOCK, "x") == 1
    assert c.release(LOCK, "x", "a", now=1.0) == [Answer("b", True)]
    assert c.release(LOCK, "x", "b", now=2.0) == []
    assert c.names == {}  # an idle lock is forgotten


def test_waiters_are_granted_in_arrival_order() -> None:
    c = Coordination(lease_timeout=None)
    acquire(c, "first")
    for lease in ("w1", "w2", "w3"):
        assert acquire(c, lease) == []
    granted = []
    holder = "first"
    for now in (1.0, 2.0, 3.0):
        [answer] = c.release(LOCK, "x", holder, now)
        granted.append(answer.request)
        holder = answer.request
    assert granted == ["w1", "w2", "w3"]


def test_a_semaphore_grants_up_to_max_leases_and_a_release_lets_one_more_in() -> None:
    c = Coordination(lease_timeout=None)
    assert acquire(c, "a", kind=SEMAPHORE, max_leases=2) == [Answer("a", True)]
    assert acquire(c, "b", kind=SEMAPHORE, max_leases=2) == [Answer("b", True)]
    assert acquire(c, "c", kind=SEMAPHORE, max_leases=2) == []
    assert c.value(SEMAPHORE, "x") == 2
    assert c.release(SEMAPHORE, "x", "b", now=1.0) == [Answer("c", True)]
    assert c.value(SEMAPHORE, "x") == 2


def test_a_wait_past_its_deadline_is_answered_false_and_leaves_the_queue() -> None:
    c = Coordination(lease_timeout=None)
    acquire(c, "a")
    assert acquire(c, "b", now=10.0, timeout=2.0) == []
    assert acquire(c, "c", now=10.0) == []
    assert c.next_deadline() == 12.0
    assert c.tick(11.9) == []
    assert c.tick(12.0) == [Answer("b", False)]
    assert c.next_deadline() is None
    assert c.release(LOCK, "x", "a", now=13.0) == [Answer("c", True)]  # b is not granted


def test_timeout_zero_never_waits() -> None:
    c = Coordination(lease_timeout=None)
    acquire(c, "a")
    assert acquire(c, "b", timeout=0) == [Answer("b", False)]
    assert c.release(LOCK, "x", "a", now=1.0) == []


def test_a_release_withdraws_a_waiting_lease() -> None:
    c = Coordination(lease_timeout=None)
    acquire(c, "a")
    acquire(c, "b")
    assert c.release(LOCK, "x", "b", now=1.0) == [Answer("b", False)]
    assert c.release(LOCK, "x", "a", now=2.0) == []


def test_releasing_a_lease_not_held_is_a_runtime_error_saying_why() -> None:
    c = Coordination(lease_timeout=30.0)
    with pytest.raises(RuntimeError, match="the lock 'x' is not held by this Lock object"):
        c.release(LOCK, "x", "nobody", now=0.0)
    acquire(c, "a", kind=SEMAPHORE)
    with pytest.raises(RuntimeError, match=r"Semaphore 'x' has no such lease.*lease timeout of 30.0 s"):
        c.release(SEMAPHORE, "x", "other", now=0.0)


def test_a_departed_client_frees_its_leases_to_the_next_waiter_and_drops_its_waits() -> None:
    c = Coordination(lease_timeout=None)
    acquire(c, "a", client="c1")
    acquire(c, "a2", client="c1", name="y", kind=SEMAPHORE, max_leases=2)
    acquire(c, "b", client="c2")
    acquire(c, "c", client="c1")
    assert acquire(c, "d", client="c2") == []
    assert sorted(c.client_left("c1", now=5.0), key=lambda a: a.request) == [
        Answer("b", True), Answer("c", False)]
    assert c.value(SEMAPHORE, "y") == 0
    assert c.release(LOCK, "x", "b", now=6.0) == [Answer("d", True)]


def test_a_lease_expires_unless_its_client_refreshes_it() -> None:
    c = Coordination(lease_timeout=30.0)
    acquire(c, "a", client="c1", now=0.0)
    acquire(c, "b", client="c2", now=1.0)
    assert c.next_deadline() == 30.0
    assert c.refresh("c1", now=20.0) == 1
    assert c.tick(30.0) == []
    assert c.next_deadline() == 50.0
    assert c.tick(50.0) == [Answer("b", True)]  # c1 went silent: b gets the lock
    assert c.next_deadline() == 80.0  # b's lease counts from its grant
    with pytest.raises(RuntimeError, match="expired"):
        c.release(LOCK, "x", "a", now=51.0)


def test_one_name_is_one_kind_of_primitive() -> None:
    c = Coordination()
    acquire(c, "a", name="shared")
    with pytest.raises(ValueError, match="'shared' is in use by a Lock; a Semaphore cannot use it"):
        acquire(c, "b", name="shared", kind=SEMAPHORE)
    with pytest.raises(ValueError, match="in use by a Lock; a Event cannot use it"):
        c.set_event("shared")
    c.release(LOCK, "shared", "a", now=1.0)
    assert c.set_event("shared") == []  # forgotten when idle: free for another kind
    with pytest.raises(ValueError, match="in use by a Event"):
        acquire(c, "b", name="shared")


def test_a_semaphore_name_keeps_its_max_leases_while_in_use() -> None:
    c = Coordination()
    acquire(c, "a", kind=SEMAPHORE, max_leases=2)
    with pytest.raises(ValueError, match="in use with max_leases=2; it cannot be acquired with max_leases=3"):
        acquire(c, "b", kind=SEMAPHORE, max_leases=3)


def test_bad_arguments_are_refused_naming_the_primitive() -> None:
    c = Coordination()
    with pytest.raises(ValueError, match="max_leases must be an int >= 1"):
        acquire(c, "a", kind=SEMAPHORE, max_leases=0)
    with pytest.raises(ValueError, match="timeout must be >= 0"):
        acquire(c, "a", timeout=-1)
    with pytest.raises(ValueError, match="kind must be"):
        acquire(c, "a", kind=EVENT)
    acquire(c, "a")
    with pytest.raises(ValueError, match="asked for twice"):
        acquire(c, "a")
    with pytest.raises(ValueError, match="lease_timeout"):
        Coordination(lease_timeout=0)


def test_event_wakes_every_waiter_when_set_and_answers_at_once_while_set() -> None:
    c = Coordination()
    assert not c.is_set("e")
    assert c.wait_event("e", "w1", "c1", now=0.0, timeout=None) == []
    assert c.wait_event("e", "w2", "c2", now=0.0, timeout=5.0) == []
    assert sorted(c.set_event("e"), key=lambda a: a.request) == [Answer("w1", True), Answer("w2", True)]
    assert c.is_set("e")
    assert c.wait_event("e", "w3", "c1", now=1.0, timeout=None) == [Answer("w3", True)]
    c.clear_event("e")
    assert not c.is_set("e") and c.names == {}
    assert c.wait_event("e", "w4", "c1", now=2.0, timeout=0) == [Answer("w4", False)]


def test_event_waits_time_out_and_leave_with_their_client() -> None:
    c = Coordination()
    c.wait_event("e", "w1", "c1", now=0.0, timeout=3.0)
    c.wait_event("e", "w2", "c2", now=0.0, timeout=None)
    assert c.tick(3.0) == [Answer("w1", False)]
    assert c.client_left("c2", now=4.0) == [Answer("w2", False)]
    assert c.names == {}


@pytest.mark.parametrize("seed", range(20))
def test_random_operations_keep_the_invariants(seed: int) -> None:
    """Random acquires, releases, departures, refreshes and ticks: no lease is
    free while someone waits, none is over-granted, idle names are forgotten,
    and every request is answered exactly once (granted ones when released)."""
    import random

    rng = random.Random(seed)
    c = Coordination(lease_timeout=5.0)
    now = 0.0
    answered: dict[str, bool] = {}
    clients = ["c1", "c2", "c3"]
    asked: dict[str, tuple[str, str]] = {}  # lease -> (name, client)

    def take(answers: list[Answer]) -> None:
        for answer in answers:
            assert answer.request not in answered, f"{answer.request} answered twice"
            answered[answer.request] = answer.granted

    for step in range(300):
        now += rng.choice([0.0, 0.5, 1.0, 2.0])
        op = rng.random()
        if op < 0.45:
            lease, name, client = f"l{step}", rng.choice(["a", "b"]), rng.choice(clients)
            asked[lease] = (name, client)
            take(c.acquire(SEMAPHORE, name, lease, client, max_leases=2, now=now,
                           timeout=rng.choice([None, 0, 1.0, 3.0])))
        elif op < 0.75:
            held = [lease for lease, ok in answered.items() if ok and lease in asked]
            if held:
                lease = rng.choice(held)
                name, _ = asked.pop(lease)
                try:
                    take(c.release(SEMAPHORE, name, lease, now))
                except RuntimeError:
                    pass  # it expired or left with its client meanwhile
        elif op < 0.8:
            take(c.client_left(rng.choice(clients), now))
        elif op < 0.9:
            c.refresh(rng.choice(clients), now)
        else:
            take(c.tick(now))
        for name, entry in c.names.items():
            assert isinstance(entry, _Leases)
            assert len(entry.held) <= entry.max_leases
            assert not entry.waiting or len(entry.held) == entry.max_leases, "a free lease while one waits"
            assert entry.held or entry.waiting, f"idle {name} not forgotten"
            assert all(answered.get(lease) is True for lease in entry.held), "held but not granted"
            assert all(lease not in answered for lease in entry.waiting), "answered yet waiting"


def test_close_answers_the_waiters_false_and_forgets_the_leases() -> None:
    c = Coordination(lease_timeout=None)
    acquire(c, "a", kind=SEMAPHORE, max_leases=1)
    acquire(c, "w", kind=SEMAPHORE, max_leases=1)
    assert c.close(SEMAPHORE, "x") == ([Answer("w", False)], 1)
    assert c.names == {}
    with pytest.raises(RuntimeError, match="no such lease"):
        c.release(SEMAPHORE, "x", "a", now=1.0)
    assert c.close(SEMAPHORE, "never-used") == ([], 0)
    c.set_event("flag")
    with pytest.raises(ValueError, match="in use by a Event"):
        c.close(SEMAPHORE, "flag")
