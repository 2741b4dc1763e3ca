"""HTTP proxy inbound over loopback: curl GET / CONNECT, Basic auth, transparent mode."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

import pytest

from tests.support.servers import (
    BODY,
    HttpOrigin,
    RecordingFreedom,
    RecordingOutbound,
    freedom,
    policy,
    read_all,
    run_curl,
    serve_inbound,
)
from v2py.app.policy import PolicyTable
from v2py.app.session import SniffingSettings
from v2py.common.net import tcp
from v2py.proxy.http_inbound import HttpInbound


def http_inbound(**kwargs: Any) -> HttpInbound:
    kwargs.setdefault("policy", PolicyTable())
    kwargs.setdefault("sniffing", SniffingSettings())
    return HttpInbound(tag="http-in", listen="127.0.0.1", port=0, **kwargs)


async def raw_exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await read_all(reader)
    finally:
        writer.close()


@pytest.mark.parametrize("tunnel", [False, True], ids=["absolute-uri", "connect"])
async def test_curl_through_http_proxy(tunnel: bool) -> None:
    async with HttpOrigin() as origin, serve_inbound(http_inbound(), [freedom()]) as port:
        args = ["-x", f"http://127.0.0.1:{port}"]
        if tunnel:
            args.append("--proxytunnel")
        body = await run_curl(*args, f"http://localhost:{origin.port}/path?q=1")
    assert hashlib.sha256(body).digest() == hashlib.sha256(BODY).digest()
    head = origin.requests[0]
    assert head.startswith(b"GET /path?q=1 HTTP/1.1\r\n")
    lowered = head.lower()
    if not tunnel:
        assert b"proxy-connection" not in lowered
        assert b"connection: close\r\n" in lowered


async def test_post_body_is_forwarded() -> None:
    async with HttpOrigin(b"ok") as origin, serve_inbound(http_inbound(), [freedom()]) as port:
        body = await run_curl(
            "-x",
            f"http://127.0.0.1:{port}",
            "--data-binary",
            "x" * 5000,
            f"http://127.0.0.1:{origin.port}/submit",
        )
    assert body == b"ok"
    assert origin.requests[0].startswith(b"POST /submit HTTP/1.1\r\n")
    assert origin.requests[0].endswith(b"\r\n\r\n" + b"x" * 5000)


async def test_basic_auth() -> None:
    out = RecordingFreedom(tag="direct", policy=PolicyTable())
    inbound = http_inbound(accounts={"alice": "pw"})
    async with HttpOrigin(b"secret") as origin, serve_inbound(inbound, [out]) as port:
        url = f"http://127.0.0.1:{origin.port}/"
        assert await run_curl("-x", f"http://alice:pw@127.0.0.1:{port}", url) == b"secret"
        response = await raw_exchange(port, f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert response == (
            b"HTTP/1.1 407 Proxy Authentication Required\r\n"
            b'Proxy-Authenticate: Basic realm="proxy"\r\n\r\n'
        )
        bad = base64.b64encode(b"alice:wrong").decode()
        response = await raw_exchange(
            port, f"CONNECT a:1 HTTP/1.1\r\nProxy-Authorization: Basic {bad}\r\n\r\n".encode()
        )
        assert response.startswith(b"HTTP/1.1 407 ")
    assert [s.user_email for s in out.sessions] == ["alice"]


async def test_connect_reply_and_destination() -> None:
    recorder = RecordingOutbound()
    async with serve_inbound(http_inbound(), [recorder]) as port:
        response = await raw_exchange(port, b"CONNECT example.test:443 HTTP/1.1\r\n\r\nhello")
    assert response == b"HTTP/1.1 200 Connection established\r\n\r\nrecorded"
    assert recorder.destinations == [tcp("example.test", 443)]
    assert recorder.first_bytes == [b"hello"]


async def test_origin_form_needs_allow_transparent() -> None:
    request = b"GET /x HTTP/1.1\r\nHost: example.test:8080\r\n\r\n"
    recorder = RecordingOutbound()
    async with serve_inbound(http_inbound(), [recorder]) as port:
        response = await raw_exchange(port, request)
    assert response.startswith(b"HTTP/1.1 400 ")
    assert recorder.sessions == []
    recorder = RecordingOutbound()
    async with serve_inbound(http_inbound(allow_transparent=True), [recorder]) as port:
        await raw_exchange(port, request)
    assert recorder.destinations == [tcp("example.test", 8080)]
    assert recorder.first_bytes[0].startswith(b"GET /x HTTP/1.1\r\nHost: example.test:8080\r\n")


async def test_malformed_head_closed_without_answer() -> None:
    recorder = RecordingOutbound()
    async with serve_inbound(http_inbound(), [recorder]) as port:
        assert await raw_exchange(port, b"\x05\x01\x00garbage\r\n\r\n") == b""
    assert recorder.sessions == []


async def test_head_timeout() -> None:
    async with serve_inbound(http_inbound(policy=policy(handshake=0.2)), [freedom()]) as port:
        assert await raw_exchange(port, b"GET http://a/ HTTP/1.1\r\n") == b""


async def test_sniffing_applies_to_http_inbound() -> None:
    recorder = RecordingOutbound()
    sniffing = SniffingSettings(enabled=True, dest_override=("http",))
    async with serve_inbound(http_inbound(sniffing=sniffing), [recorder]) as port:
        await raw_exchange(
            port,
            b"CONNECT 10.255.255.1:80 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nHost: Sniffed.Test\r\n\r\n",
        )
    assert recorder.destinations == [tcp("sniffed.test", 80)]
