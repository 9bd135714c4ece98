"""A fleet of simulated workers in one process, for ``bench/sim_workers.py``.

    python bench/sim_fleet.py tcp://127.0.0.1:PORT --workers 500 [--first 0] [--heartbeat 1.0]

Theory of operation
-------------------
Each simulated worker speaks the real worker protocol over its own TCP
connection to the scheduler, exactly as :mod:`taskmill.server.worker` does,
but runs nothing:

* it connects (:func:`taskmill.comm.connect`), sends ``register-worker``
  (``reply`` False: the answer comes on the stream) and reads
  ``worker-registered``; a refusal or any other answer stops the fleet with
  the scheduler's reason;
* the connection then becomes its stream: what it sends goes through a
  :class:`~taskmill.comm.BatchedSend`, what it reads are batches of wire
  dicts.  Each ``compute-task`` is answered at once with ``task-finished``
  (an ``int`` of 28 bytes, start = stop = now); ``free-keys`` and the other
  stream messages are only counted (the worker holds no data to drop), and
  every message's ``epoch`` is remembered as ``seen``, as the real worker's
  state machine does;
* it sends a ``heartbeat`` every ``--heartbeat`` seconds (the real worker's
  default interval is 1 s), with its count of keys "in memory".

The scheduler's ``compute-task`` is read as the wire dict (its ``key`` and
``epoch``), not decoded into a :class:`~taskmill.protocol.vocabulary.ComputeTask`:
decoding every field would only make the fleet slower, and the fleet shares
the machine's cores with the scheduler being measured.  What it sends is
built with the vocabulary's own classes (``to_wire()``), so the scheduler
sees exactly what a real worker sends.

When every worker is registered the fleet prints ``ready N`` on stdout; it
runs until it is killed (SIGTERM/SIGINT: each worker says ``unregister`` and
closes) or until the scheduler closes a stream (it then exits with status 1
naming the worker, so a scheduler crash is never mistaken for a finished run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time

from taskmill.comm import BatchedSend, CommClosedError, connect
from taskmill.protocol.vocabulary import (
    Heartbeat,
    RegisterWorker,
    RegistrationRefused,
    TaskFinished,
    Unregister,
    WorkerRegistered,
    decode,
)

#: bytes reported for every result (a small ``int``)
RESULT_NBYTES = 28


class SimulatedWorker:
    """One worker: a registered stream that finishes every task it is given at once."""

    def __init__(self, scheduler: str, address: str, name: str) -> None:
        self.scheduler = scheduler
        self.address = address
        self.name = name
        self.seen = 0  # the epoch of the last scheduler message handled
        self.finished = 0
        self.stream: BatchedSend | None = None

    async def register(self, timeout: float) -> None:
        """Connect and register; raises ``RuntimeError`` with the scheduler's
        reason when it does not answer ``worker-registered``."""
        comm = await connect(self.scheduler, timeout)
        request = RegisterWorker(self.address, 1, 2**32, None, self.name, os.getpid(),
                                 incarnation=f"{self.name}-{time.time_ns()}").to_wire()
        request["reply"] = False
        await comm.write(request)
        answer = decode(await asyncio.wait_for(comm.read(), timeout))
        if not isinstance(answer, WorkerRegistered):
            await comm.close()
            reason = answer.reason if isinstance(answer, RegistrationRefused) else repr(answer)
            raise RuntimeError(f"scheduler {self.scheduler} refused {self.name}: {reason}")
        self.stream = BatchedSend(comm)

    async def serve(self) -> None:
        """Answer the stream until the scheduler closes it."""
        assert self.stream is not None
        comm, stream = self.stream.comm, self.stream
        address = self.address
        while True:
            batch = await comm.read()
            replies = []
            now = time.time()
            for msg in batch:
                epoch = msg.get("epoch", 0)
                if epoch > self.seen:
                    self.seen = epoch
                if msg["op"] == "compute-task":
                    replies.append(TaskFinished("", address, msg["key"], RESULT_NBYTES, "int",
                                                now, now, seen=self.seen).to_wire())
            if replies:
                self.finished += len(replies)
                stream.send(*replies)

    def heartbeat(self) -> None:
        """Send one heartbeat (what the real worker reports, minus its process figures)."""
        if self.stream is not None:
            self.stream.send_messages(Heartbeat("", self.address, 0.0, in_memory=self.finished,
                                                seen=self.seen))

    async def close(self) -> None:
        """Say ``unregister`` and close the stream."""
        if self.stream is not None:
            try:
                self.stream.send_messages(Unregister())
                await asyncio.wait_for(self.stream.close(), 2)
            except (CommClosedError, OSError, asyncio.TimeoutError):
                pass


async def run_fleet(scheduler: str, count: int, first: int, heartbeat: float) -> int:
    """Register ``count`` workers, serve them until a stop signal (0) or a
    lost stream (1, the reason on stderr)."""
    workers = [SimulatedWorker(scheduler, f"tcp://127.0.0.2:{10000 + first + i}",
                               f"sim-{first + i}") for i in range(count)]
    for start in range(0, count, 50):  # not all at once: the listen backlog is finite
        await asyncio.gather(*(w.register(60.0) for w in workers[start:start + 50]))
    print(f"ready {count}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    serving = [asyncio.ensure_future(w.serve()) for w in workers]

    async def beat() -> None:
        while True:
            await asyncio.sleep(heartbeat)
            for w in workers:
                w.heartbeat()

    beating = asyncio.ensure_future(beat())
    stopped = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait([stopped, *serving], return_when=asyncio.FIRST_COMPLETED)
    beating.cancel()
    if stopped not in done:
        lost = next(w for w, s in zip(workers, serving) if s in done)
        exc = next(iter(done)).exception()
        print(f"{lost.name}: the scheduler closed its stream ({exc!r})", file=sys.stderr)
        return 1
    for s in serving:
        s.cancel()
    await asyncio.gather(*(w.close() for w in workers))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scheduler", help="the scheduler's address, tcp://host:port")
    parser.add_argument("--workers", type=int, required=True, help="workers in this process")
    parser.add_argument("--first", type=int, default=0, help="number of the first worker (names)")
    parser.add_argument("--heartbeat", type=float, default=1.0, help="seconds between heartbeats")
    args = parser.parse_args()
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, not {args.workers}")
    sys.exit(asyncio.run(run_fleet(args.scheduler, args.workers, args.first, args.heartbeat)))


if __name__ == "__main__":
    main()
