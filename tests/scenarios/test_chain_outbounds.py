"""Scenarios on 127.0.0.1, v2py on both ends: the socks and http outbounds against
v2py's socks/http inbounds (TCP with and without passwords, socks UDP, refusals), and
``proxySettings`` chains (vmess through socks, socks through http, TLS on a chain)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from tests.support.chain import (
    TIMEOUT_S,
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
from tests.support.socks import socks5_connect, socks5_udp_roundtrip, start_udp_echo
from tests.support.v2py import run_v2py
from tests.support.v2ray import free_ports
from v2py.config.load import load_config
from v2py.errors import ConfigError

USERS = {"alice": "s3cret"}


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    async with TcpEchoServer() as server:
        yield server.port


@pytest.mark.parametrize("protocol", ["socks", "http"])
@pytest.mark.parametrize("users", [None, USERS])
async def test_outbound_to_a_v2py_inbound(
    protocol: str, users: dict[str, str] | None, echo: int
) -> None:
    front, back = free_ports(2)
    server_in = socks_in(back, users=users) if protocol == "socks" else http_in(back, users=users)
    async with (
        run_v2py(config([server_in], [freedom()])),
        run_v2py(config([socks_in(front)], [upstream_out(protocol, back, users=users)])),
    ):
        await sha_roundtrip_via_socks(front, echo)


@pytest.mark.parametrize("protocol", ["socks", "http"])
async def test_a_wrong_password_ends_the_connection(protocol: str, echo: int) -> None:
    front, back = free_ports(2)
    server_in = socks_in(back, users=USERS) if protocol == "socks" else http_in(back, users=USERS)
    client_out = upstream_out(protocol, back, users={"alice": "wrong"})
    client = json.loads(json.dumps(config([socks_in(front)], [client_out])))
    async with run_v2py(config([server_in], [freedom()])), run_v2py(client):
        async with asyncio.timeout(TIMEOUT_S):
            reader, writer = await socks5_connect(front, "127.0.0.1", echo)
            writer.write(b"ping")
            await writer.drain()
            assert await reader.read(100) == b""
            writer.close()


async def test_socks_udp_through_the_outbound() -> None:
    echo, echo_port = await start_udp_echo()
    front, back = free_ports(2)
    try:
        async with (
            run_v2py(config([socks_in(back, udp=True, users=USERS)], [freedom()])),
            run_v2py(
                config([socks_in(front, udp=True)], [upstream_out("socks", back, users=USERS)])
            ),
        ):
            for payload in (b"one", b"x" * 1400):
                got = await socks5_udp_roundtrip(front, "127.0.0.1", echo_port, payload)
                assert got == payload
    finally:
        echo.close()


async def test_http_outbound_refuses_udp() -> None:
    echo, echo_port = await start_udp_echo()
    front, back = free_ports(2)
    try:
        async with (
            run_v2py(config([http_in(back)], [freedom()])),
            run_v2py(config([socks_in(front, udp=True)], [upstream_out("http", back)])),
        ):
            with pytest.raises(TimeoutError):
                await socks5_udp_roundtrip(front, "127.0.0.1", echo_port, b"x", timeout=0.5)
    finally:
        echo.close()


@pytest.mark.parametrize("hop", ["socks", "http"])
async def test_vmess_through_a_proxy_chain(hop: str, echo: int) -> None:
    """client socks -> vmess (proxySettings: hop) -> hop outbound -> server's hop
    inbound -> freedom -> server's vmess inbound -> freedom -> echo."""
    front, hop_port, vmess_port = free_ports(3)
    hop_in = socks_in(hop_port) if hop == "socks" else http_in(hop_port)
    server = config([hop_in, vmess_in(vmess_port)], [freedom()])
    client = config(
        [socks_in(front)],
        [vmess_out(vmess_port, tag="v", proxy="hop"), upstream_out(hop, hop_port, tag="hop")],
    )
    async with run_v2py(server) as server_instance, run_v2py(client):
        await sha_roundtrip_via_socks(front, echo)
    del server_instance


