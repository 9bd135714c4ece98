"""Making sure a worker process never outlives the process that started it.

Two independent guards, both cheap: the kernel's parent-death signal
(Linux ``prctl(PR_SET_PDEATHSIG)``), and a thread that waits for end-of-file
on a pipe from the parent (works everywhere: when the parent dies for any
reason, even SIGKILL, the pipe closes).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def exit_when_pipe_closes(fd: int) -> None:
    """Exit at once when ``fd`` (a pipe whose writer is the parent) reaches EOF."""

    def watch() -> None:
        try:
            while os.read(fd, 1024):
                pass
        except OSError:
            pass
        os._exit(70)

    threading.Thread(target=watch, name="taskmill-parent-watch", daemon=True).start()
