"""Interop with the real V2Ray 4.34: socks/http outbounds and proxySettings, both ways.

* v2py's socks/http outbound -> v2ray's socks/http inbound (with and without a
  password; socks UDP too), and v2ray's socks/http outbound -> v2py's inbound;
* proxySettings: a VMess outbound whose connections go through a socks/http outbound,
  with v2py as the chaining client (to v2ray) and v2ray as the chaining client (to
  v2py). Every transfer is checked by SHA-256 through a TCP echo server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.chain import (
    config,
    freedom,
    http_in,
    sha_roundtrip_via_socks,
    socks_in,
    upstream_out,
    vmess_in,
    vmess_out,
)
from tests.support.servers import TcpEchoServer
from tests.support.socks import socks5_udp_roundtrip, start_udp_echo
from tests.support.v2py import run_side
from tests.support.v2ray import free_ports

pytestmark = pytest.mark.interop

USERS = {"alice": "s3cret"}
SIDES = [("v2py", "v2ray"), ("v2ray", "v2py")]


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    async with TcpEchoServer() as server:
        yield server.port


def _server_in(protocol: str, port: int, users: dict[str, str] | None) -> dict[str, object]:
    return (
        socks_in(port, users=users, udp=True) if protocol == "socks" else http_in(port, users=users)
    )


@pytest.mark.parametrize(("client", "server"), SIDES)
@pytest.mark.parametrize("protocol", ["socks", "http"])
@pytest.mark.parametrize("users", [None, USERS], ids=["noauth", "password"])
async def test_outbound_to_inbound(
    client: str, server: str, protocol: str, users: dict[str, str] | None, echo: int
) -> None:
    front, back = free_ports(2)
    async with (
        run_side(server, config([_server_in(protocol, back, users)], [freedom()]), back),
        run_side(
            client, config([socks_in(front)], [upstream_out(protocol, back, users=users)]), front
        ),
    ):
        await sha_roundtrip_via_socks(front, echo)


@pytest.mark.parametrize(("client", "server"), SIDES)
async def test_socks_udp(client: str, server: str) -> None:
    udp_echo, echo_port = await start_udp_echo()
    front, back = free_ports(2)
    try:
        async with (
            run_side(server, config([_server_in("socks", back, USERS)], [freedom()]), back),
            run_side(
                client,
                config([socks_in(front, udp=True)], [upstream_out("socks", back, users=USERS)]),
                front,
            ),
        ):
            for payload in (b"hello", bytes(range(256)) * 5):
                got = await socks5_udp_roundtrip(front, "127.0.0.1", echo_port, payload)
                assert got == payload
    finally:
        udp_echo.close()


@pytest.mark.parametrize(("client", "server"), SIDES)
@pytest.mark.parametrize("hop", ["socks", "http"])
async def test_vmess_through_proxy_settings(client: str, server: str, hop: str, echo: int) -> None:
    """client: socks in -> vmess out (proxySettings.tag = hop) -> hop out; server: hop
    inbound -> freedom -> its own vmess inbound -> freedom -> echo."""
    front, hop_port, vmess_port = free_ports(3)
    hop_in = _server_in(hop, hop_port, USERS)
    server_cfg = config([hop_in, vmess_in(vmess_port)], [freedom()])
    client_cfg = config(
        [socks_in(front)],
        [
            vmess_out(vmess_port, tag="proxy", proxy="hop"),
            upstream_out(hop, hop_port, tag="hop", users=USERS),
        ],
    )
    async with run_side(server, server_cfg, hop_port), run_side(client, client_cfg, front):
        await sha_roundtrip_via_socks(front, echo)
