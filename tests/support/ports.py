"""Free loopback ports for tests that listen on TCP and UDP (mKCP) alike."""

from __future__ import annotations

import collections
import random
import socket
from collections.abc import Iterable

#: Test ports come from below the kernel's ephemeral range, so that outgoing
#: connections made meanwhile (by the tests, v2ray or v2py) cannot take them.
LOWEST_TEST_PORT = 10000


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_TOP = max(LOWEST_TEST_PORT + 1000, _ephemeral_start())
#: Ports handed out lately in this process: a test asks for several before it binds any
#: (e.g. two ports, then a range of eight), so a port that is free now may be one it
#: was just given. The oldest are forgotten first.
_RECENT_MAX = 2048
_recent: collections.deque[int] = collections.deque()
_recent_set: set[int] = set()


def _hand_out(ports: Iterable[int]) -> None:
    for port in ports:
        if port in _recent_set:
            continue
        _recent.append(port)
        _recent_set.add(port)
        if len(_recent) > _RECENT_MAX:
            _recent_set.discard(_recent.popleft())


def _port_free(port: int, kinds: tuple[int, ...] = (socket.SOCK_STREAM, socket.SOCK_DGRAM)) -> bool:
    if port in _recent_set:
        return False
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port_range(n: int) -> tuple[int, int]:
    """A range of ``n`` consecutive ports that are free for TCP and UDP right now."""
    rnd = random.Random()
    for _ in range(500):
        base = rnd.randrange(LOWEST_TEST_PORT, _TOP - n)
        if all(_port_free(p) for p in range(base, base + n)):
            _hand_out(range(base, base + n))
            return base, base + n - 1
    raise RuntimeError("no free port range")


def free_dual_ports(n: int) -> list[int]:
    """``n`` distinct ports free for both TCP and UDP (mKCP listens on UDP)."""
    return free_ports_of(n, (socket.SOCK_STREAM, socket.SOCK_DGRAM))


def free_ports_of(n: int, kinds: tuple[int, ...]) -> list[int]:
    """``n`` distinct ports, each free for every socket type in ``kinds``."""
    rnd = random.Random()
    ports: set[int] = set()
    for _ in range(100 * n + 500):
        port = rnd.randrange(LOWEST_TEST_PORT, _TOP)
        if _port_free(port, kinds):
            ports.add(port)
            if len(ports) == n:
                _hand_out(ports)
                return sorted(ports)
    raise RuntimeError("no free ports")
