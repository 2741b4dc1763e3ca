"""The TCP ``http`` header layer over loopback: templates and defaults as 4.34, the
server's path check and error heads (docs/spec/transports.md section 7)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from tests.support.layers import TcpBase, listening, read_all
from v2py.config.model import TcpHeaderConfig
from v2py.transport.http_header import HttpHeaderTransport, request_head, response_head


def header(**settings: Any) -> TcpHeaderConfig:
    return TcpHeaderConfig.model_validate({"type": "http", **settings}, context={})


def transport(**settings: Any) -> HttpHeaderTransport:
    cfg = header(**settings)
    return HttpHeaderTransport(TcpBase(), cfg.request, cfg.response, choice=lambda n: n - 1)


def test_default_request_and_response_heads() -> None:
    cfg = header()
    first = request_head(cfg.request, lambda n: 0)
    assert first.startswith(
        b"GET / HTTP/1.1\r\nHost: www.baidu.com\r\nUser-Agent: Mozilla/5.0 (Win"
    )
    assert first.endswith(b"Accept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n"
                          b"Pragma: no-cache\r\n\r\n")  # fmt: skip
    resp = cfg.response
    head = response_head(resp.effective_version, resp.effective_status,
                         resp.effective_headers, lambda n: 1, "D")  # fmt: skip
    assert head == (
        b"HTTP/1.1 200 OK\r\nContent-Type: video/mpeg\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: keep-alive\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n"
        b"Date: D\r\n\r\n"
    )


def test_custom_headers_sorted_and_string_lists_split_at_commas() -> None:
    cfg = header(request={"method": "POST", "path": "/x,/y", "version": "1.0",
                          "headers": {"b": "1,2", "A": ["z"]}},
                 response={"status": "206", "headers": {"Date": "fixed"}})  # fmt: skip
    assert request_head(cfg.request, lambda n: 1) == b"POST /y HTTP/1.0\r\nA: z\r\nb: 2\r\n\r\n"
    resp = cfg.response
    assert response_head(resp.effective_version, resp.effective_status,
                         resp.effective_headers, lambda n: 0, "D") == (
        b"HTTP/1.1 206 OK\r\nDate: fixed\r\n\r\n")  # fmt: skip


async def _exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    writer.write_eof()
    async with asyncio.timeout(5):
        got = await reader.read()
    writer.close()
    return re.sub(rb"Date: [^\r]+", b"Date: D", got)


ERROR = (b"HTTP/1.1 {} \r\nConnection: close\r\nCache-Control: private\r\nContent-Length: 0\r\n"
         b"Date: D\r\n\r\n")  # fmt: skip


@pytest.mark.parametrize(
    ("probe", "status"),
    [
        (b"GET /c HTTP/1.1\r\nHost: x\r\n\r\nhello", b"404 Not Found"),
        (b"garbage\r\n\r\nhello", b"400 Bad Request"),
        (b"garbage", b"400 Bad Request"),
        (b"GET /a HTTP/1.1\r\nbad header\r\nmore", b"400 Bad Request"),
        (b"GET /a HTTP/1.1\r\n" + b"X: " + b"y" * 9000, b"400 Bad Request"),
    ],
)
async def test_server_errors_as_4_34(probe: bytes, status: bytes) -> None:
    async with listening(transport(request={"path": ["/a", "/b"]})) as port:
        assert await _exchange(port, probe) == ERROR.replace(b"{} ", status)


async def test_roundtrip_and_server_accepts_query_and_absolute_form() -> None:
    async with listening(transport(request={"path": ["/a", "/b"]})) as port:
        stream = await transport(request={"path": ["/a", "/b"]}).dial("127.0.0.1", port)
        stream.write(b"x" * 100_000)
        stream.write_eof()
        async with asyncio.timeout(5):
            assert await read_all(stream, 100_001) == b"x" * 100_000
        stream.close()
        for target in (b"/b?q=1", b"http://h/%61"):
            got = await _exchange(port, b"POST " + target + b" HTTP/1.0\r\n\r\nhello")
            assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b"\r\n\r\nhello")
