"""Interop: v2py's Trojan outbound and inbound against the real v2ray 4.34, both
directions, over plain TCP, TLS and WebSocket over TLS, with and without Mux.Cool: 1 MiB
each way by hash, a target that speaks first, UDP round trips. Both clients put the same
bytes on the wire (and nothing before the client's first byte); both servers close a
wrong password or a non-Trojan first read at once, without a byte, with the same
``rejected`` access line."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
from tests.support.tls_certs import TestCA
from tests.support.v2py import run_side, run_v2py
from tests.support.v2ray import free_port, run_v2ray
from v2py.protocol.trojan import COMMAND_TCP, encode_request, password_key

pytestmark = pytest.mark.interop

PASSWORD = "trojan-test-password"
TIMEOUT_S = 60.0
CA = TestCA()
LEAF = CA.issue("v2py.test", "127.0.0.1")


def _stream(kind: str, side: str) -> dict[str, Any]:
    """streamSettings for ``kind``: tcp, tls (over TCP) or ws-tls (WebSocket over TLS)."""
    stream: dict[str, Any] = {}
    if kind.startswith("ws"):
        stream = {"network": "ws", "wsSettings": {"path": "/trojan"}}
    if kind.endswith("tls"):
        stream["security"] = "tls"
        if side == "server":
            stream["tlsSettings"] = {"certificates": [LEAF.inline()]}
        else:
            stream["tlsSettings"] = {
                "serverName": "v2py.test",
                "certificates": [CA.pair.inline("verify")],
            }
    return stream


def server_config(port: int, kind: str = "tcp", *, access: str | None = None) -> dict[str, Any]:
    log: dict[str, Any] = {"loglevel": "warning"}
    if access is not None:
        log["access"] = access
    return {
        "log": log,
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": port,
                "protocol": "trojan",
                "settings": {"clients": [{"password": PASSWORD, "email": "t@v2py.test"}]},
                "streamSettings": _stream(kind, "server"),
            }
        ],
        "outbounds": [{"protocol": "freedom"}],
    }


def client_config(
    socks: int, server: int, kind: str = "tcp", *, password: str = PASSWORD, mux: bool = False
) -> dict[str, Any]:
    outbound: dict[str, Any] = {
        "protocol": "trojan",
        "settings": {"servers": [{"address": "127.0.0.1", "port": server, "password": password}]},
        "streamSettings": _stream(kind, "client"),
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


CASES = [
    pytest.param(client, server, kind, mux, id=f"{direction}-{kind}-{'mux' if mux else 'plain'}")
    for direction, client, server in (("v2py-out", "v2py", "v2ray"), ("v2py-in", "v2ray", "v2py"))
    for kind, mux in (
        ("tcp", False),
        ("tls", False),
        ("ws-tls", False),
        ("tcp", True),
        ("tls", True),
    )
]


@pytest.mark.parametrize(("client", "server_kind", "kind", "mux"), CASES)
async def test_trojan_between_v2py_and_v2ray(
    client: str, server_kind: str, kind: str, mux: bool
) -> None:
    server, socks = free_port(), free_port()
    udp_echo, udp_port = await start_udp_echo()
    try:
        async with (
            echo_server() as echo,
            echo_server(b"hello first") as talker,
            run_side(server_kind, server_config(server, kind), server),
            run_side(client, client_config(socks, server, kind, mux=mux), socks),
            asyncio.timeout(TIMEOUT_S),
        ):
            await asyncio.gather(*(socks5_echo_bulk(socks, echo) for _ in range(3)))
            # The target speaks first, once the connection is there: as 4.34's client,
            # the header leaves only with the client's first byte.
            reader, writer = await socks5_connect(socks, "127.0.0.1", talker)
            try:
                writer.write(b"!")
                assert await reader.readexactly(12) == b"hello first!"
            finally:
                writer.close()
            for size in (1, 1400, 2000):  # (the socks reply holds 2038 bytes of payload)
                payload = os.urandom(size)
                got = await socks5_udp_roundtrip(socks, "127.0.0.1", udp_port, payload)
                assert got == payload
    finally:
        udp_echo.close()


# -- what the clients send ------------------------------------------------------------


@asynccontextmanager
async def recorder() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A TCP listener that records what each connection sends (and sends nothing)."""
    received: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(received)
        received.append(b"")
        try:
            while data := await reader.read(65536):
                received[index] += data
        except OSError:
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(record, "127.0.0.1", 0)
    try:
        yield listener.sockets[0].getsockname()[1], received
    finally:
        listener.close()


async def _udp_send(socks: int, payload: bytes) -> None:
    with pytest.raises(TimeoutError):  # nothing answers: only the request matters
        await socks5_udp_roundtrip(socks, "1.2.3.4", 53, payload, timeout=0.5)


@pytest.mark.parametrize("client", ["v2py", "v2ray"])
async def test_clients_send_the_same_bytes(client: str) -> None:
    socks = free_port()
    key = password_key(PASSWORD)
    async with recorder() as (port, received):
        async with (
            run_side(client, client_config(socks, port), socks),
            asyncio.timeout(TIMEOUT_S),
        ):
            reader, writer = await socks5_connect(socks, "example.com", 443)
            await asyncio.sleep(0.5)  # silence: no header goes out without a payload
            assert b"".join(received) == b""
            writer.write(b"hi")
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.close()
            await _udp_send(socks, b"query")
            await asyncio.sleep(0.3)
        tcp = encode_request(key, COMMAND_TCP, "example.com", 443) + b"hi"
        udp = key + b"\r\n\x03\x01\x01\x02\x03\x04\x00\x35\r\n"
        udp += b"\x01\x01\x02\x03\x04\x00\x35\x00\x05\r\nquery"
        assert sorted(received) == sorted([tcp, udp])


