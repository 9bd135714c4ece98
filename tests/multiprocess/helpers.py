"""Running taskmill's command-line programs as real processes in tests."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

BIN = os.path.dirname(sys.executable)


class Proc:
    """A child process whose merged output is collected line by line."""

    def __init__(self, *args: str) -> None:
        self.popen = subprocess.Popen(
            [os.path.join(BIN, args[0]), *args[1:]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True)
        self.lines: list[str] = []
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line)
            self._queue.put(line)

    def wait_for_line(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """The first output line matching ``pattern`` (seen so far or to come)."""
        regex = re.compile(pattern)
        for line in list(self.lines):
            m = regex.search(line)
            if m:
                return m
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            m = regex.search(line)
            if m:
                return m
        raise AssertionError(f"no line matching {pattern!r} within {timeout}s; output:\n{''.join(self.lines)}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
            raise AssertionError(f"process did not exit within {timeout}s of signal {sig}")


@contextmanager
def running(*args: str) -> Iterator[Proc]:
    proc = Proc(*args)
    try:
        yield proc
    finally:
        if proc.popen.poll() is None:
            try:
                os.killpg(proc.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.popen.wait()


def start_scheduler(proc: Proc) -> str:
    """The address a scheduler started with ``--port 0`` announces."""
    return proc.wait_for_line(r"Executor\('(tcp://[0-9.]+:[0-9]+)'\)").group(1)
