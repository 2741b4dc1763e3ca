"""Interop: the same client byte sequences through V2Ray 4.34's ``http`` inbound and
through v2py's (each with freedom), against the same scripted origins: every origin
must see the same bytes, and the client must get the same bytes back.

The sequences cover keep-alive to two different origins, pipelining, 4.34's header
re-writing, chunked and close-delimited bodies, the 503 for an unreachable origin,
HEAD without a Host line and the 400 for an origin-form request. Each ends with a
request without ``Proxy-Connection: keep-alive`` so both servers close.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.http_origin import ScriptedOrigin, ok_response, read_until_close
from tests.support.servers import run_curl
from tests.support.v2py import run_side
from tests.support.v2ray import free_port

pytestmark = pytest.mark.interop
TIMEOUT_S = 20.0
KEEP = "Proxy-Connection: keep-alive"


def config(port: int) -> dict[str, Any]:
    return {
        "log": {"loglevel": "none"},
        "inbounds": [{"listen": "127.0.0.1", "port": port, "protocol": "http", "settings": {}}],
        "outbounds": [{"protocol": "freedom", "settings": {}}],
    }


def req(method: str, url: str, *headers: str, body: bytes = b"", version: str = "1.1") -> bytes:
    lines = [f"{method} {url} HTTP/{version}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# Each sequence: origins A, B (ports a, b) and a dead port d -> client bytes.
Sequence_ = Callable[[int, int, int], bytes]

SEQUENCES: dict[str, Sequence_] = {
    "keep-alive-two-origins": lambda a, b, d: (
        req(
            "GET",
            f"http://127.0.0.1:{a}/a/b?x=1",
            "Host: elsewhere",
            "user-agent: probe",
            "Pragma: no-cache",
            "x-lower: v",
            "Keep-Alive: 5",
            KEEP,
            "Connection: x-lower",
            "Accept: */*",
            "Accept: text/html",
        )
        + req("GET", f"http://localhost:{b}/second", f"Host: localhost:{b}", KEEP, "Cookie: b=2")
        + req("GET", f"http://127.0.0.1:{a}/third", f"Host: 127.0.0.1:{a}")
    ),
    "bodies": lambda a, b, d: (
        req(
            "POST",
            f"http://127.0.0.1:{a}/chunked",
            "Host: x",
            KEEP,
            "Transfer-Encoding: chunked",
            body=b"5\r\nhello\r\n0\r\n\r\n",
        )
        + req(
            "PUT", f"http://127.0.0.1:{b}/len", "Host: x", KEEP, "Content-Length: 4", body=b"body"
        )
        + req("POST", f"http://127.0.0.1:{a}/empty", "Host: x", "Content-Length: 0")
    ),
    "unreachable-then-ok": lambda a, b, d: (
        req("GET", f"http://127.0.0.1:{d}/", "Host: x", KEEP)
        + req("GET", f"http://127.0.0.1:{a}/after", "Host: x")
    ),
    "head-without-host": lambda a, b, d: req("HEAD", f"http://127.0.0.1:{a}/h"),
    "http10-client": lambda a, b, d: req("GET", f"http://127.0.0.1:{b}/old", version="1.0"),
    "origin-form-400": lambda a, b, d: req("GET", "/x", f"Host: 127.0.0.1:{a}"),
}

RESPONSES = {
    "keep-alive-two-origins": (
        ok_response(b"from A", b"Set-Cookie: a=1", b"connection: close", b"keep-alive: x"),
        ok_response(b"from B", b"x-b: 1", b"A-Z: 2"),
    ),
    "bodies": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
    ),
    "unreachable-then-ok": (ok_response(b"after"), b""),
    "head-without-host": (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", b""),
    "http10-client": (b"", b"HTTP/1.0 200\r\nfoo: bar\r\n\r\nclose-delimited"),
    "origin-form-400": (ok_response(b"never"), b""),
}


async def run_sequence(kind: str, name: str) -> tuple[bytes, list[bytes], list[bytes]]:
    """Client bytes back and what origins A and B saw, with ``kind``'s http inbound."""
    port = free_port()
    dead = free_port()
    response_a, response_b = RESPONSES[name]
    async with (
        ScriptedOrigin(response_a) as a,
        ScriptedOrigin(response_b) as b,
        run_side(kind, config(port), port),
        asyncio.timeout(TIMEOUT_S),
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(SEQUENCES[name](a.port, b.port, dead))
            await writer.drain()
            answer = await read_until_close(reader)
        finally:
            writer.close()
        requests_a = [r.replace(str(a.port).encode(), b"<A>") for r in a.requests]
        requests_b = [r.replace(str(b.port).encode(), b"<B>") for r in b.requests]
    return answer, requests_a, requests_b


@pytest.mark.parametrize("name", sorted(SEQUENCES))
async def test_same_bytes_as_v2ray(name: str) -> None:
    theirs = await run_sequence("v2ray", name)
    ours = await run_sequence("v2py", name)
    assert ours == theirs


async def test_curl_reusing_its_connection_same_as_v2ray() -> None:
    async def through(kind: str) -> tuple[bytes, list[bytes]]:
        port = free_port()
        async with (
            ScriptedOrigin(ok_response(b"from A\n")) as a,
            ScriptedOrigin(ok_response(b"from B\n")) as b,
            run_side(kind, config(port), port),
        ):
            out = await run_curl(
                "-x",
                f"http://127.0.0.1:{port}",
                "-w",
                "connects=%{num_connects}\n",
                f"http://127.0.0.1:{a.port}/a",
                f"http://localhost:{b.port}/b",
            )
            seen = [r.replace(str(a.port).encode(), b"<A>") for r in a.requests] + [
                r.replace(str(b.port).encode(), b"<B>") for r in b.requests
            ]
        return out, seen

    theirs = await through("v2ray")
    ours = await through("v2py")
    assert theirs[0] == b"from A\nconnects=1\nfrom B\nconnects=0\n"
    assert ours == theirs
