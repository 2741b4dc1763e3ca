"""The VMess interop matrix: {v2py→v2ray, v2ray→v2py, v2py→v2py} × {AEAD, legacy} × securities.

Each case moves 8 MiB up and 8 MiB down through socks → vmess client → vmess
server → freedom → echo, checked by SHA-256, and does one UDP round trip.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from typing import Any

import pytest

from tests.support.configs import vmess_client_config, vmess_server_config
from tests.support.socks import socks5_connect, socks5_udp_roundtrip, start_udp_echo
from tests.support.v2py import run_side
from tests.support.v2ray import free_ports

UUID = "b831381d-6324-4d53-ad4f-8cda48b30811"
PAYLOAD_BYTES = 8 * 1024 * 1024
_PAYLOAD = random.Random(7).randbytes(PAYLOAD_BYTES)

SECURITIES = ["aes-128-gcm", "chacha20-poly1305", "none", "auto", "aes-128-cfb"]
DIRECTIONS = ["v2py-v2ray", "v2ray-v2py", "v2py-v2py"]


def _cases() -> list[Any]:
    cases = []
    for direction in DIRECTIONS:
        for alter_id in (0, 4):
            for security in SECURITIES:
                if direction.startswith("v2ray") and security == "aes-128-cfb":
                    continue  # a 4.34 client cannot select it (it silently becomes auto)
                marks = [pytest.mark.interop] if "v2ray" in direction else []
                header = "aead" if alter_id == 0 else "legacy"
                cases.append(
                    pytest.param(
                        direction,
                        alter_id,
                        security,
                        marks=marks,
                        id=f"{direction}-{header}-{security}",
                    )
                )
    return cases


async def tcp_roundtrip(socks_port: int, echo: tuple[str, int], payload: bytes) -> None:
    reader, writer = await socks5_connect(socks_port, *echo)

    async def send() -> None:
        view = memoryview(payload)
        for i in range(0, len(view), 256 * 1024):
            writer.write(view[i : i + 256 * 1024])
            await writer.drain()
        writer.write_eof()

    sender = asyncio.create_task(send())
    received = await reader.readexactly(len(payload))
    await sender
    writer.close()
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


@pytest.mark.parametrize(("direction", "alter_id", "security"), _cases())
async def test_vmess_matrix(
    direction: str, alter_id: int, security: str, echo_server: tuple[str, int]
) -> None:
    client_kind, server_kind = direction.split("-")
    socks_port, server_port = free_ports(2)
    udp_echo, udp_port = await start_udp_echo()
    try:
        async with asyncio.timeout(90):
            async with (
                run_side(
                    server_kind,
                    vmess_server_config(server_port, UUID, alter_id, email="t@v2py"),
                    server_port,
                ),
                run_side(
                    client_kind,
                    vmess_client_config(
                        socks_port, server_port, UUID, alter_id, security, udp=True
                    ),
                    socks_port,
                ),
            ):
                await tcp_roundtrip(socks_port, echo_server, _PAYLOAD)
                reply = await socks5_udp_roundtrip(
                    socks_port, "127.0.0.1", udp_port, b"ping-v2py" * 50
                )
                assert reply == b"ping-v2py" * 50
    finally:
        udp_echo.close()
