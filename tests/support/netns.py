"""Network namespaces for transparent-proxy tests: a client, a gateway and a server
namespace joined by two veth pairs, and sockets opened inside any of them.

::

    cli 10.201.1.2 --veth-- 10.201.1.1 gw 10.201.2.1 (+ 10.201.2.3) --veth-- 10.201.2.2 srv

The client's default route is the gateway, which forwards; the gateway routes packets
marked 1 to itself (``ip rule fwmark 1 lookup 100``, ``local 0.0.0.0/0 dev lo``), as
the V2Ray guide's TPROXY set-up does. No traffic leaves the namespaces.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass

import pytest

CLONE_NEWNET = 0x4000_0000
CLIENT_IP = "10.201.1.2"
GATEWAY_IP = "10.201.1.1"
GATEWAY_SERVER_SIDE_IP = "10.201.2.1"
#: A second gateway address on the server side, for ``sendThrough``.
GATEWAY_SECOND_IP = "10.201.2.3"
SERVER_IP = "10.201.2.2"
_COMMAND_TIMEOUT_S = 10


def _run(*args: str) -> str:
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


@dataclass(frozen=True)
class Topology:
    """The three namespace names."""

    cli: str
    gw: str
    srv: str

    def run(self, ns: str, *args: str) -> str:
        """Run a command inside namespace ``ns``; raises RuntimeError when it fails."""
        return _run("ip", "netns", "exec", ns, *args)

    def socket(self, ns: str, kind: int, family: int = socket.AF_INET) -> socket.socket:
        """A non-blocking socket that lives in namespace ``ns``.

        A socket keeps the namespace of the thread that made it, so a short-lived
        thread enters ``ns`` (``setns``) and makes it; the test's own thread never moves.
        """
        made: list[socket.socket] = []
        errors: list[BaseException] = []

        def make() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                finally:
                    os.close(fd)
                sock = socket.socket(family, kind)
                sock.setblocking(False)
                made.append(sock)
            except BaseException as exc:  # handed to the caller
                errors.append(exc)

        thread = threading.Thread(target=make)
        thread.start()
        thread.join(_COMMAND_TIMEOUT_S)
        if errors:
            raise errors[0]
        return made[0]


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install iproute2 iptables)"
    return None


def make_topology() -> Topology:
    """Create the three namespaces (skipping the test when that is impossible)."""
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(reason)
    tag = f"{os.getpid() % 100000}"
    topo = Topology(cli=f"v2pyt-cli-{tag}", gw=f"v2pyt-gw-{tag}", srv=f"v2pyt-srv-{tag}")
    try:
        for ns in (topo.cli, topo.gw, topo.srv):
            _run("ip", "netns", "add", ns)
        a, b, c, d = (f"v2c{tag}", f"v2g{tag}", f"v2s{tag}", f"v2h{tag}")
        _run("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        _run("ip", "link", "add", c, "type", "veth", "peer", "name", d)
        _run("ip", "link", "set", a, "netns", topo.cli)
        _run("ip", "link", "set", b, "netns", topo.gw)
        _run("ip", "link", "set", c, "netns", topo.srv)
        _run("ip", "link", "set", d, "netns", topo.gw)
        for ns, dev, addrs, via in (
            (topo.cli, a, (CLIENT_IP,), GATEWAY_IP),
            (topo.gw, b, (GATEWAY_IP,), None),
            (topo.gw, d, (GATEWAY_SERVER_SIDE_IP, GATEWAY_SECOND_IP), None),
            (topo.srv, c, (SERVER_IP,), GATEWAY_SERVER_SIDE_IP),
        ):
            for addr in addrs:
                topo.run(ns, "ip", "addr", "add", f"{addr}/24", "dev", dev)
            topo.run(ns, "ip", "link", "set", dev, "up")
            topo.run(ns, "ip", "link", "set", "lo", "up")
            if via is not None:
                topo.run(ns, "ip", "route", "add", "default", "via", via)
        topo.run(topo.gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for key in ("all", "default", "lo", b):
            topo.run(topo.gw, "sysctl", "-qw", f"net.ipv4.conf.{key}.rp_filter=0")
        topo.run(topo.gw, "ip", "rule", "add", "fwmark", "1", "lookup", "100")
        topo.run(topo.gw, "ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100")
        topo.run(topo.gw, "iptables", "-t", "mangle", "-L", "-n")  # nf_tables usable here?
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        remove_topology(topo)
        pytest.skip(f"network namespaces are not possible here: {exc}")
    return topo


def remove_topology(topo: Topology) -> None:
    """Delete the namespaces (their veth pairs go with them)."""
    for ns in (topo.cli, topo.gw, topo.srv):
        subprocess.run(
            ["ip", "netns", "del", ns], capture_output=True, timeout=_COMMAND_TIMEOUT_S, check=False
        )
