"""Interop: v2py's VLESS outbound against the real v2ray's VLESS inbound (4.34): TCP
(1 MiB each way by hash, a server that speaks first), UDP round trips, Mux.Cool over
VLESS, and an unknown id (4.34 closes the connection: the client gets nothing)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from tests.support.forward import echo_server
from tests.support.socks import (
    socks5_connect,
    socks5_echo_bulk,
    socks5_udp_roundtrip,
    start_udp_echo,
)
from tests.support.v2py import run_side, run_v2py
from tests.support.v2ray import free_port, run_v2ray

pytestmark = pytest.mark.interop

UUID = "b831381d-6324-4d53-ad4f-8cda48b30811"
OTHER = "27848739-7e62-4138-9fd3-098a63964b6b"
TIMEOUT_S = 30.0


def server_config(port: int) -> dict[str, Any]:
    return {
        "log": {"loglevel": "warning"},
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": port,
                "protocol": "vless",
                "settings": {"clients": [{"id": UUID}], "decryption": "none"},
            }
        ],
        "outbounds": [{"protocol": "freedom"}],
    }


def client_config(
    socks: int, server: int, *, user: str = UUID, mux: bool = False
) -> dict[str, Any]:
    outbound: dict[str, Any] = {
        "protocol": "vless",
        "settings": {
            "vnext": [
                {
                    "address": "127.0.0.1",
                    "port": server,
                    "users": [{"id": user, "encryption": "none"}],
                }
            ]
        },
    }
    if mux:
        outbound["mux"] = {"enabled": True, "concurrency": 4}
    return {
        "log": {"loglevel": "warning"},
        "inbounds": [
            {"listen": "127.0.0.1", "port": socks, "protocol": "socks", "settings": {"udp": True}}
        ],
        "outbounds": [outbound],
    }


@pytest.mark.parametrize("mux", [False, True], ids=["plain", "mux"])
@pytest.mark.parametrize(
    ("client", "server_kind"), [("v2py", "v2ray"), ("v2ray", "v2py")], ids=["v2py-out", "v2py-in"]
)
async def test_vless_between_v2py_and_v2ray(client: str, server_kind: str, mux: bool) -> None:
    server, socks = free_port(), free_port()
    udp_echo, udp_port = await start_udp_echo()
    try:
        async with (
            echo_server() as echo,
            echo_server(b"hello first") as talker,
            run_side(server_kind, server_config(server), server),
            run_side(client, client_config(socks, server, mux=mux), socks),
            asyncio.timeout(TIMEOUT_S),
        ):
            await asyncio.gather(*(socks5_echo_bulk(socks, echo) for _ in range(3)))
            # The server speaks first: the header leaves alone after 100 ms.
            reader, writer = await socks5_connect(socks, "127.0.0.1", talker)
            try:
                assert await reader.readexactly(11) == b"hello first"
            finally:
                writer.close()
            for size in (1, 1400, 2000):  # (the socks reply holds 2038 bytes of payload)
                payload = os.urandom(size)
                got = await socks5_udp_roundtrip(socks, "127.0.0.1", udp_port, payload)
                assert (size, len(got), got[:8]) == (size, size, payload[:8])
                assert got == payload
    finally:
        udp_echo.close()


async def test_unknown_id_gets_nothing() -> None:
    server, socks = free_port(), free_port()
    async with (
        echo_server() as echo,
        run_v2ray(server_config(server), wait_tcp=[server]),
        run_v2py(client_config(socks, server, user=OTHER)),
        asyncio.timeout(TIMEOUT_S),
    ):
        reader, writer = await socks5_connect(socks, "127.0.0.1", echo)
        try:
            writer.write(b"ping")
            await writer.drain()
            assert await reader.read(100) == b""
        finally:
            writer.close()


@pytest.mark.parametrize("kind", ["v2ray", "v2py"])
async def test_server_closes_an_unknown_id_at_once(kind: str) -> None:
    """A raw client with a wrong id: both servers close without a byte (no drain)."""
    import uuid

    from v2py.protocol.vless import COMMAND_TCP, encode_request

    server = free_port()
    async with run_side(kind, server_config(server), server), asyncio.timeout(TIMEOUT_S):
        reader, writer = await asyncio.open_connection("127.0.0.1", server)
        try:
            writer.write(encode_request(uuid.UUID(OTHER).bytes, COMMAND_TCP, "1.2.3.4", 80))
            await writer.drain()
            assert await asyncio.wait_for(reader.read(100), 5) == b""
        finally:
            writer.close()
