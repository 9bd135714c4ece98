"""The launcher: how a taskmill program runs on a remote host, tied to its SSH channel.

Theory of operation
-------------------
:class:`~taskmill.cluster.ssh.SSHCluster` does not run ``taskmill-worker``
on a host directly; it runs ``PYTHON -c SOURCE MODULE ARGS...``, where SOURCE
is this file's text (so the host needs nothing but a python to run it, and the
launcher can say so clearly when taskmill is missing there).  The launcher

1. reads one line from its stdin: a JSON object of environment variables
   (the cluster's secret, ``TASKMILL_TOKEN``).  The secret thus never
   appears in a command line (``ps`` shows those to every user) nor on the
   SSH environment channel (which sshd drops unless ``AcceptEnv`` lists it);
2. checks that this python can import taskmill (else exit
   :data:`NO_TASKMILL_EXIT` with a message);
3. runs ``python -m MODULE ARGS...`` with those variables, in a process group
   of its own, and says :data:`STARTED` on stderr;
4. then reads its stdin until end-of-file: the client closes its end (or
   its SSH connection, or the client dies and its connection drops), and the
   launcher sends SIGTERM to the program's process group (a nanny stops its
   worker gracefully), SIGKILL after :data:`GRACE` seconds;
5. when the program ends by itself, the launcher kills what is left of its
   process group and exits with the program's status.

So no process of the cluster outlives its SSH channel.  The file must use the
standard library only: it runs before anything of taskmill is imported.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading

#: what the launcher writes on stderr once the program runs
STARTED = "taskmill-launcher: started"
#: its exit status when the python cannot import taskmill
NO_TASKMILL_EXIT = 97
#: seconds between SIGTERM and SIGKILL once the client is gone
GRACE = 10.0


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _follow(child: subprocess.Popen[bytes]) -> None:
    """When the program ends: clean its group up and exit with its status."""
    status = child.wait()
    _kill_group(child.pid, signal.SIGKILL)
    os._exit(status if status >= 0 else 128 - status)


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> None:
    """``launcher MODULE ARGS...``: run ``python -m MODULE ARGS...`` as above."""
    os.environ.update(json.loads(sys.stdin.readline() or "{}"))
    if importlib.util.find_spec("taskmill") is None:
        sys.stderr.write(f"taskmill-launcher: {sys.executable} cannot import taskmill\n")
        sys.exit(NO_TASKMILL_EXIT)
    child = subprocess.Popen([sys.executable, "-m", *argv], stdin=subprocess.DEVNULL,
                             start_new_session=True)
    sys.stderr.write(f"{STARTED} {argv[0]} (pid {child.pid})\n")
    sys.stderr.flush()
    threading.Thread(target=_follow, args=(child,), daemon=True).start()
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _stop)
    try:
        while os.read(0, 65536):
            pass
    except (SystemExit, OSError):
        pass
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    _kill_group(child.pid, signal.SIGTERM)
    try:
        child.wait(GRACE)
    except subprocess.TimeoutExpired:
        pass
    _kill_group(child.pid, signal.SIGKILL)
    # _follow exits the process once the program is reaped
    threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1:])
