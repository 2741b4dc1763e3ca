"""Interop: ``streamSettings.sockopt.acceptProxyProtocol`` on an inbound means what it
means in 4.34: an h2 listener requires the PROXY header; a tcp or ws listener ignores
it (4.34's listener overwrites it with ``tcpSettings``/``wsSettings``' own setting).

A real v2ray client reaches the server (v2ray or v2py) through a forwarder that sends a
PROXY v1 header first, or through one that does not; every combination is compared
with the same table on both servers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.configs import vmess_client_config, vmess_server_config
from tests.support.forward import forwarder
from tests.support.socks import socks5_connect
from tests.support.tls_certs import TestCA
from tests.support.v2py import run_side
from tests.support.v2ray import free_ports, run_v2ray

pytestmark = pytest.mark.interop

UUID = "4c3f7f0e-6f7a-4d0b-9b58-2f0c1c1e5a11"
CA = TestCA()
LEAF = CA.issue("h2.test", "127.0.0.1")
PROXY_V1 = b"PROXY TCP4 10.1.2.3 127.0.0.1 4444 80\r\n"
NETWORKS = ("tcp", "ws", "h2")


def _streams(network: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(server, client) streamSettings; the server's sockopt asks for the header."""
    sockopt = {"acceptProxyProtocol": True}
    if network != "h2":
        return {"network": network, "sockopt": sockopt}, {"network": network}
    http = {"host": ["h2.test"], "path": "/p"}
    server = {
        "network": "h2",
        "security": "tls",
        "httpSettings": http,
        "tlsSettings": {"certificates": [LEAF.inline()]},
        "sockopt": sockopt,
    }
    client = {
        "network": "h2",
        "security": "tls",
        "httpSettings": http,
        "tlsSettings": {"serverName": "h2.test", "certificates": [CA.pair.inline(usage="verify")]},
    }
    return server, client


async def _served(kind: str, network: str, header: bytes, echo_port: int) -> bool:
    socks_port, server_port = free_ports(2)
    server_stream, client_stream = _streams(network)
    server_cfg = vmess_server_config(server_port, UUID, 0)
    server_cfg["inbounds"][0]["streamSettings"] = server_stream
    async with forwarder(
        lambda: asyncio.open_connection("127.0.0.1", server_port), header
    ) as forward_port:
        client_cfg = vmess_client_config(socks_port, forward_port, UUID, 0, "aes-128-gcm")
        client_cfg["outbounds"][0]["streamSettings"] = client_stream
        async with (
            run_side(kind, server_cfg, server_port),
            run_v2ray(client_cfg, wait_tcp=[socks_port]),
        ):
            try:
                async with asyncio.timeout(3):
                    reader, writer = await socks5_connect(socks_port, "127.0.0.1", echo_port)
                    try:
                        writer.write(b"hello")
                        await writer.drain()
                        return await reader.readexactly(5) == b"hello"
                    finally:
                        writer.close()
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                return False


@pytest.mark.parametrize("kind", ["v2ray", "v2py"])
async def test_sockopt_accept_proxy_protocol(kind: str, echo_server: tuple[str, int]) -> None:
    cases = [(network, header) for network in NETWORKS for header in (b"", PROXY_V1)]
    served = await asyncio.gather(
        *(_served(kind, network, header, echo_server[1]) for network, header in cases)
    )
    pairs = zip(cases, served, strict=True)
    table = {(network, bool(header)): ok for (network, header), ok in pairs}
    # Served exactly when the header is there on h2, and when it is not on tcp and ws.
    assert table == {(network, header): header == (network == "h2") for network, header in table}
