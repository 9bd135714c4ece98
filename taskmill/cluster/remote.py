"""One taskmill program on a remote host, over its own SSH connection.

Theory of operation
-------------------
A :class:`RemoteProcess` opens an SSH connection (asyncssh) to its host,
runs the program there through the launcher (:mod:`taskmill.cluster.launcher`,
whose source travels in the command line) and hands the launcher the
program's secret environment as the first line of its stdin.  From then on:

* the program's output (stdout and stderr, merged) is read without pause, so
  the channel never fills and blocks the program; each line goes to the
  ``taskmill.cluster.ssh`` logger at DEBUG, prefixed with the host, and the
  last lines are kept for error messages;
* ``start`` returns once a line matches what the caller waits for (the
  launcher's "started", the scheduler's "scheduler ready ...") and raises,
  naming the host and the fix, when the connection fails, the program ends
  first or the deadline passes;
* ``close`` closes the program's stdin: the launcher stops the program and
  everything it started, and the connection is closed after it exits (or
  after the launcher's grace time; the launcher kills the rest on its own).

Errors people meet on a first try are told apart: connection refused, a
key the host does not accept, a host key that is unknown or changed, a
remote python that does not exist or cannot import taskmill.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shlex
import warnings
from collections import deque
from pathlib import Path
from typing import Any

try:
    with warnings.catch_warnings():  # asyncssh still names DSA keys, which cryptography deprecates
        warnings.filterwarnings("ignore", message="DSA is deprecated")
        import asyncssh
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("SSHCluster needs asyncssh: pip install 'taskmill[ssh]' (or asyncssh)") from exc

from taskmill.cluster import launcher

logger = logging.getLogger("taskmill.cluster.ssh")

#: output lines kept for error messages
TAIL_LINES = 40
#: the launcher's source, sent as ``python -c SOURCE``
LAUNCHER_SOURCE = Path(launcher.__file__).read_text(encoding="utf-8")
#: what a POSIX shell exits with when it cannot find or run a command
_COMMAND_NOT_FOUND = (126, 127)


class RemoteError(RuntimeError):
    """A program could not be started on a host; the message names the host and the fix."""


def launch_command(python: str, module: str, args: list[str]) -> str:
    """The shell command that runs ``python -m module args`` through the launcher."""
    return shlex.join([python, "-c", LAUNCHER_SOURCE, module, *args])


async def connect(host: str, options: dict[str, Any], timeout: float) -> asyncssh.SSHClientConnection:
    """An SSH connection to ``host`` with asyncssh ``options``; errors say what to fix."""
    port = options.get("port", 22)
    where = f"{host}:{port}"
    try:
        return await asyncio.wait_for(asyncssh.connect(host, **options), timeout)
    except asyncssh.HostKeyNotVerifiable as exc:
        raise RemoteError(
            f"SSH to {where}: the host key is unknown or has changed ({exc.reason}). If the host "
            f"is the one you mean, add its key to your known_hosts (ssh-keyscan -p {port} {host} "
            f">> ~/.ssh/known_hosts, after removing a stale entry with ssh-keygen -R {host}), or "
            f"pass connect_options={{'known_hosts': PATH}}") from None
    except asyncssh.PermissionDenied as exc:
        user = options.get("username", "your user name")
        raise RemoteError(
            f"SSH to {where} refused to log in {user!r} ({exc.reason}): the host does not "
            f"accept the key offered. Check connect_options 'client_keys' and 'username', and "
            f"that the public key is in ~/.ssh/authorized_keys on {host}") from None
    except asyncssh.Error as exc:
        raise RemoteError(f"SSH to {where} failed: {exc.reason}") from None
    except asyncio.TimeoutError:
        raise RemoteError(f"SSH to {where}: no answer within {timeout:g}s; check the host name, "
                          f"the port (connect_options={{'port': ...}}) and firewalls") from None
    except OSError as exc:
        raise RemoteError(f"cannot connect to {where} over SSH: {exc.strerror or exc}. Is sshd "
                          f"running there, and is the port right (connect_options="
                          f"{{'port': ...}})?") from None


class RemoteProcess:
    """A program started through the launcher on ``host`` (see the module docstring)."""

    def __init__(self, host: str, connect_options: dict[str, Any], python: str, module: str,
                 args: list[str], environ: dict[str, str], label: str) -> None:
        self.host = host
        self.connect_options = connect_options
        self.python = python
        self.module = module
        self.args = args
        self.label = label
        self._environ = environ
        self._conn: asyncssh.SSHClientConnection | None = None
        self._proc: asyncssh.SSHClientProcess[str] | None = None
        self._reader: asyncio.Task[None] | None = None
        #: output lines for ``start`` to look at (only while it looks: then None)
        self._lines: asyncio.Queue[str | None] | None = asyncio.Queue()
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.closing = False

    def __repr__(self) -> str:
        return f"<RemoteProcess {self.label} on {self.host}: {self.module}>"

    async def start(self, timeout: float) -> None:
        """Connect and start the program (then ``expect`` what it says)."""
        self._conn = await connect(self.host, self.connect_options, timeout)
        command = launch_command(self.python, self.module, self.args)
        try:
            self._proc = await self._conn.create_process(command, stderr=asyncssh.STDOUT,
                                                         encoding="utf-8", errors="replace")
        except asyncssh.Error as exc:
            raise RemoteError(f"{self.label} on {self.host}: SSH would not run a command "
                              f"({exc.reason}); check the account's shell and sshd's "
                              f"MaxSessions") from None
        self._proc.stdin.write(json.dumps(self._environ) + "\n")
        self._reader = asyncio.ensure_future(self._read())

    async def expect(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """The match of the next output line matching ``pattern``; raises when the
        program ends first or says nothing of the kind within ``timeout``."""
        lines = self._lines
        if lines is None:
            raise RuntimeError(f"{self!r}: its output is no longer watched")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                line = await asyncio.wait_for(lines.get(), deadline - loop.time())
            except asyncio.TimeoutError:
                raise RemoteError(f"{self.label} on {self.host}: {self.module} did not say "
                                  f"it was ready within {timeout:g}s{self._output()}") from None
            if line is None:
                lines.put_nowait(None)  # ended: so says every later look
                raise RemoteError(self._why_ended())
            found = pattern.search(line)
            if found:
                return found

    def stop_watching(self) -> None:
        """Keep only the last lines from now on (nobody will ``expect`` more)."""
        self._lines = None

    async def _read(self) -> None:
        assert self._proc is not None
        try:
            async for line in self._proc.stdout:
                line = line.rstrip("\n")
                self.tail.append(line)
                logger.debug("[%s %s] %s", self.host, self.label, line)
                if self._lines is not None:
                    self._lines.put_nowait(line)
            # the exit status follows the end of the output
            await asyncio.wait_for(self._proc.wait_closed(), 5.0)
        except (asyncssh.Error, OSError, asyncio.TimeoutError) as exc:
            self.tail.append(f"(SSH channel lost: {exc!r})")
        finally:
            if self._lines is not None:
                self._lines.put_nowait(None)
            if not self.closing and self._conn is not None:
                self._conn.close()  # ended by itself: nothing more to say on this connection

    def ended(self) -> str | None:
        """Why the program stopped by itself; None while it runs or after ``close``."""
        if self.closing or self._reader is None or not self._reader.done():
            return None
        return self._why_ended()

    def _output(self) -> str:
        lines = "\n  ".join(self.tail)
        return f"; its last output:\n  {lines}" if lines else "; it wrote nothing"

    def _why_ended(self) -> str:
        status = self._proc.exit_status if self._proc is not None else None
        signal = self._proc.exit_signal if self._proc is not None else None
        where = f"{self.label} on {self.host}"
        if status == launcher.NO_TASKMILL_EXIT:
            return (f"{where}: the remote python {self.python} cannot import taskmill: install "
                    f"taskmill there, or pass remote_python= the python that has it")
        if status in _COMMAND_NOT_FOUND:
            return (f"{where}: the remote python {self.python!r} could not be run (exit status "
                    f"{status}): pass remote_python= the absolute path of a python with taskmill "
                    f"on that host{self._output()}")
        how = (f"with status {status}" if status is not None and status >= 0 else
               f"by signal {signal[0]}" if signal else "(the SSH channel closed)")
        return f"{where}: {self.module} exited {how}{self._output()}"

    async def close(self, timeout: float) -> None:
        """Stop the program (closing its stdin) and the connection; idempotent."""
        self.closing = True
        if self._proc is not None:
            try:
                self._proc.stdin.write_eof()
            except (OSError, asyncssh.Error):
                pass
            if self._reader is not None:
                await asyncio.wait([self._reader], timeout=timeout)
                self._reader.cancel()
                await asyncio.gather(self._reader, return_exceptions=True)
        if self._conn is not None:
            self._conn.close()
            await self._conn.wait_closed()
