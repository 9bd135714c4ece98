"""Hosts made of Linux network namespaces on a bridge, with links that can be
cut, healed and degraded (delay, jitter, loss).

Theory of operation
-------------------
A :class:`Network` is one bridge in the root namespace, with the first address
of a private ``/24`` (chosen to overlap no route or address the machine
already has), and one namespace per :class:`Host`.  A host's only interface
(``eth0``, the next address of the ``/24``, no default route) is joined to
the bridge by its :class:`Link`:

* a veth pair: ``eth0`` in the namespace, the other end a port of the bridge;
* with an :class:`Impairment` and a kernel that has netem, the same veth pair
  with a netem qdisc on both ends (each direction delayed and lossy);
* with an :class:`Impairment` and no netem (this machine's kernel is built
  without it), two tap devices relayed by a small process
  (:mod:`tests.multihost.relay`) that drops and delays frames.

Cutting a link disables its bridge port (``bridge link set ... state 0``):
both ends keep their carrier and addresses, frames simply vanish, which is
what a silent partition looks like to TCP.  Healing sets the port forwarding
again.  The test process itself, in the root namespace, reaches every host
through the bridge's address (a client "on the LAN").

Every name this module makes starts with ``tmh<pid>`` (the pid of the test
process): namespaces ``tmh<pid>-<host>``, the bridge ``tmh<pid>br``, ports
``tmh<pid>p<n>``; :func:`sweep` removes what a
crashed session left behind (namespaces and links of pids no longer alive,
and the processes still running in those namespaces), and never touches
anything else.  :meth:`Network.close` kills whatever still runs in its
namespaces, stops the relays, and deletes the namespaces and the bridge;
:meth:`Network.leftover_processes` tells a test what would have leaked.
Nothing here changes the machine's own interfaces or routes: the only route
added is the bridge's own connected ``/24``.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.multiprocess.helpers import Proc

PREFIX = "tmh"
ROOT = Path(__file__).resolve().parents[2]  # the repository: its taskmill and tests are imported


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; a failure raises with ip's own message."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def missing() -> str | None:
    """Why this machine cannot run the suite, or None."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "making network namespaces and a bridge needs root"
    for tool in ("ip", "bridge", "tc"):
        if shutil.which(tool) is None:
            return f"the {tool!r} program (iproute2) is not installed"
    probe = f"{PREFIX}{os.getpid()}-probe"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


