"""The WebSocket layer over loopback TCP: upgrade answers as 4.34's Go server
(docs/spec/transports.md section 2.3), gorilla's client request, data framing, ping/close,
X-Forwarded-For, and a listener that keeps serving through bad requests."""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from typing import Any

import pytest

from tests.support.layers import TcpBase, listening, read_all
from tests.support.tls_certs import TestCA
from v2py.config.stream import TlsConfig, WsConfig
from v2py.protocol.http_head import parse_request_head, partial_head_ok, request_path
from v2py.transport.stream import Stream
from v2py.transport.tls import TlsSecurity, TlsTransport
from v2py.transport.ws import WsHandshakeError, WsTransport, client_request

UPGRADE = (
    "GET {path} HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)
ACCEPTED = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)
GO_400 = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Sec-Websocket-Version: 13\r\nX-Content-Type-Options: nosniff\r\nDate: D\r\n"
    b"Content-Length: 12\r\n\r\nBad Request\n"
)


def ws(**settings: Any) -> WsConfig:
    return WsConfig.model_validate(settings, context={})


def _undate(data: bytes) -> bytes:
    return re.sub(rb"Date: [^\r]+", b"Date: D", data)


async def _exchange(
    port: int, data: bytes, wait: float = 0.3, expect: int | None = None
) -> tuple[bytes, bool]:
    """Send ``data``; return what came back and whether the server closed. With
    ``expect``, wait (up to 5 s) for that many bytes, then ``wait`` s more for a close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    got = b""
    closed = False
    try:
        if expect is not None:
            async with asyncio.timeout(5):
                while len(got) < expect:
                    chunk = await reader.read(65536)
                    if not chunk:
                        closed = True
                        break
                    got += chunk
        async with asyncio.timeout(wait):
            while not closed:
                chunk = await reader.read(65536)
                if not chunk:
                    closed = True
                got += chunk
    except TimeoutError:
        pass
    writer.close()
    return _undate(got), closed


@pytest.mark.parametrize(
    ("request_bytes", "answer", "closes"),
    [
        (b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", b"HTTP/1.1 404 Not Found\r\nDate: D\r\n"
         b"Content-Length: 0\r\n\r\n", False),
        (b"GET /x HTTP/1.0\r\n\r\n", b"HTTP/1.0 404 Not Found\r\nDate: D\r\n"
         b"Content-Length: 0\r\n\r\n", True),
        (b"GET /ray HTTP/1.1\r\nHost: a\r\n\r\n", GO_400, False),
        (UPGRADE.format(path="/ray").replace("GET", "POST").encode(),
         GO_400.replace(b"400 Bad Request", b"405 Method Not Allowed")
         .replace(b"Content-Length: 12\r\n\r\nBad Request", b"Content-Length: 19\r\n\r\n"
                  b"Method Not Allowed"), False),
        (UPGRADE.format(path="/ray").replace("13", "12").encode(), GO_400, False),
        (b"GET /ray HTTP/1.1\r\n\r\n", b"HTTP/1.1 400 Bad Request: missing required Host "
         b"header\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
         b"400 Bad Request: missing required Host header", True),
        (b"\x16\x03\x01\x00\x10garbage\r\n\r\n", b"HTTP/1.1 400 Bad Request\r\nContent-Type: "
         b"text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request", True),
        (b"GET /x HTTP/1.1\r\nHost: a\r\nX-A: " + b"a" * 7000 + b"\r\n\r\n",
         b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; "
         b"charset=utf-8\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large", True),
        (UPGRADE.format(path="/ray?ed=2048").encode(), ACCEPTED, False),
        (UPGRADE.format(path="/%72ay").encode(), ACCEPTED, False),
        (UPGRADE.format(path="/ray/").encode(), b"HTTP/1.1 404 Not Found\r\nDate: D\r\n"
         b"Content-Length: 0\r\n\r\n", False),
    ],
    ids=["wrong-path", "wrong-path-1.0", "not-upgrade", "post", "version-12", "no-host",
         "garbage", "too-large", "query-ignored", "percent-decoded", "trailing-slash"],
)  # fmt: skip
async def test_server_answers_as_go(request_bytes: bytes, answer: bytes, closes: bool) -> None:
    async with listening(WsTransport(TcpBase(), ws(path="ray"))) as port:
        got, closed = await _exchange(port, request_bytes, wait=0.2, expect=len(answer))
        assert got == answer
        assert closed is closes


async def test_keep_alive_then_upgrade_on_the_same_connection() -> None:
    async with listening(WsTransport(TcpBase(), ws(path="/ray"))) as port:
        got, closed = await _exchange(
            port,
            b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n" + UPGRADE.format(path="/ray").encode(),
            expect=len(ACCEPTED) + 60,
        )
        assert got.endswith(ACCEPTED) and got.startswith(b"HTTP/1.1 404")
        assert not closed


async def roundtrip(dialer: Any, port: int, size: int = 1 << 20) -> Stream:
    payload = random.Random(size).randbytes(size)
    async with asyncio.timeout(10):
        stream = await dialer.dial("127.0.0.1", port, timeout=5)

        async def send() -> None:
            for i in range(0, size, 50_000):
                stream.write(payload[i : i + 50_000])
                await stream.drain()

        sender = asyncio.create_task(send())
        got = await read_all(stream, size)
        await sender
        stream.close()
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    return stream


async def test_roundtrip_plain_and_over_tls() -> None:
    async with listening(WsTransport(TcpBase(), ws(path="/p"))) as port:
        await roundtrip(WsTransport(TcpBase(), ws(path="p")), port)
    ca = TestCA()
    leaf = ca.issue("127.0.0.1")
    server_tls = TlsSecurity(TlsConfig(certificates=(TlsConfig.model_validate(
        {"certificates": [leaf.inline()]}).certificates)), network="ws")  # fmt: skip
    client_tls = TlsSecurity(
        TlsConfig.model_validate({"certificates": [ca.pair.inline(usage="verify")]}), network="ws"
    )
    server = WsTransport(TlsTransport(TcpBase(), server_tls, http_reply=True), ws(), tls=True)
    client = WsTransport(TlsTransport(TcpBase(), client_tls), ws(), tls=True)
    async with listening(server) as port:
        await roundtrip(client, port)


async def test_x_forwarded_for_becomes_the_peer() -> None:
    seen: list[Any] = []

    async def handler(stream: Stream) -> None:
        seen.append(stream.peer)
        stream.close()

    async with listening(WsTransport(TcpBase(), ws()), handler) as port:
        request = UPGRADE.format(path="/").replace(
            "Host: a\r\n", "Host: a\r\nX-Forwarded-For: 203.0.113.7, 10.0.0.1\r\n"
        )
        await _exchange(port, request.encode())
        request = UPGRADE.format(path="/").replace(
            "Host: a\r\n", "Host: a\r\nX-Forwarded-For: not-an-ip\r\n"
        )
        await _exchange(port, request.encode())
    assert seen[0] == ("203.0.113.7", 0)
    assert seen[1][0] == "127.0.0.1" and seen[1][1] != 0


async def test_frames_text_fragments_ping_and_close() -> None:
    from websockets.frames import Frame, Opcode
    from websockets.protocol import Protocol, Side

    got: list[bytes] = []
    done = asyncio.Event()

    async def handler(stream: Stream) -> None:
        while data := await stream.read():
            got.append(data)
        done.set()

    async with listening(WsTransport(TcpBase(), ws()), handler) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(UPGRADE.format(path="/").encode())
        await reader.readuntil(b"\r\n\r\n")
        client = Protocol(Side.CLIENT, max_size=None)
        client.send_frame(Frame(Opcode.TEXT, b"ab", fin=False))
        client.send_ping(b"pp")
        client.send_frame(Frame(Opcode.CONT, b"cd", fin=True))
        client.send_binary(b"ef")
        client.send_close(1000, "")
        for out in client.data_to_send():
            writer.write(out)
        async with asyncio.timeout(5):
            await done.wait()
            client.receive_data(await reader.read(1000))
        events = client.events_received()
        assert [e.opcode for e in events] == [Opcode.PONG, Opcode.CLOSE]
        assert events[0].data == b"pp"
        writer.close()
    assert b"".join(got) == b"abcdef"


def test_client_request_as_gorilla() -> None:
    config = ws(path="ray?ed=2048", headers={"Host": "cdn.example.test", "x-b": "2", "X-A": "1",
                                             "User-Agent": "UA-test"})  # fmt: skip
    assert client_request(config, "127.0.0.1", 21310, tls=False, key="K") == (
        b"GET /ray?ed=2048 HTTP/1.1\r\nHost: cdn.example.test\r\nUser-Agent: UA-test\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: K\r\nSec-WebSocket-Version: 13\r\n"
        b"Upgrade: websocket\r\nX-A: 1\r\nX-B: 2\r\n\r\n"
    )
    plain = client_request(ws(), "127.0.0.1", 21310, tls=False, key="K")
    assert plain.startswith(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:21310\r\nUser-Agent: Go-http")
    assert b"Host: a.test\r\n" in client_request(ws(), "a.test", 443, tls=True, key="K")
    assert b"Host: a.test:443\r\n" in client_request(ws(), "a.test", 443, tls=False, key="K")
    with pytest.raises(WsHandshakeError, match="duplicate header"):
        client_request(ws(headers={"upgrade": "x"}), "a", 1, tls=False, key="K")


def test_transport_keeps_the_request_around_its_key() -> None:
    """A client transport builds gorilla's request once per destination; only the key
    differs between two dials (and a refused header is refused on every dial)."""
    transport = WsTransport(TcpBase(), ws(headers={"X-A": "1"}))
    first = transport._request("a.test", 8443, "K1")
    assert first == client_request(ws(headers={"X-A": "1"}), "a.test", 8443, tls=False, key="K1")
    assert transport._request("a.test", 8443, "K2") == first.replace(b"K1", b"K2")
    assert transport._request("b.test", 80, "K3") == client_request(
        ws(headers={"X-A": "1"}), "b.test", 80, tls=False, key="K3"
    )
    refusing = WsTransport(TcpBase(), ws(headers={"Connection": "x"}))
    for _ in range(2):
        with pytest.raises(WsHandshakeError, match="duplicate header"):
            refusing._request("a.test", 80, "K")


async def test_client_fails_on_404_and_listener_keeps_serving() -> None:
    async with listening(WsTransport(TcpBase(), ws(path="/a"))) as port:
        with pytest.raises(WsHandshakeError, match="404"):
            await WsTransport(TcpBase(), ws(path="/b")).dial("127.0.0.1", port, timeout=5)
        for probe in (b"garbage\r\n\r\n", b"\x00" * 7000, b"GET / HTTP/1.1\r\n\r\n"):
            await _exchange(port, probe, wait=0.2)
        await roundtrip(WsTransport(TcpBase(), ws(path="/a")), port, size=1000)


async def test_unmasked_client_frame_closes_1002() -> None:
    from websockets.frames import Close, Frame, Opcode

    async with listening(WsTransport(TcpBase(), ws())) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(UPGRADE.format(path="/").encode())
        await reader.readuntil(b"\r\n\r\n")
        frame = Frame(Opcode.BINARY, b"x")
        writer.write(frame.serialize(mask=False))
        async with asyncio.timeout(5):
            data = await reader.read()
        assert data[0] == 0x88 and Close.parse(data[2:]).code == 1002
        writer.close()


def test_head_parsing_edges() -> None:
    assert request_path("/a%2Fb?q=1") == "/a/b"
    assert request_path("http://h/%61") == "/a"
    assert request_path("/%zz") is None
    assert request_path("*") == "*"
    head = parse_request_head(b"GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n\r\n")
    assert head.has_token("connection", "upgrade")
    assert not partial_head_ok(b"gar")
    assert partial_head_ok(b"GET /a HTTP/1.1\r\nHost: x\r\nUser-Agent: Mo")
    assert not partial_head_ok(b"GET /a HTTP/1.1\r\nbad header")


async def test_proxy_header_under_ws_and_x_forwarded_for_over_it() -> None:
    from v2py.transport.proxy_protocol import ProxyProtocolTransport

    seen: list[Any] = []

    async def handler(stream: Stream) -> None:
        seen.append(stream.peer)
        stream.close()

    transport = WsTransport(ProxyProtocolTransport(TcpBase(), timeout=4), ws())
    proxy = b"PROXY TCP4 192.0.2.5 127.0.0.1 5555 80\r\n"
    async with listening(transport, handler) as port:
        await _exchange(port, proxy + UPGRADE.format(path="/").encode())
        forwarded = UPGRADE.format(path="/").replace(
            "Host: a\r\n", "Host: a\r\nX-Forwarded-For: 198.51.100.1\r\n"
        )
        await _exchange(port, proxy + forwarded.encode())
        got, closed = await _exchange(port, UPGRADE.format(path="/").encode())
        assert got == b"" and closed  # no PROXY header: closed (REQUIRE; TCP transport)
    assert seen == [("192.0.2.5", 5555), ("198.51.100.1", 0)]
