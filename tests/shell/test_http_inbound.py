"""HTTP proxy inbound over loopback: curl GET / CONNECT, Basic auth, transparent mode,
keep-alive (every request to its own origin), pipelining, 4.34's re-writing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

import pytest

from tests.support.http_origin import (
    ScriptedOrigin,
    ok_response,
    read_response,
    read_until_close,
)
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
from tests.support.v2ray import free_port
from v2py.app.policy import PolicyTable
from v2py.app.session import SniffingSettings
from v2py.common.net import tcp
from v2py.protocol.http_proxy import RESPONSE_503
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


# -- keep-alive: every request goes to its own host (issue 12, defect 1) ----------------


def absolute_get(port: int, path: str, *headers: str) -> bytes:
    lines = [f"GET http://127.0.0.1:{port}{path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


KEEP = "Proxy-Connection: keep-alive"


async def test_keep_alive_requests_go_to_their_own_origins() -> None:
    async with (
        ScriptedOrigin(ok_response(b"from A", b"Set-Cookie: a=1")) as a,
        ScriptedOrigin(ok_response(b"from B")) as b,
        serve_inbound(http_inbound(), [freedom()]) as port,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(absolute_get(a.port, "/first", KEEP))
            head1, body1 = await read_response(reader)
            writer.write(absolute_get(b.port, "/second", KEEP, "Cookie: b=2"))
            head2, body2 = await read_response(reader)
        finally:
            writer.close()
    assert (body1, body2) == (b"from A", b"from B")
    assert b"Connection: keep-alive\r\n" in head1 and b"Keep-Alive: timeout=4\r\n" in head1
    assert len(a.requests) == 1 and a.requests[0].startswith(b"GET /first HTTP/1.1\r\n")
    assert len(b.requests) == 1 and b.requests[0].startswith(b"GET /second HTTP/1.1\r\n")
    assert b"Cookie: b=2\r\n" in b.requests[0]


async def test_pipelined_requests_are_served_in_turn() -> None:
    async with (
        ScriptedOrigin(ok_response(b"A")) as a,
        ScriptedOrigin(ok_response(b"B")) as b,
        serve_inbound(http_inbound(), [freedom()]) as port,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                absolute_get(a.port, "/1", KEEP)
                + absolute_get(b.port, "/2", KEEP)
                + absolute_get(a.port, "/3")
            )
            bodies = [(await read_response(reader))[1] for _ in range(3)]
            assert await read_until_close(reader) == b""  # no keep-alive on the third
        finally:
            writer.close()
    assert bodies == [b"A", b"B", b"A"]
    assert [r.split(b" ")[1] for r in a.requests] == [b"/1", b"/3"]
    assert [r.split(b" ")[1] for r in b.requests] == [b"/2"]


async def test_without_proxy_keep_alive_the_connection_ends() -> None:
    async with (
        ScriptedOrigin(ok_response(b"A")) as a,
        ScriptedOrigin(ok_response(b"B")) as b,
        serve_inbound(http_inbound(), [freedom()]) as port,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(absolute_get(a.port, "/1") + absolute_get(b.port, "/2"))
            _, body = await read_response(reader)
            assert await read_until_close(reader) == b""
        finally:
            writer.close()
    assert body == b"A" and b.requests == []


async def test_forwarded_request_is_written_as_4_34_writes_it() -> None:
    """Bytes checked against V2Ray 4.34 (also compared live in the interop test)."""
    async with (
        ScriptedOrigin(ok_response(b"x")) as a,
        serve_inbound(http_inbound(), [freedom()]) as port,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                f"GET http://127.0.0.1:{a.port}/a/b?x=1 HTTP/1.1\r\nHost: other\r\n"
                "user-agent: curl\r\nPragma: no-cache\r\nx-lower: v\r\nKeep-Alive: 5\r\n"
                "Proxy-Connection: keep-alive\r\nConnection: x-lower\r\n\r\n".encode()
            )
            head, _ = await read_response(reader)
        finally:
            writer.close()
    assert a.requests == [
        f"GET /a/b?x=1 HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\nUser-Agent: curl\r\n"
        "Cache-Control: no-cache\r\nConnection: close\r\nKeep-Alive: 5\r\n"
        "Pragma: no-cache\r\n\r\n".encode()
    ]
    assert head == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n"
        b"Keep-Alive: timeout=4\r\nProxy-Connection: keep-alive\r\n\r\n"
    )


async def test_chunked_response_is_rechunked_and_ends_the_connection() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-t\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-T: 9\r\n\r\n"
    )
    async with (
        ScriptedOrigin(chunked) as a,
        ScriptedOrigin(ok_response(b"B")) as b,
        serve_inbound(http_inbound(), [freedom()]) as port,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(absolute_get(a.port, "/", KEEP) + absolute_get(b.port, "/", KEEP))
            response = await read_until_close(reader)
        finally:
            writer.close()
    assert response == (
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"
        b"Trailer: X-T\r\n\r\n3\r\nabc\r\n0\r\nX-T: 9\r\n\r\n"
    )
    assert b.requests == []


async def test_unreachable_origin_gets_503_and_keep_alive_goes_on() -> None:
    dead = free_port()
    async with (
        ScriptedOrigin(ok_response(b"B")) as b,
        serve_inbound(http_inbound(), [freedom(dial_delays=(0.0,))]) as port,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(absolute_get(dead, "/", KEEP) + absolute_get(b.port, "/", KEEP))
            head, _ = await read_response(reader)
            _, body = await read_response(reader)
        finally:
            writer.close()
    assert head == RESPONSE_503
    assert body == b"B"


async def test_chunked_request_body_and_post_length() -> None:
    async with (
        ScriptedOrigin(ok_response(b"ok")) as a,
        serve_inbound(http_inbound(), [freedom()]) as port,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                f"POST http://127.0.0.1:{a.port}/up HTTP/1.1\r\nHost: x\r\n{KEEP}\r\n"
                "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".encode()
            )
            await read_response(reader)
            writer.write(
                f"POST http://127.0.0.1:{a.port}/empty HTTP/1.1\r\nHost: x\r\n"
                "Content-Length: 0\r\n\r\n".encode()
            )
            await read_response(reader)
        finally:
            writer.close()
    assert a.requests[0] == (
        f"POST /up HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n".encode()
    )
    assert a.requests[1] == (
        f"POST /empty HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n".encode()
    )


async def test_head_request_without_host_line() -> None:
    """h11 wants Host on HTTP/1.1; 4.34 takes the host from the URI, so does v2py."""
    async with (
        ScriptedOrigin(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n") as a,
        serve_inbound(http_inbound(), [freedom()]) as port,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"HEAD http://127.0.0.1:{a.port}/h HTTP/1.1\r\n\r\n".encode())
            response = await read_until_close(reader)
        finally:
            writer.close()
    assert a.requests == [
        f"HEAD /h HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\nConnection: close\r\n\r\n".encode()
    ]
    assert response == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: keep-alive\r\n"
        b"Keep-Alive: timeout=4\r\nProxy-Connection: keep-alive\r\n\r\n"
    )


async def test_curl_reuses_the_connection_for_two_hosts() -> None:
    async with (
        ScriptedOrigin(ok_response(b"from A\n")) as a,
        ScriptedOrigin(ok_response(b"from B\n")) as b,
        serve_inbound(http_inbound(), [freedom()]) as port,
    ):
        out = await run_curl(
            "-x",
            f"http://127.0.0.1:{port}",
            "-w",
            "connects=%{num_connects}\n",
            f"http://127.0.0.1:{a.port}/a",
            f"http://localhost:{b.port}/b",
        )
    assert out == b"from A\nconnects=1\nfrom B\nconnects=0\n"
    assert len(a.requests) == 1 and len(b.requests) == 1
    assert b.requests[0].startswith(f"GET /b HTTP/1.1\r\nHost: localhost:{b.port}\r\n".encode())
