"""The scheduler file: where a scheduler tells its workers and clients how to reach it.

Theory of operation
-------------------
On a batch system the scheduler's host and port are not known when the job
scripts are written, so ``taskmill-scheduler --scheduler-file PATH`` writes
them to a file on a shared filesystem, and ``taskmill-worker --scheduler-file
PATH`` and ``Executor(scheduler_file=PATH)`` read it.  The file is JSON::

    {"type": "taskmill-scheduler", "id": "scheduler-...", "address": "tcp://host:port",
     "token": "..."}          # "token" only when the scheduler has one

It may hold the cluster's secret, so:

* writing is atomic and private from the first byte: the content goes to a
  temporary file created with mode 0600 (``O_EXCL``, in the same directory),
  which is then renamed over ``PATH``; no reader ever sees a partial file or
  a moment where it is readable by others;
* reading refuses a file that belongs to another user (whoever writes it
  decides where our workers send their results and from whom they take
  code) or that others may read or write (``chmod 600`` fixes it), and one
  that is not a scheduler file, each with a :class:`SchedulerFileError`
  naming the file and the fix;
* the scheduler removes the file when it closes, unless another scheduler
  has written its own there since (the ``id`` differs).

A worker started before its scheduler (batch jobs start in any order)
waits for the file to appear: :func:`wait_for_scheduler_file`.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from dataclasses import dataclass, replace

from taskmill.comm import normalize_address
from taskmill.security import Security

FILE_TYPE = "taskmill-scheduler"
#: seconds between two looks for a scheduler file that is not there yet
POLL_INTERVAL = 0.2


class SchedulerFileError(ValueError):
    """A scheduler file that cannot be used: missing, unreadable, malformed or unsafe."""


@dataclass(frozen=True)
class SchedulerContact:
    """What a scheduler file says: where the scheduler listens, and its secret."""

    address: str
    security: Security
    id: str = ""

    def security_here(self) -> Security | None:
        """What to connect with: the file's token with this machine's TLS files
        (``$TASKMILL_TLS_*``), or None (the environment's settings) when the
        file has no token."""
        if self.security.token is None:
            return None
        return replace(Security.from_environment(), token=self.security.token)


def write_scheduler_file(path: str, address: str, security: Security, scheduler_id: str) -> None:
    """Write ``PATH`` atomically, mode 0600, with the address and the token (if any)."""
    content: dict[str, str] = {"type": FILE_TYPE, "id": scheduler_id, "address": address}
    if security.token is not None:
        content["token"] = security.token
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise SchedulerFileError(f"cannot write the scheduler file {path}: {exc.strerror}; "
                                 "give --scheduler-file a path in a writable directory") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(content, f)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise


def remove_scheduler_file(path: str, scheduler_id: str) -> None:
    """Remove ``PATH`` if it is still the file of the scheduler ``scheduler_id``."""
    try:
        with open(path, encoding="utf-8") as f:
            if json.load(f).get("id") != scheduler_id:
                return  # another scheduler wrote its own file there since
        os.unlink(path)
    except (OSError, ValueError, AttributeError):
        pass  # gone already, or not ours to judge


def read_scheduler_file(path: str) -> SchedulerContact:
    """The address and security in ``PATH``; :class:`SchedulerFileError` saying
    what is wrong with the file and how to fix it otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise SchedulerFileError(f"no scheduler file at {path}: start the scheduler with "
                                 f"`taskmill-scheduler --scheduler-file {path}` first") from None
    except OSError as exc:
        raise SchedulerFileError(f"cannot read the scheduler file {path}: {exc.strerror}") from None
    try:
        _check_private(path, os.fstat(fd))
    except SchedulerFileError:
        os.close(fd)
        raise
    with os.fdopen(fd, encoding="utf-8") as f:
        try:
            content = json.load(f)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _malformed(path, f"not JSON ({exc})") from None
    if not isinstance(content, dict) or content.get("type") != FILE_TYPE:
        raise _malformed(path, f"its \"type\" is not {FILE_TYPE!r}")
    address, token = content.get("address"), content.get("token")
    if not isinstance(address, str) or not address:
        raise _malformed(path, "it has no \"address\"")
    if token is not None and (not isinstance(token, str) or not token):
        raise _malformed(path, "its \"token\" is not a non-empty string")
    try:
        address = normalize_address(address)
    except ValueError as exc:
        raise _malformed(path, str(exc)) from None
    return SchedulerContact(address, Security(token=token), str(content.get("id", "")))


async def wait_for_scheduler_file(path: str, timeout: float) -> SchedulerContact:
    """Read ``PATH`` once it exists, looking again every ``POLL_INTERVAL`` for up
    to ``timeout`` seconds (a batch system may start the worker first)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        await asyncio.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
    if not os.path.exists(path):
        raise SchedulerFileError(
            f"no scheduler file at {path} after waiting {timeout:g}s (--death-timeout): start "
            f"the scheduler with `taskmill-scheduler --scheduler-file {path}`, on a filesystem "
            "this machine shares, or wait longer with a larger --death-timeout")
    return read_scheduler_file(path)


def _check_private(path: str, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise _malformed(path, "it is not a regular file")
    if st.st_uid != os.getuid():
        raise SchedulerFileError(
            f"the scheduler file {path} belongs to {_user_name(st.st_uid)}, not to you "
            f"({_user_name(os.getuid())}): whoever writes it chooses the scheduler your workers "
            "and clients trust; use a file that your own scheduler wrote")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SchedulerFileError(
            f"the scheduler file {path} is accessible to other users (mode "
            f"{stat.filemode(st.st_mode)}) and may hold the cluster's secret: run `chmod 600 "
            f"{path}` (and change the cluster's token if others may have read it)")


def _malformed(path: str, why: str) -> SchedulerFileError:
    return SchedulerFileError(f"{path} is not a taskmill scheduler file: {why}; point "
                              "--scheduler-file at the file that `taskmill-scheduler "
                              "--scheduler-file` writes")


def _user_name(uid: int) -> str:
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name!r} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"
