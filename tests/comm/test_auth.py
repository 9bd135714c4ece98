"""Shared-token authentication: an HMAC challenge both ways, before any message."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from taskmill.comm import Comm, connect, listen, run
from taskmill.comm.auth import AuthenticationError, configured_token

pytestmark = pytest.mark.timeout(30)


async def echo(comm: Comm) -> None:
    while True:
        await comm.write(await comm.read())


def serve_then(monkeypatch: pytest.MonkeyPatch, server_token: str | None, client_token: str | None,
               body: Any, address: str = "tcp://127.0.0.1:0") -> Any:
    async def main() -> Any:
        if server_token is None:
            monkeypatch.delenv("TASKMILL_TOKEN", raising=False)
        else:
            monkeypatch.setenv("TASKMILL_TOKEN", server_token)
        listener = await listen(address, echo)  # takes the token it finds now
        if client_token is None:
            monkeypatch.delenv("TASKMILL_TOKEN", raising=False)
        else:
            monkeypatch.setenv("TASKMILL_TOKEN", client_token)
        try:
            return await body(listener)
        finally:
            await listener.stop()

    monkeypatch.delenv("TASKMILL_TOKEN_FILE", raising=False)
    return run(main())


def test_the_same_token_on_both_sides_connects_and_the_handshake_is_invisible(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(listener: Any) -> None:
        comm = await connect(listener.address)
        await comm.write({"first": "message"})  # the handler's first read is ours
        assert await comm.read() == {"first": "message"}
        await comm.close()

    serve_then(monkeypatch, "s3cret", "s3cret", body)


@pytest.mark.parametrize("server, client, message", [
    ("s3cret", None, "requires a token: set $TASKMILL_TOKEN"),
    (None, "s3cret", "does not use a token, but this side has one"),
    ("s3cret", "other", "refused our token"),
])
def test_a_token_mismatch_fails_at_once_with_what_to_fix(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        server: str | None, client: str | None, message: str) -> None:
    async def body(listener: Any) -> None:
        started = time.monotonic()
        with pytest.raises(AuthenticationError, match=message.replace("$", r"\$")) as info:
            await connect(listener.address, timeout=10)
        assert time.monotonic() - started < 5  # not retried until the timeout
        assert listener.address in str(info.value)
        # the listener keeps serving those who know the token
        if server is None:
            monkeypatch.delenv("TASKMILL_TOKEN")
        else:
            monkeypatch.setenv("TASKMILL_TOKEN", server)
        comm = await connect(listener.address)
        await comm.write("fine")
        assert await comm.read() == "fine"
        await comm.close()

    with caplog.at_level(logging.WARNING, logger="taskmill.comm"):
        serve_then(monkeypatch, server, client, body)
    if server is not None:  # the accepting side logs whom it refused
        assert "refused a connection from" in caplog.text


def test_garbage_instead_of_an_answer_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    async def body(listener: Any) -> None:
        host, port = listener.address[len("tcp://"):].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(struct.pack("<2Q", 1, 3) + b"\x92\x01\x02")  # [1, 2]: not an answer
        data = await reader.read()  # to the end: refused and closed
        assert b"challenge" in data
        writer.close()

    with caplog.at_level(logging.WARNING, logger="taskmill.comm"):
        serve_then(monkeypatch, "s3cret", "s3cret", body)
    assert "refused a connection from" in caplog.text and "malformed handshake" in caplog.text


def test_in_process_comms_do_not_authenticate(monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(listener: Any) -> None:
        comm = await connect(listener.address)
        await comm.write("same process")
        assert await comm.read() == "same process"
        await comm.close()

    serve_then(monkeypatch, "s3cret", None, body, address="inproc://")


def test_the_token_may_come_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TASKMILL_TOKEN", raising=False)
    assert configured_token() is None
    path = tmp_path / "token"
    path.write_text("from-a-file\nignored second line\n")
    monkeypatch.setenv("TASKMILL_TOKEN_FILE", str(path))
    assert configured_token() == b"from-a-file"
    monkeypatch.setenv("TASKMILL_TOKEN", "the-variable-wins")
    assert configured_token() == b"the-variable-wins"
    monkeypatch.delenv("TASKMILL_TOKEN")
    path.write_text("")
    with pytest.raises(AuthenticationError, match="is empty"):
        configured_token()
    monkeypatch.setenv("TASKMILL_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(AuthenticationError, match="cannot read the token file"):
        configured_token()
