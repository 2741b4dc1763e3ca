"""Interop: a real V2Ray 4.34 ``socks`` outbound talks to our SocksInbound.

client -> v2ray socks inbound -> v2ray socks outbound -> v2py SocksInbound -> v2py
freedom -> local HTTP origin (and a UDP echo through UDP ASSOCIATE).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.servers import BODY, HttpOrigin, RecordingFreedom, serve_inbound
from tests.support.socks import socks5_connect, socks5_udp_roundtrip, start_udp_echo
from tests.support.v2ray import free_port, run_v2ray
from v2py.app.policy import PolicyTable
from v2py.app.session import SniffingSettings
from v2py.proxy.freedom import FreedomOutbound
from v2py.proxy.socks_inbound import SocksInbound

pytestmark = pytest.mark.interop
TIMEOUT_S = 20.0


def v2ray_config(in_port: int, our_port: int, users: list[dict[str, str]]) -> dict[str, Any]:
    server: dict[str, Any] = {"address": "127.0.0.1", "port": our_port}
    if users:
        server["users"] = users
    return {
        "log": {"loglevel": "warning"},
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": in_port,
                "protocol": "socks",
                "settings": {"auth": "noauth", "udp": True, "ip": "127.0.0.1"},
            }
        ],
        "outbounds": [{"protocol": "socks", "settings": {"servers": [server]}}],
    }


@contextlib.asynccontextmanager
async def chain(auth: str, freedom: Any) -> AsyncIterator[int]:
    """Start our SocksInbound and the real v2ray in front of it; yield v2ray's port."""
    our_port = free_port()
    in_port = free_port()
    accounts = {"alice": "s3cret"} if auth == "password" else None
    inbound = SocksInbound(
        tag="ours",
        listen="127.0.0.1",
        port=our_port,
        auth=auth,
        accounts=accounts,
        udp=True,
        policy=PolicyTable(),
        sniffing=SniffingSettings(),
    )
    users = [{"user": "alice", "pass": "s3cret"}] if accounts else []
    async with (
        serve_inbound(inbound, [freedom], port=our_port),
        run_v2ray(v2ray_config(in_port, our_port, users), wait_tcp=[in_port]),
    ):
        yield in_port


@pytest.mark.parametrize("auth", ["noauth", "password"])
async def test_tcp_through_real_v2ray_socks_outbound(auth: str) -> None:
    out = RecordingFreedom(tag="direct", policy=PolicyTable())
    async with HttpOrigin() as origin, chain(auth, out) as port:
        async with asyncio.timeout(TIMEOUT_S):
            reader, writer = await socks5_connect(port, "127.0.0.1", origin.port)
            writer.write(b"GET /interop HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await writer.drain()
            response = await reader.read(-1)
            writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body == BODY
    assert origin.requests[0].startswith(b"GET /interop HTTP/1.1\r\n")
    assert [s.user_email for s in out.sessions] == (["alice"] if auth == "password" else [""])


async def test_wrong_password_is_refused() -> None:
    our_port = free_port()
    in_port = free_port()
    inbound = SocksInbound(
        tag="ours",
        listen="127.0.0.1",
        port=our_port,
        auth="password",
        accounts={"alice": "right"},
        policy=PolicyTable(),
        sniffing=SniffingSettings(),
    )
    out = RecordingFreedom(tag="direct", policy=PolicyTable())
    config = v2ray_config(in_port, our_port, [{"user": "alice", "pass": "wrong"}])
    async with (
        serve_inbound(inbound, [out], port=our_port),
        run_v2ray(config, wait_tcp=[in_port]),
        asyncio.timeout(TIMEOUT_S),
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", in_port)
        writer.write(b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50GET / HTTP/1.0\r\n\r\n")
        await writer.drain()
        data = await reader.read(-1)
        writer.close()
    # v2ray answers its client first, then closes when our server refuses it.
    assert data.startswith(b"\x05\x00") and not data.endswith(b"200 OK")
    assert out.sessions == []


async def test_udp_through_real_v2ray_socks_outbound() -> None:
    echo, echo_port = await start_udp_echo()
    try:
        freedom = FreedomOutbound(tag="direct", policy=PolicyTable())
        async with chain("noauth", freedom) as port:
            got = await socks5_udp_roundtrip(
                port, "127.0.0.1", echo_port, b"udp via v2ray", timeout=TIMEOUT_S
            )
    finally:
        echo.close()
    assert got == b"udp via v2ray"
