"""Trojan end to end without the v2ray binary: socks -> v2py trojan client -> v2py
trojan server -> freedom -> echo (TCP, UDP to two destinations on one connection, a
routing ``user`` rule on the server), and a wrong password closed at once."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from tests.support.forward import echo_server
from tests.support.socks import socks5_connect, socks5_udp_roundtrip, start_udp_echo
from tests.support.v2py import run_v2py
from tests.support.v2ray import free_port
from v2py.protocol.trojan import COMMAND_TCP, encode_request, password_key

PASSWORD = "scenario"
TIMEOUT_S = 30.0


def server(port: int) -> dict[str, Any]:
    return {
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": port,
                "protocol": "trojan",
                "settings": {
                    "clients": [
                        {"password": PASSWORD, "email": "good@x"},
                        {"password": "blocked", "email": "blocked@x"},
                    ]
                },
            }
        ],
        "outbounds": [{"protocol": "freedom"}, {"protocol": "blackhole", "tag": "block"}],
        "routing": {"rules": [{"type": "field", "user": ["blocked@x"], "outboundTag": "block"}]},
    }


def client(socks: int, port: int, password: str = PASSWORD) -> dict[str, Any]:
    return {
        "inbounds": [
            {"listen": "127.0.0.1", "port": socks, "protocol": "socks", "settings": {"udp": True}}
        ],
        "outbounds": [
            {
                "protocol": "trojan",
                "settings": {
                    "servers": [{"address": "127.0.0.1", "port": port, "password": password}]
                },
            }
        ],
    }


async def test_tcp_udp_and_user_routing() -> None:
    port, socks, blocked_socks = free_port(), free_port(), free_port()
    udp_a, port_a = await start_udp_echo()
    udp_b, port_b = await start_udp_echo()
    try:
        async with (
            echo_server(b"hi:") as echo,
            run_v2py(server(port)),
            run_v2py(client(socks, port)),
            run_v2py(client(blocked_socks, port, "blocked")),
            asyncio.timeout(TIMEOUT_S),
        ):
            reader, writer = await socks5_connect(socks, "127.0.0.1", echo)
            payload = os.urandom(300_000)
            writer.write(payload)
            assert await reader.readexactly(3 + len(payload)) == b"hi:" + payload
            writer.close()
            for udp_port in (port_a, port_b, port_a):
                data = os.urandom(1000)
                assert await socks5_udp_roundtrip(socks, "127.0.0.1", udp_port, data) == data
            # The second user is routed to blackhole by its email.
            reader, writer = await socks5_connect(blocked_socks, "127.0.0.1", echo)
            writer.write(b"x")
            assert await asyncio.wait_for(reader.read(100), 10) == b""
            writer.close()
    finally:
        udp_a.close()
        udp_b.close()


async def test_one_connection_carries_packets_to_several_destinations() -> None:
    port = free_port()
    udp_a, port_a = await start_udp_echo()
    udp_b, port_b = await start_udp_echo()
    key = password_key(PASSWORD)

    def packet(udp_port: int, data: bytes) -> bytes:
        head = b"\x01\x7f\x00\x00\x01" + udp_port.to_bytes(2, "big")
        return head + len(data).to_bytes(2, "big") + b"\r\n" + data

    try:
        async with run_v2py(server(port)), asyncio.timeout(TIMEOUT_S):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            first = key + b"\r\n\x03\x01\x7f\x00\x00\x01\x00\x01\r\n"
            writer.write(first + packet(port_a, b"to-a") + packet(port_b, b"to-b"))
            got = {await reader.readexactly(len(packet(0, b"to-a"))) for _ in range(2)}
            assert got == {packet(port_a, b"to-a"), packet(port_b, b"to-b")}
            writer.close()
    finally:
        udp_a.close()
        udp_b.close()


async def test_wrong_password_is_closed_without_a_byte() -> None:
    port = free_port()
    async with run_v2py(server(port)), asyncio.timeout(TIMEOUT_S):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(encode_request(password_key("nope"), COMMAND_TCP, "127.0.0.1", 1) + b"x")
        assert await asyncio.wait_for(reader.read(100), 5) == b""
        writer.close()
