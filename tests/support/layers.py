"""A plain TCP transport for testing the stream layers standalone (tls, ws, http header,
PROXY protocol) without the instance."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from v2py.transport.layer import LayerHandler, LayerListener
from v2py.transport.stream import Stream
from v2py.transport.tcp import dial_tcp, listen_tcp


class TcpBase:
    """TCP with the Transport shape."""

    name = "tcp"
    listener_ends_sessions = False

    async def dial(self, host: str, port: int, *, timeout: float | None = None) -> Stream:
        return await dial_tcp(host, port, timeout=timeout)

    async def listen(
        self, host: str, port: int, handler: LayerHandler, *, reuse_port: bool = False
    ) -> LayerListener:
        return await listen_tcp(host, port, handler, reuse_port=reuse_port)

    async def aclose(self) -> None:
        return None


async def echo(stream: Stream) -> None:
    """Echo until EOF, then half-close."""
    try:
        while data := await stream.read():
            stream.write(data)
            await stream.drain()
        stream.write_eof()
        await stream.drain()
    except OSError:
        pass


@contextlib.asynccontextmanager
async def listening(transport: object, handler: LayerHandler = echo) -> AsyncIterator[int]:
    """Listen on 127.0.0.1:0 with ``transport``; yield the port."""
    listener = await transport.listen("127.0.0.1", 0, handler)  # type: ignore[attr-defined]
    try:
        yield listener.port
    finally:
        listener.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await listener.wait_closed()


async def read_all(stream: Stream, size: int) -> bytes:
    """Read ``size`` bytes (or until EOF)."""
    parts: list[bytes] = []
    got = 0
    while got < size:
        data = await stream.read()
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)
