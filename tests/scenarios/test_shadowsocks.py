"""Shadowsocks end to end without the v2ray binary: an answer too large to seal in one
2048-byte datagram is dropped (4.34's encoder would panic), never sent empty, and the
flow goes on; a client datagram too large to seal is not sent."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.socks import socks5_udp_roundtrip
from tests.support.v2py import run_v2py
from tests.support.v2ray import free_port

TIMEOUT_S = 30.0


def configs(socks: int, port: int) -> tuple[dict[str, Any], dict[str, Any]]:
    server = {
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": port,
                "protocol": "shadowsocks",
                "settings": {"method": "aes-128-gcm", "password": "p", "udp": True},
            }
        ],
        "outbounds": [{"protocol": "freedom"}],
    }
    client = {
        "inbounds": [
            {"listen": "127.0.0.1", "port": socks, "protocol": "socks", "settings": {"udp": True}}
        ],
        "outbounds": [
            {
                "protocol": "shadowsocks",
                "settings": {
                    "servers": [
                        {
                            "address": "127.0.0.1",
                            "port": port,
                            "method": "aes-128-gcm",
                            "password": "p",
                        }
                    ]
                },
            }
        ],
    }
    return server, client


class _Grower(asyncio.DatagramProtocol):
    """Answers b"big" with 2030 bytes (too many to seal), anything else with itself."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        answer = b"x" * 2030 if data == b"big" else data
        self.transport.sendto(answer, addr)  # type: ignore[attr-defined]


async def test_oversized_datagrams_are_dropped() -> None:
    port, socks = free_port(), free_port()
    server, client = configs(socks, port)
    loop = asyncio.get_running_loop()
    target, _ = await loop.create_datagram_endpoint(_Grower, local_addr=("127.0.0.1", 0))
    target_port = target.get_extra_info("sockname")[1]
    try:
        async with (
            run_v2py(server),
            run_v2py(client),
            asyncio.timeout(TIMEOUT_S),
        ):
            assert await socks5_udp_roundtrip(socks, "127.0.0.1", target_port, b"one") == b"one"
            try:
                async with asyncio.timeout(0.5):
                    got = await socks5_udp_roundtrip(socks, "127.0.0.1", target_port, b"big")
            except TimeoutError:
                got = None
            assert got is None
            assert await socks5_udp_roundtrip(socks, "127.0.0.1", target_port, b"two") == b"two"
    finally:
        target.close()
