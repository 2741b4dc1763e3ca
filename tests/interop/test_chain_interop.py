"""Interop with the real V2Ray 4.34: socks/http outbounds and proxySettings, both ways.

* v2py's socks/http outbound -> v2ray's socks/http inbound (with and without a
  password; socks UDP too), and v2ray's socks/http outbound -> v2py's inbound;
* proxySettings: a VMess outbound whose connections go through a socks/http outbound,
  with v2py as the chaining client (to v2ray) and v2ray as the chaining client (to
  v2py). Every transfer is checked by SHA-256 through a TCP echo server.
"""

from __future__ import annotations

import asyncio
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


class _Recorder:
    """A fake upstream proxy that answers a script and records what the client sent
    before each answer."""

    def __init__(self, script: list[tuple[int, bytes]]) -> None:
        self.script = script  # (bytes to wait for, answer)
        self.seen: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> _Recorder:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for size, answer in self.script:
                self.seen.append(await reader.readexactly(size))
                writer.write(answer)
                await writer.drain()
            self.seen.append(await reader.read(100))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


SOCKS_SCRIPT = [
    (len(b"\x05\x01\x02\x01\x05alice\x06s3cret"), b"\x05\x02\x01\x00"),
    (len(b"\x05\x01\x00\x03\x0bexample.com\x01\xbb"), b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x00"),
]
HTTP_REQUEST = (
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
    b"User-Agent: Go-http-client/1.1\r\nProxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n"
    b"Proxy-Connection: Keep-Alive\r\n\r\n"
)
HTTP_SCRIPT = [(len(HTTP_REQUEST), b"HTTP/1.1 200 Connection established\r\n\r\n")]


@pytest.mark.parametrize("side", ["v2py", "v2ray"])
@pytest.mark.parametrize("protocol", ["socks", "http"])
async def test_same_handshake_bytes_as_v2ray(side: str, protocol: str) -> None:
    """What 4.34 and v2py send an upstream proxy, byte for byte (the expected bytes are
    4.34's; both sides must produce them)."""
    front = free_ports(1)[0]
    script = SOCKS_SCRIPT if protocol == "socks" else HTTP_SCRIPT
    async with _Recorder(script) as upstream:
        cfg = config([socks_in(front)], [upstream_out(protocol, upstream.port, users=USERS)])
        async with run_side(side, cfg, front), asyncio.timeout(TIMEOUT_S):
            reader, writer = await socks5_connect(front, "example.com", 443)
            writer.write(b"first payload")
            await writer.drain()
            while len(upstream.seen) <= len(script):
                await asyncio.sleep(0.05)
            writer.close()
    if protocol == "socks":
        assert upstream.seen == [
            b"\x05\x01\x02\x01\x05alice\x06s3cret",
            b"\x05\x01\x00\x03\x0bexample.com\x01\xbb",
            b"first payload",
        ]
    else:
        assert upstream.seen == [HTTP_REQUEST, b"first payload"]


@pytest.mark.parametrize(("client", "server"), SIDES)
async def test_tls_on_a_chain_and_the_network_ignored(client: str, server: str, echo: int) -> None:
    """Under proxySettings 4.34 keeps only TLS of the outbound's streamSettings: a VMess
    outbound configured for ws+tls reaches a VMess server on tcp+tls through a socks hop."""
    from tests.support.tls_certs import TestCA

    ca = TestCA()
    leaf = ca.issue("example.test")
    front, hop_port, vmess_port = free_ports(3)
    server_vmess = vmess_in(vmess_port)
    server_vmess["streamSettings"] = {
        "network": "tcp",
        "security": "tls",
        "tlsSettings": {"certificates": [leaf.inline()]},
    }
    server_cfg = config([socks_in(hop_port), server_vmess], [freedom()])
    proxy = vmess_out(vmess_port, tag="proxy", proxy="hop")
    proxy["streamSettings"] = {
        "network": "ws",
        "security": "tls",
        "tlsSettings": {"serverName": "example.test", "certificates": [ca.pair.inline("verify")]},
    }
    client_cfg = config([socks_in(front)], [proxy, upstream_out("socks", hop_port, tag="hop")])
    async with run_side(server, server_cfg, hop_port), run_side(client, client_cfg, front):
        await sha_roundtrip_via_socks(front, echo)
