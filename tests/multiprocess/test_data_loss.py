"""Scattered data and real worker processes: SIGKILL loses what had one copy,
replicate / broadcast copies survive, retiring or SIGTERM hands data over
(a SIGTERMed worker process is replaced by its nanny, a retired one is not)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from taskmill import Executor, FutureLostError
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(120)


def pids(e: Executor) -> dict[str, int]:
    return {w: i["pid"] for w, i in e.scheduler_info()["workers"].items()}


def test_sigkill_loses_single_copies_and_keeps_replicated_ones() -> None:
    with Executor(n_workers=3, threads_per_worker=1, set_as_default=False) as e:
        procs = pids(e)
        a = sorted(procs)[0]
        single = e.scatter("only on a", workers=[a])
        replicated = e.scatter("replicated", workers=[a])
        e.replicate(replicated, n=2)
        everywhere = e.scatter("broadcast", broadcast=True)
        assert a in e.who_has(replicated)[replicated.key] and len(e.who_has(replicated)[replicated.key]) == 2

        os.kill(procs[a], signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(FutureLostError) as info:
            single.result(timeout=10)
        assert time.monotonic() - start < 5
        assert single.status == "lost"
        assert a in str(info.value) and "SIGKILL" in str(info.value)
        assert replicated.result(timeout=10) == "replicated"
        assert everywhere.result(timeout=10) == "broadcast"
        wait_for(lambda: len(e.nthreads()) == 3, timeout=30, message="the nanny restarted the worker")


def test_retired_workers_stay_down_and_sigtermed_ones_are_replaced_with_their_data_kept() -> None:
    with Executor(n_workers=3, threads_per_worker=1, set_as_default=False) as e:
        assert e.cluster is not None
        procs = pids(e)
        nannies = e.cluster.workers  # the cluster forgets a nanny once it closed
        a, b, _ = sorted(procs)
        on_a = e.scatter(list(range(1000)), workers=[a])
        on_b = e.scatter({"x": 1}, workers=[b])

        assert e.retire_workers([a]) == [a]
        # SIGTERM to the worker process (not its nanny): it hands its data over,
        # exits, and its nanny starts a fresh worker process
        os.kill(procs[b], signal.SIGTERM)
        wait_for(lambda: set(e.nthreads()).isdisjoint({a, b}) and len(e.nthreads()) == 2,
                 timeout=30, message="a gone for good, b replaced by a fresh worker")
        assert e.gather([on_a, on_b]) == [list(range(1000)), {"x": 1}]
        wait_for(lambda: sum(n.status.value == "closed" for n in nannies) == 1, timeout=30,
                 message="the nanny of the retired worker closed instead of restarting it")
        assert [n.last_exit for n in nannies if n.status.value != "closed" and n.restarts] == [
            "worker process stopped by a signal after handing its data over"]


def slow_seed(seconds: float) -> int:
    time.sleep(seconds)
    return 7


def big_result(seed: int) -> bytes:
    return bytes([seed]) * 100_000  # too big to ride along with the in-memory report


def test_result_of_a_lost_key_waits_for_a_recomputation_longer_than_the_fetch_retries() -> None:
    # the client's fetch retries (5, about 3 s of pauses in all) only count holders that
    # fail; waiting while the scheduler recomputes a long lineage is not a failure
    with Executor(n_workers=2, threads_per_worker=1, set_as_default=False) as e:
        seed = e.submit(slow_seed, 4.0)
        big = e.submit(big_result, seed)
        wait_for(lambda: big.done(), timeout=30, message="big computed")
        del seed  # its data is freed: recomputing `big` takes 4 s
        holder = e.who_has(big)[big.key]
        assert len(holder) == 1
        wait_for(lambda: len(e.who_has()) == 1, timeout=10, message="the seed's data freed")
        os.kill(pids(e)[holder[0]], signal.SIGKILL)
        start = time.monotonic()
        assert big.result(timeout=60) == bytes([7]) * 100_000
        assert time.monotonic() - start > 3.5  # it was recomputed, lineage and all
