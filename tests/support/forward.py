"""A byte pump and a TCP forwarder, the reverse-proxy / load-balancer parts of the
interop tests (a PROXY header sender, nginx in front of a Unix socket)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Copy ``src`` to ``dst`` until the end (or a connection error), then close ``dst``."""
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    except OSError:
        pass
    finally:
        dst.close()


@contextlib.asynccontextmanager
async def forwarder(connect: Connect, header: bytes = b"") -> AsyncIterator[int]:
    """A TCP port on 127.0.0.1 whose connections go to ``connect()``, with ``header``
    sent upstream first; yields the port."""

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await connect()
        except OSError:
            writer.close()
            return
        up_writer.write(header)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(forward, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@contextlib.asynccontextmanager
async def echo_server(greeting: bytes = b"") -> AsyncIterator[int]:
    """A TCP echo server on 127.0.0.1 that first sends ``greeting`` (if any); yields
    the port."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        await pipe(reader, writer)

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