@functools.cache
def netem_available() -> bool:
    """Whether this kernel has netem (tried on a veth pair in a scratch namespace)."""
    scratch = f"{PREFIX}{os.getpid()}-netem"
    ip("netns", "add", scratch)
    try:
        ip("-n", scratch, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        tried = subprocess.run(["tc", "-n", scratch, "qdisc", "add", "dev", "v0", "root", "netem",
                                "delay", "1ms"], capture_output=True, text=True)
        return tried.returncode == 0
    finally:
        ip("netns", "del", scratch, check=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def namespace_pids(namespace: str) -> list[int]:
    """The processes running in ``namespace``."""
    out = ip("netns", "pids", namespace, check=False).stdout
    return [int(p) for p in out.split()]


def _kill_all(namespace: str) -> list[int]:
    """SIGKILL every process in ``namespace`` (until none is left); the pids found."""
    found: list[int] = []
    deadline = time.monotonic() + 10
    while (pids := namespace_pids(namespace)) and time.monotonic() < deadline:
        for pid in pids:
            if pid not in found:
                found.append(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    return found


def sweep() -> list[str]:
    """Remove the namespaces and links of earlier sessions whose process is gone; what was removed."""
    owner = re.compile(rf"^{PREFIX}(\d+)")
    removed: list[str] = []
    for line in ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = owner.match(name)
        if m and not _pid_alive(int(m.group(1))):
            _kill_all(name)
            ip("netns", "del", name, check=False)
            removed.append(name)
    for link in json.loads(ip("-j", "link", "show").stdout or "[]"):
        name = link.get("ifname", "")
        m = owner.match(name)
        if m and not _pid_alive(int(m.group(1))):
            ip("link", "del", name, check=False)
            removed.append(name)
    return removed


def _free_subnet() -> ipaddress.IPv4Network:
    """A private /24 that overlaps no address or route of the root namespace."""
    used = [ipaddress.ip_network(r["dst"], strict=False)
            for r in json.loads(ip("-j", "-4", "route", "show", "table", "all").stdout or "[]")
            if r.get("dst") not in (None, "default")]
    used += [ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}").network
             for link in json.loads(ip("-j", "-4", "addr", "show").stdout or "[]")
             for a in link.get("addr_info", [])]
    for i in range(256):
        candidate = ipaddress.IPv4Network(f"10.213.{(os.getpid() + i) % 256}.0/24")
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise RuntimeError("no free /24 in 10.213.0.0/16 for the test network")


def _netem(where: list[str], device: str, impairment: Impairment) -> None:
    """A netem qdisc on ``device`` (note: netem's jitter may reorder frames, the relay's does not)."""
    subprocess.run(["tc", *where, "qdisc", "add", "dev", device, "root", "netem",
                    "delay", f"{impairment.delay * 1000:.3f}ms", f"{impairment.jitter * 1000:.3f}ms",
                    "loss", f"{impairment.loss * 100:.4f}%"], check=True)


@dataclass(frozen=True)
class Impairment:
    """What a link does to each frame, in each direction: ``delay`` +- ``jitter``
    seconds (uniform), dropped with probability ``loss``."""

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0

    def __post_init__(self) -> None:
        if not (0 <= self.loss < 1 and 0 <= self.jitter <= self.delay):
            raise ValueError(f"{self}: need 0 <= loss < 1 and 0 <= jitter <= delay")


class Link:
    """A host's link to the bridge; ``port`` is its bridge port."""

    def __init__(self, port: str, relay: subprocess.Popen[str] | None = None) -> None:
        self.port = port
        self.relay = relay

    def cut(self) -> None:
        """Frames stop crossing, silently (the bridge port is disabled)."""
        subprocess.run(["bridge", "link", "set", "dev", self.port, "state", "0"], check=True)

    def heal(self) -> None:
        """Frames cross again."""
        subprocess.run(["bridge", "link", "set", "dev", self.port, "state", "3"], check=True)

    def close(self) -> None:
        """Stop the relay, if any (its taps vanish with it)."""
        if self.relay is not None and self.relay.poll() is None:
            assert self.relay.stdin is not None
            self.relay.stdin.close()  # EOF: the relay exits
            try:
                self.relay.wait(5)
            except subprocess.TimeoutExpired:
                self.relay.kill()
                self.relay.wait()


@dataclass
class Host:
    """A network namespace with one address on the test network."""

    name: str
    namespace: str
    address: str
    link: Link

    def run(self, *argv: str, env: dict[str, str] | None = None) -> Proc:
        """Start ``python ARGV`` in this host's namespace (this repository first on the path),
        with ``env`` added to the environment; its output is collected."""
        variables = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                     **(env or {})}
        program = shutil.which("ip")
        assert program is not None, "missing() checks that iproute2 is installed"
        return Proc(program, "netns", "exec", self.namespace, "env",
                    *(f"{k}={v}" for k, v in variables.items()), sys.executable, *argv)


class Network:
    """A bridge, a private /24 and the hosts on it; closed with every process in its namespaces.
    One at a time per process (the names it makes carry the process's pid)."""

    _open: Network | None = None

    def __init__(self) -> None:
        if Network._open is not None:
            raise RuntimeError("a test network is already open in this process: close it first")
        self.tag = f"{PREFIX}{os.getpid()}"
        self.bridge = f"{self.tag}br"
        self.subnet = _free_subnet()
        Network._open = self
        self._addresses = iter(self.subnet.hosts())
        self.gateway = str(next(self._addresses))  # the bridge's own address (the test process)
        self.hosts: dict[str, Host] = {}
        try:
            ip("link", "add", self.bridge, "type", "bridge")
            ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
        except Exception:
            self.close()
            raise

    def add_host(self, name: str, impairment: Impairment | None = None) -> Host:
        """A new host ``name`` on the bridge, its link impaired as given."""
        if not re.fullmatch(r"[a-z][a-z0-9]{0,15}", name) or name in self.hosts:
            raise ValueError(f"host name {name!r}: give a new name of 1-16 lowercase letters or "
                             "digits, starting with a letter")
        if len(self.hosts) >= 100:
            raise ValueError("a test network holds at most 100 hosts")
        # interface names have at most 15 characters: tmh<pid (up to 7 digits)>p<number>[h]
        namespace, port = f"{self.tag}-{name}", f"{self.tag}p{len(self.hosts)}"
        address = str(next(self._addresses))
        ip("netns", "add", namespace)
        # registered at once, so that close() removes it whatever fails below
        host = self.hosts[name] = Host(name, namespace, address, Link(port))
        if impairment is not None and not netem_available():
            host.link = self._relayed_link(namespace, port, impairment)
        else:
            ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            if impairment is not None:  # each end delays and drops what it sends
                _netem([], port, impairment)
                _netem(["-n", namespace], "eth0", impairment)
        ip("link", "set", port, "master", self.bridge, "up")
        ip("-n", namespace, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        ip("-n", namespace, "link", "set", "eth0", "up")
        ip("-n", namespace, "link", "set", "lo", "up")
        return host

    def _relayed_link(self, namespace: str, port: str, impairment: Impairment) -> Link:
        inner = f"{port}h"
        relay = subprocess.Popen(
            [sys.executable, "-m", "tests.multihost.relay", "--host-tap", inner, "--bridge-tap", port,
             "--delay", str(impairment.delay), "--jitter", str(impairment.jitter),
             "--loss", str(impairment.loss), "--seed", str(len(self.hosts))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        link = Link(port, relay)
        assert relay.stdout is not None
        if relay.stdout.readline().strip() != "ready":
            link.close()
            raise RuntimeError(f"the frame relay for {port} did not start (exit {relay.poll()})")
        ip("link", "set", inner, "netns", namespace)
        ip("-n", namespace, "link", "set", inner, "name", "eth0")
        return link

    def leftover_processes(self) -> dict[str, list[int]]:
        """Processes still running in each host's namespace (empty lists omitted)."""
        return {name: pids for name, host in self.hosts.items()
                if (pids := namespace_pids(host.namespace))}

    def close(self) -> dict[str, list[int]]:
        """Kill what still runs in the namespaces, stop relays, delete namespaces and bridge;
        returns the processes that had to be killed, per host."""
        killed: dict[str, list[int]] = {}
        for name, host in self.hosts.items():
            if pids := _kill_all(host.namespace):
                killed[name] = pids
            host.link.close()
            ip("netns", "del", host.namespace, check=False)
            ip("link", "del", host.link.port, check=False)  # a veth end left in the root namespace
        self.hosts.clear()
        ip("link", "del", self.bridge, check=False)
        Network._open = None
        return killed
