"""Starting a worker process with a bad option: it must stop before it registers."""

from __future__ import annotations

import os
import subprocess
import sys


def worker_process_with_env(**env: str) -> subprocess.CompletedProcess[str]:
    """Run a worker process with ``env`` added to the environment, aimed at
    port 9 (discard), where no scheduler answers: a worker that got as far as
    connecting would retry until the timeout instead of exiting."""
    return subprocess.run([sys.executable, "-m", "taskmill.server.worker_process", "--scheduler",
                           "tcp://127.0.0.1:9", "--nthreads", "1"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=30)
