"""UDP datagram sizes as V2Ray 4.34 carries them (issue 12, defect 5).

* socks -> freedom: 4.34 reads a client datagram into 2048 bytes, so an IPv4-addressed
  payload is cut to 2,038 bytes; v2py must cut it the same way (v2ray and v2py alike).
* v2py's VMess client -> 4.34's VMess server: a datagram goes as one chunk and is
  dropped only when the chunk would not fit 4.34's 2048-byte buffer (GCM with
  padding: always carried up to 1,967 bytes, never from 2,031 on); the session stays
  usable after a drop.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import pytest

from tests.support.v2py import run_side, run_v2py
from tests.support.v2ray import free_port, run_v2ray

pytestmark = pytest.mark.interop
TIMEOUT_S = 20.0
WAIT_S = 0.7


def socks_in(port: int) -> dict[str, Any]:
    return {
        "listen": "127.0.0.1",
        "port": port,
        "protocol": "socks",
        "settings": {"udp": True, "ip": "127.0.0.1"},
    }


def _exchange(socks_port: int, sizes: list[int]) -> list[int | None]:
    """Send one datagram per size through socks UDP to a local echo; return the size
    the echo server received for each (None: nothing arrived)."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as echo,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        echo.bind(("127.0.0.1", 0))
        echo.settimeout(WAIT_S)
        header = b"\x00\x00\x00\x01\x7f\x00\x00\x01" + echo.getsockname()[1].to_bytes(2, "big")
        seen: list[int | None] = []
        for i, size in enumerate(sizes):
            client.sendto(header + bytes([i]) * size, ("127.0.0.1", socks_port))
            try:
                data, _ = echo.recvfrom(70000)
                seen.append(len(data))
            except TimeoutError:
                seen.append(None)
        return seen


async def exchange(socks_port: int, sizes: list[int]) -> list[int | None]:
    return await asyncio.to_thread(_exchange, socks_port, sizes)


@pytest.mark.parametrize("kind", ["v2ray", "v2py"])
async def test_socks_to_freedom_cuts_at_2048(kind: str) -> None:
    port = free_port()
    config = {
        "log": {"loglevel": "none"},
        "inbounds": [socks_in(port)],
        "outbounds": [{"protocol": "freedom", "settings": {}}],
    }
    async with run_side(kind, config, port), asyncio.timeout(TIMEOUT_S):
        await asyncio.sleep(0.3)  # the UDP listener follows the TCP one
        assert await exchange(port, [2038, 2039, 3000, 60000]) == [2038, 2038, 2038, 2038]


async def test_v2py_vmess_client_drops_only_what_4_34_drops() -> None:
    socks_port, vmess_port = free_port(), free_port()
    user = str(uuid.uuid4())
    server = {
        "log": {"loglevel": "none"},
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": vmess_port,
                "protocol": "vmess",
                "settings": {"clients": [{"id": user, "alterId": 0}]},
            }
        ],
        "outbounds": [{"protocol": "freedom", "settings": {}}],
    }
    client = {
        "log": {"loglevel": "none"},
        "inbounds": [socks_in(socks_port)],
        "outbounds": [
            {
                "protocol": "vmess",
                "settings": {
                    "vnext": [
                        {
                            "address": "127.0.0.1",
                            "port": vmess_port,
                            "users": [{"id": user, "alterId": 0, "security": "aes-128-gcm"}],
                        }
                    ]
                },
            }
        ],
    }
    async with (
        run_v2ray(server, wait_tcp=[vmess_port]),
        run_v2py(client),
        asyncio.timeout(TIMEOUT_S),
    ):
        await asyncio.sleep(0.3)
        seen = await exchange(socks_port, [1900, 1967, 2031, 2038, 3000, 1967, 1000])
    assert seen == [1900, 1967, None, None, None, 1967, 1000]