async def test_a_three_hop_chain(echo: int) -> None:
    """socks -> (through http -> through socks) ... each hop is an outbound of the client."""
    front, s1, h1 = free_ports(3)
    server = config([socks_in(s1), http_in(h1)], [freedom()])
    client = config(
        [socks_in(front)],
        [
            upstream_out("socks", s1, tag="a", proxy="b"),
            upstream_out("http", h1, tag="b"),
        ],
    )
    async with run_v2py(server), run_v2py(client):
        await sha_roundtrip_via_socks(front, echo)


async def test_socks_udp_through_a_chain() -> None:
    """socks outbound (proxySettings: another socks outbound): the UDP relay socket is
    the chained outbound's packet link."""
    echo, echo_port = await start_udp_echo()
    front, s1, s2 = free_ports(3)
    server = config([socks_in(s1, udp=True), socks_in(s2, udp=True)], [freedom()])
    client = config(
        [socks_in(front, udp=True)],
        [upstream_out("socks", s1, tag="a", proxy="b"), upstream_out("socks", s2, tag="b")],
    )
    try:
        async with run_v2py(server), run_v2py(client):
            got = await socks5_udp_roundtrip(front, "127.0.0.1", echo_port, b"chained")
            assert got == b"chained"
    finally:
        echo.close()


@pytest.mark.parametrize(
    ("outbounds", "path", "message"),
    [
        (
            [upstream_out("socks", 1, tag="a", proxy="zz")],
            "outbounds[0].proxySettings.tag",
            '"zz" is not the tag of any outbound',
        ),
        (
            [upstream_out("socks", 1, tag="a", proxy="a")],
            "outbounds[0].proxySettings.tag",
            "the proxy chain loops: a -> a",
        ),
        (
            [
                upstream_out("socks", 1, tag="a", proxy="b"),
                upstream_out("http", 2, tag="b", proxy="a"),
            ],
            "outbounds[0].proxySettings.tag",
            "loops: a -> b -> a",
        ),
        (
            [{**freedom("f"), "proxySettings": {"tag": "f"}}],
            "outbounds[0].proxySettings.tag",
            "the proxy chain loops: f -> f",
        ),
        (
            [{**upstream_out("socks", 1, tag="a"), "proxySettings": {"tag": ""}}],
            "outbounds[0].proxySettings.tag",
            "Proxy tag is not set.",
        ),
        (
            [{"protocol": "socks", "settings": {"servers": []}}],
            "outbounds[0].settings.servers",
            "no servers",
        ),
        ([{"protocol": "http", "settings": {}}], "outbounds[0].settings.servers", "no servers"),
    ],
)
def test_refused_configs(outbounds: list[dict[str, object]], path: str, message: str) -> None:
    text = json.dumps({"outbounds": outbounds})
    with pytest.raises(ConfigError) as info:
        load_config([("t.json", text)], {})
    assert info.value.path == path
    assert message in str(info.value)


def test_transport_layer_only_warns() -> None:
    out = upstream_out("socks", 1, tag="a", proxy="b")
    out["proxySettings"]["transportLayer"] = True
    loaded = load_config([("t.json", json.dumps({"outbounds": [out, freedom("b")]}))], {})
    # freedom as the *target* of a chain is fine (only freedom chaining is refused).
    assert any("proxySettings.transportLayer" in w for w in loaded.warnings)


async def test_a_chain_through_a_mux_vmess_hop(echo: int) -> None:
    """socks outbound (proxySettings: v) -> VMess outbound v with mux -> server: VMess
    inbound -> freedom -> the server's socks inbound -> freedom -> echo."""
    front, socks_port, vmess_port = free_ports(3)
    server = config([socks_in(socks_port), vmess_in(vmess_port)], [freedom()])
    hop = vmess_out(vmess_port, tag="v")
    hop["mux"] = {"enabled": True, "concurrency": 4}
    client = config([socks_in(front)], [upstream_out("socks", socks_port, tag="a", proxy="v"), hop])
    async with run_v2py(server), run_v2py(client):
        await asyncio.gather(
            *(sha_roundtrip_via_socks(front, echo, 50_000, half_close=False) for _ in range(3))
        )
