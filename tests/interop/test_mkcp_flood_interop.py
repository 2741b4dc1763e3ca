"""A V2Ray 4.34 mKCP client reaches a v2py mKCP listener that is being flooded with forged
pings for fresh conv ids (the packet check is public without ``seed``).

TCP client -> v2ray dokodemo-door (tcp) -> freedom (kcp, redirect) -> v2py listen_kcp echo
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import socket

import pytest

from tests.shell.test_mkcp_half_open import forged_ping
from tests.support.v2ray import free_port, run_v2ray
from v2py.protocol.mkcp.settings import KcpSettings
from v2py.transport import mkcp
from v2py.transport.mkcp import KcpStream, listen_kcp

pytestmark = pytest.mark.interop
log = logging.getLogger(__name__)
#: Forged datagrams at most (the flood is bounded in count as well as time).
FLOOD_LIMIT = 60_000


async def _echo(stream: KcpStream) -> None:
    while data := await stream.read():
        stream.write(data)
        await stream.drain()


async def _tcp_echo(port: int, size: int) -> None:
    payload = random.Random(size).randbytes(size)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        got = await reader.readexactly(size)
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_v2ray_client_connects_through_a_forged_ping_flood() -> None:
    settings = KcpSettings()
    our_kcp = free_port(socket.SOCK_DGRAM)
    tcp_in = free_port()
    config = {
        "log": {"loglevel": "warning"},
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": tcp_in,
                "protocol": "dokodemo-door",
                "settings": {"address": "127.0.0.1", "port": our_kcp, "network": "tcp"},
            }
        ],
        "outbounds": [
            {
                "protocol": "freedom",
                "settings": {"redirect": f"127.0.0.1:{our_kcp}"},
                "streamSettings": {"network": "kcp", "kcpSettings": {"header": {"type": "none"}}},
            }
        ],
    }
    listener = await listen_kcp("127.0.0.1", our_kcp, settings, _echo)
    sockets = []
    for _ in range(64):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    stop = asyncio.Event()
    sent = 0

    async def flood() -> None:
        nonlocal sent
        conv = 0
        while not stop.is_set() and sent < FLOOD_LIMIT:
            for s in sockets:
                for _ in range(4):
                    conv = (conv + 1) & 0xFFFF
                    with contextlib.suppress(BlockingIOError):
                        s.sendto(forged_ping(conv), ("127.0.0.1", our_kcp))
                        sent += 1
            await asyncio.sleep(0)

    flood_task: asyncio.Task[None] | None = None
    try:
        async with run_v2ray(config, wait_tcp=[tcp_in], settle=0.3) as v2ray:
            try:
                flood_task = asyncio.create_task(flood())
                async with asyncio.timeout(5):
                    while sent < 3000:  # past the 1,024-session table, many times over
                        await asyncio.sleep(0.01)
                async with asyncio.timeout(60):
                    for size in (1, 16 * 1024, 64 * 1024, 16 * 1024):
                        await _tcp_echo(tcp_in, size)
            except BaseException:
                print(v2ray.log())
                raise
            finally:
                stop.set()
                if flood_task is not None:
                    await flood_task
        log.warning(
            "mKCP flood interop: %d forged pings, %d half-open dropped, %d refused for room",
            sent,
            listener.evicted_half_open,
            listener.refused_full,
        )
        assert listener.refused_full == 0
        assert listener.evicted_half_open > 1000
        assert listener.session_count <= mkcp.DEFAULT_MAX_SESSIONS
    finally:
        for s in sockets:
            s.close()
        listener.close()
        async with asyncio.timeout(5):
            await listener.wait_closed()
