"""Interop: Shadowsocks between v2py and the real v2ray 4.34, both directions, every
cipher 4.34 has: TCP (1 MiB each way by hash, a server that speaks first), UDP round
trips, Mux.Cool over Shadowsocks; and how both servers treat a client with the wrong
password (they read on, then close without a byte)."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.forward import echo_server
from tests.support.socks import (
    socks5_connect,
    socks5_echo_bulk,
    socks5_udp_roundtrip,
    start_udp_echo,
)
from tests.support.v2py import run_side
from tests.support.v2ray import free_port

pytestmark = pytest.mark.interop

PASSWORD = "correct horse battery staple"
TIMEOUT_S = 30.0
CIPHERS = ["aes-128-gcm", "aes-256-gcm", "chacha20-poly1305", "none"]


def server_config(port: int, method: str, *, handshake: int = 4) -> dict[str, Any]:
    return {
        "log": {"loglevel": "warning"},
        "policy": {"levels": {"0": {"handshake": handshake}}},
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": port,
                "protocol": "shadowsocks",
                "settings": {"method": method, "password": PASSWORD, "network": "tcp,udp"},
            }
        ],
        "outbounds": [{"protocol": "freedom"}],
    }


def client_config(
    socks: int, server: int, method: str, *, password: str = PASSWORD, mux: bool = False
) -> dict[str, Any]:
    outbound: dict[str, Any] = {
        "protocol": "shadowsocks",
        "settings": {
            "servers": [
                {"address": "127.0.0.1", "port": server, "method": method, "password": password}
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


CASES = [(cipher, False) for cipher in CIPHERS] + [("aes-128-gcm", True)]


@pytest.mark.parametrize(
    ("method", "mux"), CASES, ids=[f"{c}{'-mux' if m else ''}" for c, m in CASES]
)
@pytest.mark.parametrize(
    ("client", "server_kind"), [("v2py", "v2ray"), ("v2ray", "v2py")], ids=["v2py-out", "v2py-in"]
)
async def test_shadowsocks_between_v2py_and_v2ray(
    client: str, server_kind: str, method: str, mux: bool
) -> None:
    server, socks = free_port(), free_port()
    udp_echo, udp_port = await start_udp_echo()
    try:
        async with (
            echo_server() as echo,
            echo_server(b"hello first") as talker,
            run_side(server_kind, server_config(server, method), server),
            run_side(client, client_config(socks, server, method, mux=mux), socks),
            asyncio.timeout(TIMEOUT_S),
        ):
            await asyncio.gather(*(socks5_echo_bulk(socks, echo) for _ in range(3)))
            # The server speaks first: the client's salt and address left at once.
            reader, writer = await socks5_connect(socks, "127.0.0.1", talker)
            try:
                assert await reader.readexactly(11) == b"hello first"
            finally:
                writer.close()
            for size in (1, 1400, 1900):  # 4.34 cannot seal a datagram above 2048 bytes
                payload = os.urandom(size)
                got = await socks5_udp_roundtrip(socks, "127.0.0.1", udp_port, payload)
                assert got == payload
    finally:
        udp_echo.close()


async def _probe(port: int, data: bytes) -> tuple[str, float]:
    """Send ``data`` and report how the server ended the connection, and when."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = loop.time()
    try:
        writer.write(data)
        await writer.drain()
        try:
            got = await asyncio.wait_for(reader.read(100), 10)
        except ConnectionResetError:
            return "rst", loop.time() - start
        return ("fin" if got == b"" else f"data {got!r}"), loop.time() - start
    finally:
        writer.close()


