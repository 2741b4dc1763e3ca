"""Free loopback ports for tests that listen on TCP and UDP (mKCP) alike."""

from __future__ import annotations

import random
import socket


def _port_free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
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
        base = rnd.randrange(20000, 60000 - n)
        if all(_port_free(p) for p in range(base, base + n)):
            return base, base + n - 1
    raise RuntimeError("no free port range")


def free_dual_ports(n: int) -> list[int]:
    """``n`` distinct ports free for both TCP and UDP (mKCP listens on UDP)."""
    rnd = random.Random()
    ports: set[int] = set()
    while len(ports) < n:
        port = rnd.randrange(20000, 60000)
        if _port_free(port):
            ports.add(port)
    return sorted(ports)
