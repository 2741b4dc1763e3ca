"""10,000 random and mutated SOCKS/HTTP first packets against running listeners.

Well-formed clients must keep being served during and after the storm, and no
handler error may escape (each bad connection is logged and closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import pytest

from tests.support.servers import serve_inbound
from tests.support.v2ray import free_port
from v2py.app.policy import PolicyTable, Timeouts
from v2py.app.session import Session, SniffingSettings
from v2py.proxy.http_inbound import HttpInbound
from v2py.proxy.socks_inbound import SocksInbound
from v2py.transport.stream import Stream

FUZZ_CONNECTIONS = 10_000
CONCURRENCY = 128
SEED = 20240934
TIMEOUT_S = 120.0

SEEDS = [
    b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50hello",
    b"\x05\x02\x00\x02\x01\x01u\x01p\x05\x01\x00\x03\x0bexample.com\x01\xbb",
    b"\x05\x01\x00\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00",
    b"\x04\x01\x00\x50\x7f\x00\x00\x01user\x00",
    b"\x04\x01\x01\xbb\x00\x00\x00\x01\x00example.test\x00",
    b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test\r\n\r\n",
    b"GET http://example.test/a?b HTTP/1.1\r\nHost: example.test\r\n\r\n",
    b"POST http://[::1]:8080/ HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    b"GET / HTTP/1.1\r\nProxy-Authorization: Basic dTpw\r\n\r\n",
]


class QuickOutbound:
    """Answers ``ok`` at once and returns (keeps the storm fast)."""

    tag = "quick"

    def __init__(self) -> None:
        self.count = 0

    async def handle(self, session: Session, stream: Stream) -> None:
        self.count += 1
        stream.write(b"ok")
        await stream.drain()

    async def handle_packets(self, session: Session, link: object) -> None:
        return None


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[pos % len(buf)] = rng.randrange(256)
        elif op == 1:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 2:
            del buf[pos : pos + rng.randint(1, 8)]
        elif op == 3:
            buf = buf[:pos]
        else:
            buf[pos:pos] = bytes([rng.choice((0, 0xFF, 0x0D, 0x0A, 0x3A))]) * rng.randint(1, 300)
    return bytes(buf)


def fuzz_packets(count: int) -> list[bytes]:
    rng = random.Random(SEED)
    packets = []
    for i in range(count):
        if i % 3 == 0:
            packets.append(rng.randbytes(rng.randint(0, 300)))
        else:
            packets.append(mutate(rng, rng.choice(SEEDS)))
    return packets


async def poke(port: int, packet: bytes) -> None:
    """Send one first packet, half-close, read whatever comes back until EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if packet:
            writer.write(packet)
        writer.write_eof()
        async with asyncio.timeout(10):
            while await reader.read(65536):
                pass
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def good_socks(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"\x05\x01\x00\x05\x01\x00\x03\x0cexample.test\x00\x50")
        async with asyncio.timeout(10):
            assert await reader.readexactly(12) == b"\x05\x00\x05\x00\x00\x01\x7f\x00\x00\x01" + (
                port.to_bytes(2, "big")
            )
            assert await reader.read() == b"ok"
    finally:
        writer.close()


async def good_http(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"CONNECT example.test:443 HTTP/1.1\r\n\r\n")
        async with asyncio.timeout(10):
            assert await reader.read() == b"HTTP/1.1 200 Connection established\r\n\r\nok"
    finally:
        writer.close()


@pytest.mark.timeout(300)
async def test_fuzz_first_packets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    table = PolicyTable({0: Timeouts(handshake=2.0, conn_idle=2.0)})
    port = free_port()
    socks = SocksInbound(
        tag="socks",
        listen="127.0.0.1",
        port=port,
        udp=True,
        policy=table,
        sniffing=SniffingSettings(),
    )
    http = HttpInbound(
        tag="http", listen="127.0.0.1", port=0, policy=table, sniffing=SniffingSettings()
    )
    out = QuickOutbound()
    packets = fuzz_packets(FUZZ_CONNECTIONS)
    async with (
        serve_inbound(socks, [out], port=port) as socks_port,
        serve_inbound(http, [out]) as http_port,
        asyncio.timeout(TIMEOUT_S),
    ):
        ports = [socks_port, http_port]
        sem = asyncio.Semaphore(CONCURRENCY)
        stop = asyncio.Event()
        good_runs = 0

        async def one(i: int, packet: bytes) -> None:
            async with sem:
                await poke(ports[i % 2], packet)

        async def well_formed_clients() -> None:
            nonlocal good_runs
            while not stop.is_set():
                await good_socks(socks_port)
                await good_http(http_port)
                good_runs += 1
                await asyncio.sleep(0.01)

        checker = asyncio.create_task(well_formed_clients())
        await asyncio.gather(*(one(i, p) for i, p in enumerate(packets)))
        stop.set()
        await checker
        assert good_runs > 0
        assert out.count > 2 * good_runs  # some mutated packets were still valid requests
        # ... and after the storm.
        for _ in range(5):
            await good_socks(socks_port)
            await good_http(http_port)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
