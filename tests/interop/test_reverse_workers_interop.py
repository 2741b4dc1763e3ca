"""Interop: the real V2Ray 4.34 bridge -> a v2py portal run with ``--workers 2``.

The bridge's connections reach whichever worker the kernel picks, and so do the public
connections; a worker with no bridge connection passes its connections (TCP and UDP) to
a sibling that has one (``app/reverse_relay.py``). Every session must reach the bridge's
service, as with one process.
"""

from __future__ import annotations

import asyncio
import sys

import pytest

from tests.support.reverse import (
    bridge_config,
    echo_through,
    portal_config,
    udp_round_trip,
    wait_bridged,
)
from tests.support.servers import TcpEchoServer
from tests.support.socks import start_udp_echo
from tests.support.v2ray import free_ports, require_v2ray, run_v2ray
from tests.support.workers import connections_per_worker, run_v2py_workers

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only"),
]

SESSIONS = 24
SIZE = 128 * 1024
TIMEOUT_S = 60.0
PASSED_ON = "passed on to a sibling worker"


async def test_v2ray_bridge_to_a_portal_with_two_workers() -> None:
    require_v2ray()
    udp_echo, udp_echo_port = await start_udp_echo()
    vmess_port, external_port, udp_port, probe_port = free_ports(4)
    try:
        async with TcpEchoServer() as echo:
            portal = portal_config(
                vmess_port, external_port, echo.port, udp=(udp_port, udp_echo_port)
            )
            portal["log"] = {"loglevel": "info"}
            async with (
                run_v2py_workers(portal) as server,
                run_v2ray(bridge_config(vmess_port, probe_port), wait_tcp=[probe_port]),
            ):
                await wait_bridged(external_port, timeout=20.0)
                async with asyncio.timeout(TIMEOUT_S):
                    held = []
                    for _ in range(SESSIONS):  # open at once, so /proc shows who holds them
                        reader, writer = await asyncio.open_connection("127.0.0.1", external_port)
                        writer.write(b"ping")
                        assert await reader.readexactly(4) == b"ping"
                        held.append(writer)
                    per_worker = connections_per_worker(server, {external_port})
                    for writer in held:
                        writer.close()
                    await asyncio.gather(
                        *(echo_through(external_port, i, SIZE) for i in range(SESSIONS))
                    )
                    for round_ in range(8):  # a new source port each: both workers get some
                        await udp_round_trip(udp_port, [bytes([round_]) * 700, b"x" * 1400])
                log = server.log()
    finally:
        udp_echo.close()
    # The public connections reached both workers, and some were passed on (the bridge
    # keeps its connections on the workers the kernel gave them to).
    assert all(per_worker.values()), per_worker
    assert PASSED_ON in log, log[-3000:]
