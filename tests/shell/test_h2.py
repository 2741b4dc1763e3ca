"""The HTTP/2 transport on loopback: streams multiplexed on one connection, the server's
checks (host exact, path prefix, any method), h2c, HTTP/1.1 at the port, X-Forwarded-For,
a client without TLS, and garbage that leaves the listener serving."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.layers import TcpBase, echo, read_all
from tests.support.tls_certs import TestCA
from v2py.config.stream import TlsConfig
from v2py.config.transport_extra import HttpConfig
from v2py.transport.h2 import TLS_REQUIRED, H2Transport
from v2py.transport.layer import LayerHandler
from v2py.transport.stream import Stream
from v2py.transport.tls import TlsSecurity, TlsTransport

CA = TestCA()
LEAF = CA.issue("h2.test", "127.0.0.1")


def http(**settings: Any) -> HttpConfig:
    return HttpConfig.model_validate(settings, context={})


class CountingTcp(TcpBase):
    """TCP that counts the connections its listeners accept."""

    def __init__(self) -> None:
        self.accepted = 0

    async def listen(self, host: str, port: int, handler: LayerHandler, **kw: Any) -> Any:
        async def counted(stream: Stream) -> None:
            self.accepted += 1
            await handler(stream)

        return await super().listen(host, port, counted, **kw)


def server_transport(base: TcpBase, *, tls: bool = True, **settings: Any) -> H2Transport:
    settings.setdefault("host", ["h2.test"])
    settings.setdefault("path", "/h2p")
    inner: Any = base
    if tls:
        config = TlsConfig.model_validate({"certificates": [LEAF.inline()]}, context={})
        inner = TlsTransport(base, TlsSecurity(config, network="h2"), http_reply=True)
    return H2Transport(inner, http(**settings), tls=tls)


def client_transport(**settings: Any) -> H2Transport:
    settings.setdefault("host", ["h2.test"])
    settings.setdefault("path", "/h2p")
    config = TlsConfig.model_validate(
        {"serverName": "h2.test", "certificates": [CA.pair.inline(usage="verify")]}, context={}
    )
    inner = TlsTransport(TcpBase(), TlsSecurity(config, network="h2"))
    return H2Transport(inner, http(**settings), tls=True)


@contextlib.asynccontextmanager
async def serving(transport: H2Transport, handler: LayerHandler = echo) -> AsyncIterator[int]:
    listener = await transport.listen("127.0.0.1", 0, handler)
    try:
        yield listener.port  # type: ignore[attr-defined]
    finally:
        listener.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await listener.wait_closed()


async def exchange(client: H2Transport, port: int, payload: bytes) -> bytes:
    stream = await client.dial("127.0.0.1", port, timeout=5)
    try:

        async def send() -> None:
            for i in range(0, len(payload), 100_000):
                stream.write(payload[i : i + 100_000])
                await stream.drain()
            stream.write_eof()

        sender = asyncio.create_task(send())
        got = await read_all(stream, len(payload))
        await sender
        return got
    finally:
        stream.close()


async def test_twenty_streams_share_one_connection() -> None:
    base = CountingTcp()
    client = client_transport(path="h2p/x", host=["h2.test"])
    async with serving(server_transport(base)) as port:
        payloads = [os.urandom(50_000 + 7919 * i) for i in range(20)]
        async with asyncio.timeout(30):
            results = await asyncio.gather(*(exchange(client, port, p) for p in payloads))
            big = os.urandom(3 << 20)
            assert await exchange(client, port, big) == big
        assert results == payloads
        assert base.accepted == 1
    await client.aclose()


async def test_client_requires_tls() -> None:
    transport = H2Transport(TcpBase(), http(), tls=False)
    with pytest.raises(ConnectionRefusedError, match=TLS_REQUIRED):
        await transport.dial("127.0.0.1", 1)


async def test_h2c_prior_knowledge_server() -> None:
    import h2.config
    import h2.connection
    import h2.events

    async with serving(server_transport(TcpBase(), tls=False)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        conn.initiate_connection()
        headers = [
            (b":method", b"POST"),
            (b":authority", b"h2.test"),
            (b":scheme", b"http"),
            (b":path", b"/h2p%2Fdeeper?x=1"),
        ]
        conn.send_headers(1, headers)
        conn.send_data(1, b"ping", end_stream=True)
        writer.write(conn.data_to_send())
        got = b""
        status = None
        async with asyncio.timeout(5):
            while not got.endswith(b"ping"):
                data = await reader.read(65536)
                assert data
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        status = dict(event.headers)[b":status"]
                    if isinstance(event, h2.events.DataReceived):
                        got += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, 1)
                writer.write(conn.data_to_send())
        assert status == b"200"
        writer.close()


async def _tls_raw(port: int, alpn: list[str]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(alpn)
    return await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="h2.test")


async def test_http1_request_with_good_path_is_a_chunked_stream() -> None:
    async with serving(server_transport(TcpBase())) as port:
        reader, writer = await _tls_raw(port, ["http/1.1"])
        writer.write(
            b"PUT /h2p HTTP/1.1\r\nHost: h2.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n"
        )
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nDate: ")
            assert head.endswith(b"\r\nTransfer-Encoding: chunked\r\n\r\n")
            assert await reader.readexactly(10) == b"5\r\nhello\r\n"
            writer.write(b"0\r\n\r\n")
            assert await reader.readexactly(5) == b"0\r\n\r\n"
        writer.close()


async def test_x_forwarded_for_is_the_peer() -> None:
    import h2.config
    import h2.connection

    peers: list[Any] = []

    async def record(stream: Stream) -> None:
        peers.append(stream.peer)

    async with serving(server_transport(TcpBase()), record) as port:
        reader, writer = await _tls_raw(port, ["h2"])
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        for sid, xff in ((1, "203.0.113.9, 10.0.0.1"), (3, "not-an-ip")):
            headers = [
                (":method", "PUT"),
                (":authority", "h2.test"),
                (":scheme", "https"),
                (":path", "/h2p"),
                ("x-forwarded-for", xff),
            ]
            conn.send_headers(sid, headers)
        writer.write(conn.data_to_send())
        async with asyncio.timeout(5):
            while len(peers) < 2:
                await asyncio.sleep(0.01)
        writer.close()
    assert peers[0] == ("203.0.113.9", 0)
    assert peers[1] is not None and peers[1][0] == "127.0.0.1"


async def test_garbage_then_good_client() -> None:
    client = client_transport()
    async with serving(server_transport(TcpBase())) as port:
        for junk in (os.urandom(3000), b"\x16\x03\x01\x00\x05hello", b""):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(junk)
            writer.close()
        reader, writer = await _tls_raw(port, ["h2"])
        # A frame far over the server's MAX_FRAME_SIZE: a connection error (GOAWAY).
        writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff\xff\xff" + bytes(6))
        async with asyncio.timeout(5):
            await reader.read()  # GOAWAY, then the server closes
        writer.close()
        async with asyncio.timeout(10):
            assert await exchange(client, port, b"still serving") == b"still serving"
    await client.aclose()