@pytest.mark.parametrize("method", ["aes-128-gcm", "chacha20-poly1305"])
async def test_wrong_password_is_drained_then_closed_as_4_34(method: str) -> None:
    """A client with the wrong key: both servers keep reading until the handshake
    timeout (a short probe), or close with RST at once once more than the drain budget
    (at most 3266 + 54 + 64 bytes) arrived; neither sends a byte."""
    from v2py.protocol.shadowsocks import cipher_named, encode_request_header, password_key

    cipher = cipher_named(method)
    wrong = password_key("wrong", cipher.key_size)
    head, sealer = encode_request_header(cipher, wrong, "1.2.3.4", 80, os.urandom)
    assert sealer is not None
    short = head + sealer.seal(b"GET / HTTP/1.1\r\n\r\n")
    results: dict[str, list[tuple[str, float]]] = {}
    for kind in ("v2ray", "v2py"):
        server = free_port()
        async with run_side(kind, server_config(server, method, handshake=1), server):
            results[kind] = list(
                await asyncio.gather(_probe(server, short), _probe(server, os.urandom(5000)))
            )
    for kind, ((short_end, short_time), (long_end, long_time)) in results.items():
        assert short_end == "fin" and 0.8 < short_time < 3, (kind, results)
        assert long_end == "rst" and long_time < 0.8, (kind, results)


def _normalize(line: str) -> str:
    """An access line without its time stamp and source port."""
    line = re.sub(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", "", line.strip())
    return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line)


async def _send_and_close(port: int, data: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if data:
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        await asyncio.wait_for(reader.read(100), 5)
    finally:
        writer.close()


async def test_rejected_lines_as_4_34(access: list[str], tmp_path: Path) -> None:
    """The same bad TCP clients and UDP datagrams get the same ``rejected`` lines."""
    from v2py.protocol.shadowsocks import cipher_named, encode_request_header, password_key

    cipher = cipher_named("aes-128-gcm")
    wrong_head, _ = encode_request_header(
        cipher, password_key("wrong", 16), "1.2.3.4", 80, os.urandom
    )
    right_head, _ = encode_request_header(
        cipher, password_key(PASSWORD, 16), "1.2.3.4", 80, os.urandom
    )
    tcp_probes = [b"", b"abc", right_head[:20], wrong_head]
    udp_probes = [os.urandom(100), os.urandom(10), b""]
    v2ray_port, v2py_port = free_port(), free_port()
    access_path = tmp_path / "access.log"
    v2ray_config = server_config(v2ray_port, "aes-128-gcm")
    v2ray_config["log"]["access"] = str(access_path)
    loop = asyncio.get_running_loop()
    sender, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    try:
        async with (
            run_side("v2ray", v2ray_config, v2ray_port),
            run_side("v2py", server_config(v2py_port, "aes-128-gcm"), v2py_port),
            asyncio.timeout(TIMEOUT_S),
        ):
            for port in (v2ray_port, v2py_port):
                for data in tcp_probes:
                    await _send_and_close(port, data)
                for data in udp_probes:
                    sender.sendto(data, ("127.0.0.1", port))
            # (the UDP lines come as the datagrams are read, 4.34's from a goroutine)
            for _ in range(100):
                theirs = {_normalize(x) for x in access_path.read_text().splitlines() if x}
                ours = {_normalize(line) for line in access if " rejected " in line}
                if len(theirs) >= 6 and len(ours) >= 6:
                    break
                await asyncio.sleep(0.05)
    finally:
        sender.close()
    # (as sets: 4.34 also logs run_side's readiness probe, a bare connect)
    assert ours == theirs
    prefix = "v2ray.com/core/proxy/shadowsocks: "
    assert theirs == set(
        [
            f"127.0.0.1:PORT rejected  {prefix}failed to read IV > EOF",
            f"127.0.0.1:PORT rejected  {prefix}failed to read IV > unexpected EOF",
            f"127.0.0.1:PORT rejected  {prefix}failed to read address > unexpected EOF",
            f"127.0.0.1:PORT rejected  {prefix}failed to read address > "
            "cipher: message authentication failed",
            f"udp:127.0.0.1:PORT rejected  {prefix}failed to decrypt UDP payload > "
            "cipher: message authentication failed",
            f"udp:127.0.0.1:PORT rejected  {prefix}failed to decrypt UDP payload > "
            f"{prefix}insufficient data: 10",
        ]
    )
