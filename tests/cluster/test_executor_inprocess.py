"""The Executor against an in-process cluster: the API.md contract, end to end."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import textwrap

import pytest

from taskmill import Executor, FutureLostError, fire_and_forget, wait
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)


def inc(x: int) -> int:
    return x + 1


def add(x: int, y: int) -> int:
    return x + y


def fail(x: int) -> int:
    raise ValueError(f"bad value {x}")


def test_original_example(inprocess_executor: Executor) -> None:
    e = inprocess_executor
    a = e.submit(inc, 1)
    b = e.submit(inc, 100)
    c = e.submit(add, a, b)
    assert c.result() == 103
    assert c.status == "finished"


def test_map_and_gather_nested(inprocess_executor: Executor) -> None:
    e = inprocess_executor
    futures = e.map(inc, range(50))
    assert e.gather(futures) == list(range(1, 51))
    nested = {"a": futures[0], "b": [futures[1], (futures[2], 7)]}
    assert e.gather(nested) == {"a": 1, "b": [2, (3, 7)]}


def test_futures_inside_containers_are_dependencies(inprocess_executor: Executor) -> None:
    e = inprocess_executor
    xs = e.map(inc, range(5))
    total = e.submit(sum, xs)
    assert total.result() == 15
    d = e.submit(lambda d: d["x"] + d["y"], {"x": xs[0], "y": xs[4]})
    assert d.result() == 6


def test_pure_keys_are_reused_and_impure_are_not(inprocess_executor: Executor) -> None:
    e = inprocess_executor
    assert e.submit(inc, 41).key == e.submit(inc, 41).key
    assert e.submit(inc, 41, pure=False).key != e.submit(inc, 41, pure=False).key
    assert e.submit(inc, 1).key != e.submit(inc, 1.0).key  # equal hashes, different calls


def test_error_has_type_cause_task_and_worker(inprocess_executor: Executor) -> None:
    e = inprocess_executor
    f = e.submit(fail, 3)
    with pytest.raises(ValueError, match="bad value 3") as info:
        f.result()
    cause = str(info.value.__cause__)
    assert "fail" in cause and f.key in cause and "tcp://" in cause
    assert f.status == "error"
    assert "raise ValueError" in (f.traceback() or "")
    dependent = e.submit(inc, f)
    with pytest.raises(ValueError):
        dependent.result()


def test_scatter_shapes_and_broadcast(inprocess_executor: Executor) -> None:
    e = inprocess_executor
    assert e.gather(e.scatter([1, 2, 3])) == [1, 2, 3]
    fd = e.scatter({"x": 10, "y": 20})
    assert set(fd) == {"x", "y"} and e.gather(fd) == {"x": 10, "y": 20}
    single = e.scatter(123)
    assert single.result() == 123
    assert e.submit(inc, single).result() == 124
    everywhere = e.scatter([b"payload"], broadcast=True)[0]
    workers = e.who_has([everywhere])[everywhere.key]
    assert sorted(workers) == sorted(e.nthreads())


def test_cluster_queries_have_documented_shapes(inprocess_executor: Executor) -> None:
    e = inprocess_executor
    info = e.scheduler_info()
    assert info["address"].startswith("tcp://")
    assert len(info["workers"]) == 2
    for address, w in info["workers"].items():
        assert address.startswith("tcp://")
        assert w["nthreads"] == 1 and w["memory_limit"] > 0
    assert e.nthreads() == {a: 1 for a in info["workers"]}
    f = e.submit(inc, 1000)
    f.result()
    assert set(e.who_has([f])[f.key]) <= set(info["workers"])
    assert any(f.key in keys for keys in e.has_what().values())
    assert e.run(os.getpid) == {a: os.getpid() for a in info["workers"]}


def test_cancel_stops_a_pending_task(inprocess_executor: Executor) -> None:
    e = inprocess_executor
    import time

    blocker = e.map(time.sleep, [0.3, 0.3], pure=False)
    f = e.submit(inc, 1, pure=False)
    assert f.cancel()
    assert f.cancelled() and f.status == "cancelled"
    with pytest.raises(concurrent.futures.CancelledError):
        f.result()
    wait(blocker)


def test_retries(inprocess_executor: Executor, tmp_path: object) -> None:
    e = inprocess_executor
    counter = os.path.join(str(tmp_path), "count")

    def flaky() -> str:
        n = int(open(counter).read()) if os.path.exists(counter) else 0
        with open(counter, "w") as fh:
            fh.write(str(n + 1))
        if n < 2:
            raise OSError("transient")
        return "ok"

    assert e.submit(flaky, retries=2, pure=False).result() == "ok"
    with open(counter, "w") as fh:
        fh.write("0")
    with pytest.raises(OSError):
        e.submit(flaky, retries=1, pure=False).result()


def test_fire_and_forget_runs_to_completion(inprocess_executor: Executor, tmp_path: object) -> None:
    e = inprocess_executor
    marker = os.path.join(str(tmp_path), "done")

    def touch(path: str) -> None:
        with open(path, "w") as fh:
            fh.write("x")

    f = e.submit(touch, marker, pure=False)
    fire_and_forget(f)
    del f
    wait_for(lambda: os.path.exists(marker), message="fire-and-forget task ran")


def test_upload_file_makes_module_importable(inprocess_executor: Executor, tmp_path: object) -> None:
    e = inprocess_executor
    path = os.path.join(str(tmp_path), "tm_uploaded_mod.py")
    with open(path, "w") as fh:
        fh.write(textwrap.dedent("""
            def answer():
                return 42
        """))
    e.upload_file(path)

    def use() -> int:
        import tm_uploaded_mod

        return tm_uploaded_mod.answer()

    assert e.submit(use, pure=False).result() == 42
    with pytest.raises(ValueError, match=".py"):
        e.upload_file(os.path.join(str(tmp_path), "notes.txt"))


def test_unpicklable_argument_fails_at_submit(inprocess_executor: Executor) -> None:
    import threading

    with pytest.raises(TypeError, match="lock"):
        inprocess_executor.submit(inc, threading.Lock())


def test_two_clients_share_without_releasing_each_others_data(inprocess_executor: Executor) -> None:
    e1 = inprocess_executor
    with Executor(e1.scheduler_address, set_as_default=False) as e2:
        f1 = e1.submit(inc, 9000)
        f2 = e2.submit(inc, 9000)
        assert f1.key == f2.key
        assert f1.result() == f2.result() == 9001
        f1.release()
        del f1
        # e2 still holds it: the data must stay and stay reachable
        assert e2.gather(f2) == 9001
        assert e2.who_has([f2])[f2.key]
        s = e2.scatter(55)
        assert e1.submit(inc, 1).result() == 2
        assert s.result() == 55
    # e2 closed: its keys are released, e1 keeps working
    assert e1.submit(inc, 2).result() == 3


def test_submit_after_close_raises(no_leaks: None) -> None:
    e = Executor(n_workers=1, threads_per_worker=1, processes=False, set_as_default=False)
    e.close()
    e.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        e.submit(inc, 1)


def test_wrong_address_names_it_within_timeout(no_leaks: None) -> None:
    import time

    start = time.monotonic()
    with pytest.raises(OSError, match="127.0.0.1:1"):
        Executor("127.0.0.1:1", timeout=1)
    assert time.monotonic() - start < 5


def test_restart_drops_data_and_stays_usable(no_leaks: None) -> None:
    with Executor(n_workers=2, threads_per_worker=1, processes=False, set_as_default=False) as e:
        f = e.submit(inc, 1)
        assert f.result() == 2
        e.restart()
        wait_for(lambda: len(e.nthreads()) == 2, message="workers back after restart")
        with pytest.raises(concurrent.futures.CancelledError):
            f.result()
        assert e.submit(inc, 2).result() == 3


def test_restart_workers_needs_nannies(no_leaks: None) -> None:
    with Executor(n_workers=1, threads_per_worker=1, processes=False, set_as_default=False) as e:
        (address,) = e.nthreads()
        with pytest.raises(ValueError, match=r"run without a nanny, which is what restarts"):
            e.restart_workers([address])
        assert e.submit(inc, 1).result() == 2  # nothing restarted


def test_asynchronous_mode(no_leaks: None) -> None:
    async def main() -> None:
        async with Executor(asynchronous=True, n_workers=1, threads_per_worker=1,
                            processes=False, set_as_default=False) as e:
            f = e.submit(inc, 1)
            assert await f == 2
            xs = e.map(inc, range(3))
            assert await e.gather(xs) == [1, 2, 3]
            s = await e.scatter([4, 5])
            assert await e.gather(s) == [4, 5]
            assert len(await e.nthreads()) == 1

    asyncio.run(main())


def test_lost_error_type_is_exported() -> None:
    assert issubclass(FutureLostError, Exception)


def test_releases_stay_ordered_with_submissions(inprocess_executor: Executor) -> None:
    e = inprocess_executor
    for i in range(200):
        f = e.submit(inc, 20_000 + i)
        g = e.submit(inc, f)
        del f  # released right after the dependent was submitted: must not lose the input
        assert g.result() == 20_002 + i
    for _ in range(50):  # release and re-submit the same pure key in quick succession
        e.submit(inc, 31_337)
        assert e.submit(inc, 31_337).result() == 31_338


def array_sum(_: object, arr: object) -> int:
    return int(arr.sum())  # type: ignore[attr-defined]


def test_an_argument_is_captured_at_submit_even_while_the_task_waits(
        inprocess_executor: Executor) -> None:
    """The embedded scheduler holds submitted tasks as objects (no sockets in
    between); an out-of-band numpy argument must still be a private copy."""
    from tests.client.gates import Gates, gated

    np = pytest.importorskip("numpy")
    e = inprocess_executor
    gates = Gates()
    try:
        blocker = e.submit(gated, gates.new(), pure=False)
        arr = np.arange(100_000, dtype="i8")
        total = e.submit(array_sum, blocker, arr)  # waits on the scheduler for its input
        arr[:] = 0
        gates.open_all()
        assert total.result() == sum(range(100_000))
    finally:
        gates.open_all()


def test_many_futures_of_one_key_each_complete(inprocess_executor: Executor) -> None:
    e = inprocess_executor
    first = e.submit(inc, 41)
    assert first.result() == 42
    again = [e.submit(inc, 41) for _ in range(2000)]  # the same pure key, already in memory
    assert {f.key for f in again} == {first.key}
    assert e.gather(again) == [42] * 2000
    assert all(f.done() and f.status == "finished" for f in again)