# -- what the servers do with a bad client -------------------------------------------


PROBES = {
    "wrong-password": encode_request(password_key("wrong"), COMMAND_TCP, "127.0.0.1", 7) + b"x",
    "not-trojan": b"GET / HTTP/1.1\r\nHost: v2py.test\r\n\r\n",
    "split-first-read": password_key(PASSWORD)[:20],
    "bad-address": password_key(PASSWORD) + b"\r\n\x01\x09",
}


def _normalize(line: str) -> str:
    """An access line without its time stamp and source port."""
    line = re.sub(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", "", line.strip())
    return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line)


async def _probe(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(100), 5)
    finally:
        writer.close()


async def test_servers_close_bad_clients_alike(access: list[str], tmp_path: Path) -> None:
    v2ray_port, v2py_port = free_port(), free_port()
    access_path = tmp_path / "access.log"
    async with (
        run_v2ray(server_config(v2ray_port, access=str(access_path)), wait_tcp=[v2ray_port]),
        run_v2py(server_config(v2py_port)),
        asyncio.timeout(TIMEOUT_S),
    ):
        for name, data in PROBES.items():
            for port in (v2ray_port, v2py_port):
                assert await _probe(port, data) == b"", (name, port)
        await asyncio.sleep(0.5)
        theirs = [_normalize(line) for line in access_path.read_text().splitlines() if line]
    ours = [_normalize(line) for line in access]
    assert theirs == ours
    assert theirs == [
        "127.0.0.1:PORT rejected  v2ray.com/core/proxy/trojan: not a valid user",
        "127.0.0.1:PORT rejected  v2ray.com/core/proxy/trojan: not trojan protocol",
        "127.0.0.1:PORT rejected  v2ray.com/core/proxy/trojan: not trojan protocol",
        "127.0.0.1:PORT rejected  v2ray.com/core/proxy/trojan: failed to read address and "
        "port > v2ray.com/core/common/protocol: unknown address type: 9",
    ]


@pytest.mark.parametrize("kind", ["v2ray", "v2py"])
async def test_wrong_password_from_a_client_gets_nothing(kind: str) -> None:
    server, socks = free_port(), free_port()
    client = "v2py" if kind == "v2ray" else "v2ray"
    async with (
        echo_server() as echo,
        run_side(kind, server_config(server), server),
        run_side(client, client_config(socks, server, password="wrong"), socks),
        asyncio.timeout(TIMEOUT_S),
    ):
        reader, writer = await socks5_connect(socks, "127.0.0.1", echo)
        try:
            writer.write(b"ping")
            await writer.drain()
            assert await reader.read(100) == b""
        finally:
            writer.close()


async def _timed_close(port: int, data: bytes) -> float:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        started = loop.time()
        writer.write(data)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(100), 10) == b""
        return loop.time() - started
    finally:
        writer.close()


async def test_servers_time_out_and_accept_alike(access: list[str], tmp_path: Path) -> None:
    """Policy handshake 1 s: a silent client and a header cut short are closed after it
    (only the second with a rejected line); a good TCP request and a UDP packet give the
    same accepted lines (UDP: the inbound's source as tcp:, the packet's destination)."""
    v2ray_port, v2py_port = free_port(), free_port()
    access_path = tmp_path / "access.log"
    policy = {"levels": {"0": {"handshake": 1}}}
    key = password_key(PASSWORD)
    udp_echo, udp_port = await start_udp_echo()
    try:
        async with (
            echo_server() as echo,
            run_v2ray(
                {**server_config(v2ray_port, access=str(access_path)), "policy": policy},
                wait_tcp=[v2ray_port],
            ),
            run_v2py({**server_config(v2py_port), "policy": policy}),
            asyncio.timeout(TIMEOUT_S),
        ):
            for port in (v2ray_port, v2py_port):
                silent, cut = await asyncio.gather(
                    _timed_close(port, b""), _timed_close(port, key + b"\r\n\x01\x03")
                )
                assert 0.8 < silent < 3 and 0.8 < cut < 3, (port, silent, cut)
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(encode_request(key, COMMAND_TCP, "127.0.0.1", echo) + b"ping")
                assert await reader.readexactly(4) == b"ping"
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(
                    key
                    + b"\r\n\x03\x01\x7f\x00\x00\x01\x00\x35\r\n"
                    + b"\x01\x7f\x00\x00\x01"
                    + udp_port.to_bytes(2, "big")
                    + b"\x00\x04\r\npong"
                )
                head = b"\x01\x7f\x00\x00\x01" + udp_port.to_bytes(2, "big") + b"\x00\x04\r\n"
                assert await reader.readexactly(len(head) + 4) == head + b"pong"
                writer.close()
            await asyncio.sleep(0.5)
            theirs = [_normalize(line) for line in access_path.read_text().splitlines() if line]
    finally:
        udp_echo.close()
    ours = [_normalize(line) for line in access]
    assert sorted(theirs) == sorted(ours)
    assert len(theirs) == 3, theirs
