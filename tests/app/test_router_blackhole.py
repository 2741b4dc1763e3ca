"""Blackhole responses as 4.34 ``proxy/blackhole`` (the block target of routing rules)."""

from __future__ import annotations

import asyncio

from v2py.app.session import Session
from v2py.proxy.blackhole import HTTP_403_RESPONSE, BlackholeOutbound


class Sink:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None


def test_http_response_bytes_are_4_34s() -> None:
    # proxy/blackhole/config.go http403response: LF line ends, two empty lines.
    assert HTTP_403_RESPONSE == (
        b"HTTP/1.1 403 Forbidden\nConnection: close\nCache-Control: max-age=3600, public\n"
        b"Content-Length: 0\n\n\n"
    )


async def test_http_response_then_linger_and_none_says_nothing() -> None:
    session = Session(inbound_tag="in", source=None)
    sink = Sink()
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.timeout(2):
        await BlackholeOutbound(tag="b", response="HTTP", linger=0.05).handle(session, sink)  # type: ignore[arg-type]
    assert sink.data == HTTP_403_RESPONSE
    assert loop.time() - start >= 0.05
    quiet = Sink()
    async with asyncio.timeout(2):
        await BlackholeOutbound(tag="b").handle(session, quiet)  # type: ignore[arg-type]
    assert quiet.data == b""
