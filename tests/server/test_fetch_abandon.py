"""A worker stops waiting for a peer the scheduler removed (worker-removed):
a silent peer (stopped, or behind a cut link) would never answer its get-data,
whose own timeout is minutes long."""

from __future__ import annotations

import asyncio

import pytest

from taskmill.server.worker import Worker


def test_a_fetch_from_a_removed_peer_fails_at_once_with_the_reason() -> None:
    async def run() -> None:
        held: list[asyncio.StreamWriter] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)  # accepts, never answers (like a SIGSTOPped process)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        peer = "tcp://127.0.0.1:%d" % server.sockets[0].getsockname()[1]
        worker = Worker("tcp://127.0.0.1:9")  # not started: only its fetch path is used
        try:
            fetch = asyncio.ensure_future(worker._ask_peer(peer, ("x",)))
            while peer not in worker._fetching:  # the request is in flight
                await asyncio.sleep(0)
            worker._abandon_fetches(peer, "it was silent for 15.0s")
            with pytest.raises(ConnectionError, match=r"removed worker tcp://\S+: it was silent"):
                await asyncio.wait_for(fetch, 5)
            assert peer not in worker._fetching
            # abandoning again (nothing in flight) is harmless
            worker._abandon_fetches(peer, "again")
        finally:
            await worker.pool.close()
            for writer in held:
                writer.close()
            server.close()
            await server.wait_closed()

    asyncio.run(run())
