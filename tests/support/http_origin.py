"""Scripted HTTP origins for the HTTP inbound tests: each records the raw bytes of
every request it receives (h11 finds where a request ends) and answers one fixed
response, then closes (a keep-alive proxy must dispatch every request itself)."""

from __future__ import annotations

import asyncio
import contextlib

import h11

TIMEOUT_S = 10.0


class ScriptedOrigin:
    """An origin on 127.0.0.1 answering every request with ``response``."""

    def __init__(self, response: bytes) -> None:
        self.response = response
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedOrigin:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        raw = bytearray()
        try:
            async with asyncio.timeout(TIMEOUT_S):
                while True:
                    event = conn.next_event()
                    if isinstance(event, h11.EndOfMessage):
                        break
                    if event is h11.NEED_DATA:
                        data = await reader.read(65536)
                        raw += data
                        conn.receive_data(data)
                        if not data:
                            break
            self.requests.append(bytes(raw))
            writer.write(self.response)
            await writer.drain()
        except (OSError, TimeoutError, h11.RemoteProtocolError):
            self.requests.append(bytes(raw))
        finally:
            writer.close()


def ok_response(body: bytes, *extra: bytes) -> bytes:
    """A 200 with Content-Length (a keep-alive proxy may reuse the client connection)."""
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(h + b"\r\n" for h in extra)
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One response with a Content-Length body from ``reader``: (head, body)."""
    async with asyncio.timeout(TIMEOUT_S):
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return head, await reader.readexactly(length)


async def read_until_close(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(TIMEOUT_S):
        return await reader.read()
