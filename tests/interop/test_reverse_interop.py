"""Interop: the reverse proxy between v2py and the real V2Ray 4.34, both directions
(v2ray bridge -> v2py portal, v2py bridge -> v2ray portal), plus v2py on both sides.

external client -> portal's dokodemo inbound -> portal -> (mux over the bridge's VMess
connection) -> bridge -> freedom -> echo service.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

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


BRIDGE_ONLY_NAME = "socks.bridge.invalid"


def chained_through_portal(
    vmess_port: int, external_port: int, socks_port: int, service: int
) -> dict[str, Any]:
    """The portal side with a socks outbound ("chained") whose own connection to the
    socks server ``socks_port`` (on the bridge's side) is dialled through the portal
    (``proxySettings.tag`` naming the portal); the external inbound goes to it."""
    config = portal_config(vmess_port, external_port, service)
    config["outbounds"].append(
        {
            "tag": "chained",
            "protocol": "socks",
            # a name only the bridge resolves: dialled from the portal it would fail
            "settings": {"servers": [{"address": BRIDGE_ONLY_NAME, "port": socks_port}]},
            "proxySettings": {"tag": "portal"},
        }
    )
    config["routing"]["rules"][0]["outboundTag"] = "chained"
    return config


@pytest.mark.parametrize("portal", ["v2ray", "v2py"])
async def test_proxy_settings_through_a_portal(portal: str) -> None:
    """4.34 dials an outbound's connection through the portal when its
    ``proxySettings.tag`` names the portal (the portal is an outbound handler by then:
    app/proxyman/outbound/handler.go Dial -> Portal.HandleConnection -> a mux session
    to the dialled address on a bridge connection) [verified here with the binary]."""
    vmess_port, external_port, socks_port = free_ports(3)
    bridge = bridge_config(vmess_port, socks_port)
    # the bridge's socks inbound (its probe) sends what it accepts out directly; the
    # bridge alone knows the socks server's name
    bridge["routing"]["rules"].insert(
        0, {"type": "field", "inboundTag": ["probe"], "outboundTag": "out"}
    )
    bridge["dns"] = {"hosts": {BRIDGE_ONLY_NAME: "127.0.0.1"}}
    bridge["outbounds"][1]["settings"] = {"domainStrategy": "UseIPv4"}
    async with TcpEchoServer() as echo:
        config = chained_through_portal(vmess_port, external_port, socks_port, echo.port)
        async with (
            run_side(portal, config, vmess_port),
            run_side("v2py", bridge, socks_port),
        ):
            await wait_bridged(external_port)
            async with asyncio.timeout(TIMEOUT_S):
                await asyncio.gather(*(echo_through(external_port, i, 4096) for i in range(4)))
