"""Interop: Mux.Cool between v2py and the real V2Ray 4.34, both directions.

app -> socks inbound -> vmess outbound (mux on) -> vmess inbound -> freedom -> echo,
with the client side and the server side each run by v2ray or v2py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.configs import vmess_client_config, vmess_server_config
from tests.support.servers import TcpEchoServer
from tests.support.socks import socks5_connect, socks5_udp_roundtrip, start_udp_echo
from tests.support.v2py import run_side
from tests.support.v2ray import free_ports

pytestmark = pytest.mark.interop

UUID = "b831381d-6324-4d53-ad4f-8cda48b30811"
SESSIONS = 50
SIZE = 1024 * 1024
TIMEOUT_S = 120.0

PAIRS = [
    ("v2ray", "v2py", 1),
    ("v2ray", "v2py", 8),
    ("v2py", "v2ray", 8),
    ("v2py", "v2py", 8),
]
PAIR_IDS = [f"{c}-client-{s}-server-c{n}" for c, s, n in PAIRS]
# half-close checks also run the reference pair: what they assert is 4.34's behaviour
HALF_CLOSE_PAIRS = [("v2ray", "v2ray", 8), *PAIRS[1:]]
HALF_CLOSE_IDS = ["v2ray-client-v2ray-server-c8", *PAIR_IDS[1:]]


def client_config(socks_port: int, server_port: int, concurrency: int) -> dict[str, Any]:
    config = vmess_client_config(socks_port, server_port, UUID, 0, "aes-128-gcm", udp=True)
    config["outbounds"][0]["mux"] = {"enabled": True, "concurrency": concurrency}
    return config


@contextlib.asynccontextmanager
async def mux_chain(client: str, server: str, concurrency: int) -> AsyncIterator[int]:
    """Start the server side, then the client side; yield the client's socks port."""
    socks_port, server_port = free_ports(2)
    async with (
        run_side(server, vmess_server_config(server_port, UUID, 0), server_port),
        run_side(client, client_config(socks_port, server_port, concurrency), socks_port),
    ):
        yield socks_port


def pattern(index: int) -> bytes:
    return hashlib.sha256(index.to_bytes(4, "big")).digest() * (SIZE // 32)


async def one_bulk(socks_port: int, echo_port: int, index: int) -> None:
    payload = pattern(index)
    reader, writer = await socks5_connect(socks_port, "127.0.0.1", echo_port)
    try:

        async def send() -> None:
            view = memoryview(payload)
            for start in range(0, SIZE, 64 * 1024):
                writer.write(view[start : start + 64 * 1024])
                await writer.drain()

        sender = asyncio.create_task(send())
        # Over mux the app's EOF ends the session both ways (4.34), so it half-closes
        # only after the whole echo has come back.
        got = await reader.readexactly(SIZE)
        await sender
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    finally:
        writer.close()


@pytest.mark.parametrize(("client", "server", "concurrency"), PAIRS, ids=PAIR_IDS)
async def test_fifty_sessions_one_mib_each_way(client: str, server: str, concurrency: int) -> None:
    async with TcpEchoServer() as echo, mux_chain(client, server, concurrency) as socks_port:
        async with asyncio.timeout(TIMEOUT_S):
            await asyncio.gather(*(one_bulk(socks_port, echo.port, i) for i in range(SESSIONS)))


@pytest.mark.parametrize(("client", "server", "concurrency"), PAIRS[1:], ids=PAIR_IDS[1:])
async def test_udp_round_trips_over_mux(client: str, server: str, concurrency: int) -> None:
    transport, udp_port = await start_udp_echo()
    try:
        async with mux_chain(client, server, concurrency) as socks_port:
            async with asyncio.timeout(30):
                for size in (1, 100, 1400):
                    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
                    got = await socks5_udp_roundtrip(socks_port, "127.0.0.1", udp_port, payload)
                    assert got == payload
    finally:
        transport.close()


async def half_close_observation(socks_port: int, echo_port: int) -> tuple[bytes, bytes]:
    """Send, read the echo, shut down writing, then send nothing and see what arrives."""
    reader, writer = await socks5_connect(socks_port, "127.0.0.1", echo_port)
    try:
        writer.write(b"req")
        await writer.drain()
        first = await reader.readexactly(3)
        sock = writer.get_extra_info("socket")
        sock.shutdown(socket.SHUT_WR)
        async with asyncio.timeout(10):
            rest = await reader.read()
        return first, rest
    finally:
        writer.close()


@pytest.mark.parametrize(("client", "server", "concurrency"), HALF_CLOSE_PAIRS, ids=HALF_CLOSE_IDS)
async def test_half_close_as_4_34(client: str, server: str, concurrency: int) -> None:
    """The app's half-close ends the mux session: the echo is done, then EOF at once."""
    async with TcpEchoServer() as echo, mux_chain(client, server, concurrency) as socks_port:
        async with asyncio.timeout(30):
            first, rest = await half_close_observation(socks_port, echo.port)
    assert (first, rest) == (b"req", b"")


async def delayed_reply_after_half_close(socks_port: int, port: int) -> bytes:
    """The target answers only after the app's half-close: over mux nothing comes back."""
    reader, writer = await socks5_connect(socks_port, "127.0.0.1", port)
    try:
        writer.write(b"question")
        await writer.drain()
        writer.get_extra_info("socket").shutdown(socket.SHUT_WR)
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()


@pytest.mark.parametrize(("client", "server", "concurrency"), HALF_CLOSE_PAIRS, ids=HALF_CLOSE_IDS)
async def test_reply_after_half_close_is_dropped(
    client: str, server: str, concurrency: int
) -> None:
    async def answer_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client's EOF
        with contextlib.suppress(OSError):
            writer.write(b"answer")
            await writer.drain()
            writer.close()

    target = await asyncio.start_server(answer_after_eof, "127.0.0.1", 0)
    port = target.sockets[0].getsockname()[1]
    try:
        async with mux_chain(client, server, concurrency) as socks_port:
            async with asyncio.timeout(30):
                assert await delayed_reply_after_half_close(socks_port, port) == b""
    finally:
        target.close()


@pytest.mark.parametrize(("client", "server", "concurrency"), HALF_CLOSE_PAIRS, ids=HALF_CLOSE_IDS)
async def test_target_half_close_as_4_34(client: str, server: str, concurrency: int) -> None:
    """The target shuts down writing: the app reads the rest and EOF; the session is then
    over both ways, so the app's later bytes never reach the target (4.34, the reference
    pair included)."""
    target_got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def says_bye(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(5)
        writer.write(b"bye")
        await writer.drain()
        writer.write_eof()
        try:
            rest = await reader.read()
        except OSError:
            rest = b"<reset>"
        if not target_got.done():
            target_got.set_result(rest)
        writer.close()

    target = await asyncio.start_server(says_bye, "127.0.0.1", 0)
    port = target.sockets[0].getsockname()[1]
    try:
        async with mux_chain(client, server, concurrency) as socks_port:
            async with asyncio.timeout(30):
                reader, writer = await socks5_connect(socks_port, "127.0.0.1", port)
                writer.write(b"hello")
                await writer.drain()
                assert await reader.read() == b"bye"  # then EOF
                with contextlib.suppress(OSError):
                    writer.write(b"late")
                    await writer.drain()
                assert await target_got == b""
                writer.close()
    finally:
        target.close()
