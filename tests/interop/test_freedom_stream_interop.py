"""Interop: freedom dials TCP destinations through its ``streamSettings``, as 4.34's
freedom dials through ``Handler.Dial`` (until now v2py refused TLS/ws/h2/QUIC/ds there
and ignored mKCP):

* ``security: "tls"``: a TLS echo server sees the configured SNI and ALPN offer and
  echoes through it, on v2ray and on v2py;
* ``network: "kcp"``: freedom speaks mKCP to a dokodemo-door over mKCP, every pairing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.socks import socks5_connect, socks5_udp_roundtrip, start_udp_echo
from tests.support.tls_certs import TestCA
from tests.support.v2py import run_side, run_v2py
from tests.support.v2ray import free_port, run_v2ray

pytestmark = pytest.mark.interop

CA = TestCA()
LEAF = CA.issue("echo.test")


@contextlib.asynccontextmanager
async def _tls_echo(tmp_path: Path) -> AsyncIterator[tuple[int, list[tuple[str | None, Any]]]]:
    """A TLS echo server; yields its port and the (SNI, ALPN) of each handshake."""
    cert, key = LEAF.write(tmp_path, "echo")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    seen: list[tuple[str | None, Any]] = []
    names: dict[int, str | None] = {}

    def on_sni(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        names[id(sock)] = name

    context.sni_callback = on_sni  # type: ignore[assignment]
    context.set_alpn_protocols(["h2", "http/1.1"])

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        obj = writer.get_extra_info("ssl_object")
        seen.append((names.get(id(obj)), obj.selected_alpn_protocol()))
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()


async def _echo_through(socks_port: int, host: str, port: int, payload: bytes) -> bytes:
    reader, writer = await socks5_connect(socks_port, host, port)
    try:
        writer.write(payload)
        await writer.drain()
        return await reader.readexactly(len(payload))
    finally:
        writer.close()


def _socks(port: int) -> dict[str, Any]:
    return {"listen": "127.0.0.1", "port": port, "protocol": "socks", "settings": {}}


@pytest.mark.parametrize("kind", ["v2ray", "v2py"])
async def test_freedom_over_tls(kind: str, tmp_path: Path) -> None:
    async with _tls_echo(tmp_path) as (echo_port, seen):
        socks_port = free_port()
        config = {
            "log": {"loglevel": "warning"},
            "inbounds": [_socks(socks_port)],
            "outbounds": [
                {
                    "protocol": "freedom",
                    "streamSettings": {
                        "security": "tls",
                        "tlsSettings": {
                            "serverName": "echo.test",
                            "alpn": ["http/1.1"],
                            "certificates": [CA.pair.inline(usage="verify")],
                        },
                    },
                }
            ],
        }
        async with run_side(kind, config, socks_port), asyncio.timeout(20):
            echoed = await _echo_through(socks_port, "127.0.0.1", echo_port, b"over tls" * 1000)
    assert echoed == b"over tls" * 1000
    assert seen == [("echo.test", "http/1.1")]


@pytest.mark.parametrize(
    ("client", "server"), [("v2py", "v2ray"), ("v2ray", "v2py"), ("v2py", "v2py")]
)
async def test_freedom_over_mkcp(client: str, server: str, echo_server: tuple[str, int]) -> None:
    socks_port = free_port()
    kcp_port = free_port()
    kcp = {"network": "kcp", "kcpSettings": {"header": {"type": "none"}}}
    server_cfg = {
        "log": {"loglevel": "warning"},
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": kcp_port,
                "protocol": "dokodemo-door",
                "settings": {"address": echo_server[0], "port": echo_server[1], "network": "tcp"},
                "streamSettings": kcp,
            }
        ],
        "outbounds": [{"protocol": "freedom"}],
    }
    client_cfg = {
        "log": {"loglevel": "warning"},
        "inbounds": [_socks(socks_port)],
        "outbounds": [{"protocol": "freedom", "streamSettings": kcp}],
    }
    server_ctx = run_v2ray(server_cfg, settle=0.5) if server == "v2ray" else run_v2py(server_cfg)
    async with server_ctx, run_side(client, client_cfg, socks_port), asyncio.timeout(30):
        payload = bytes(range(256)) * 512
        assert await _echo_through(socks_port, "127.0.0.1", kcp_port, payload) == payload


@pytest.mark.parametrize("kind", ["v2ray", "v2py"])
async def test_freedom_under_proxy_settings(kind: str, echo_server: tuple[str, int]) -> None:
    """freedom with ``proxySettings``: its TCP and UDP go through the tagged outbound (a
    SOCKS one, to a real v2ray SOCKS server that goes out directly)."""
    udp_echo, udp_port = await start_udp_echo()
    upstream_port = free_port()
    socks_port = free_port()
    upstream = {
        "log": {"loglevel": "warning"},
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": upstream_port,
                "protocol": "socks",
                "settings": {"udp": True, "ip": "127.0.0.1"},
            }
        ],
        "outbounds": [{"protocol": "freedom"}],
    }
    config = {
        "log": {"loglevel": "warning"},
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": socks_port,
                "protocol": "socks",
                "settings": {"udp": True, "ip": "127.0.0.1"},
            }
        ],
        "outbounds": [
            {"protocol": "freedom", "proxySettings": {"tag": "up"}},
            {
                "tag": "up",
                "protocol": "socks",
                "settings": {"servers": [{"address": "127.0.0.1", "port": upstream_port}]},
            },
        ],
    }
    try:
        async with (
            run_v2ray(upstream, wait_tcp=[upstream_port]) as reference,
            run_side(kind, config, socks_port),
            asyncio.timeout(30),
        ):
            assert await _echo_through(socks_port, *echo_server, b"chained" * 100) == (
                b"chained" * 100
            )
            reply = await socks5_udp_roundtrip(socks_port, "127.0.0.1", udp_port, b"dgram")
            assert reply == b"dgram"
            log = reference.log()
    finally:
        udp_echo.close()
    # both went out through the upstream SOCKS server (its access log)
    assert f"accepted tcp:127.0.0.1:{echo_server[1]}" in log
    assert f"accepted udp:127.0.0.1:{udp_port}" in log
