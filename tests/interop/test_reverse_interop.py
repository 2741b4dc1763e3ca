"""Interop: the reverse proxy between v2py and the real V2Ray 4.34, both directions
(v2ray bridge -> v2py portal, v2py bridge -> v2ray portal), plus v2py on both sides.

external client -> portal's dokodemo inbound -> portal -> (mux over the bridge's VMess
connection) -> bridge -> freedom -> echo service.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

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
from tests.support.v2py import run_side
from tests.support.v2ray import free_ports

pytestmark = pytest.mark.interop

SESSIONS = 20
SIZE = 256 * 1024
TIMEOUT_S = 60.0

PAIRS = [("v2ray", "v2py"), ("v2py", "v2ray"), ("v2py", "v2py")]
IDS = [f"{b}-bridge-{p}-portal" for b, p in PAIRS]


@contextlib.asynccontextmanager
async def reverse_pair(bridge: str, portal: str, service_port: int) -> AsyncIterator[int]:
    """Start the portal, then the bridge; yield the portal's external port once bridged."""
    vmess_port, external_port, probe_port = free_ports(3)
    async with (
        run_side(portal, portal_config(vmess_port, external_port, service_port), vmess_port),
        run_side(bridge, bridge_config(vmess_port, probe_port), probe_port),
    ):
        await wait_bridged(external_port)
        yield external_port


@pytest.mark.parametrize(("bridge", "portal"), PAIRS, ids=IDS)
async def test_concurrent_sessions_reach_the_bridge_service(bridge: str, portal: str) -> None:
    async with TcpEchoServer() as echo, reverse_pair(bridge, portal, echo.port) as port:
        async with asyncio.timeout(TIMEOUT_S):
            await asyncio.gather(*(echo_through(port, i, SIZE) for i in range(SESSIONS)))


@pytest.mark.parametrize(("bridge", "portal"), PAIRS, ids=IDS)
async def test_udp_through_the_portal_reaches_the_bridge_service(bridge: str, portal: str) -> None:
    """A dokodemo UDP inbound of the portal: its datagrams become a UDP session on the
    bridge connection, the bridge sends them to its local UDP service, the answers come
    back by content."""
    echo, echo_port = await start_udp_echo()
    vmess_port, external_port, udp_port, probe_port = free_ports(4)
    config = portal_config(vmess_port, external_port, 1, udp=(udp_port, echo_port))
    payloads = [bytes([i]) * (1 + 300 * i) for i in range(6)]
    try:
        async with (
            run_side(portal, config, vmess_port),
            run_side(bridge, bridge_config(vmess_port, probe_port), probe_port),
        ):
            async with asyncio.timeout(TIMEOUT_S):
                await udp_round_trip(udp_port, payloads)
    finally:
        echo.close()
