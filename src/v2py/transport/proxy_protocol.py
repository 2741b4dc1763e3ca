"""``acceptProxyProtocol``: a PROXY v1/v2 header before anything else on an accepted
connection (v2ray-core 4.34 ``transport/internet/system_listener.go``, go-proxyproto
with policy REQUIRE). The header's source address becomes the stream's ``peer``;
a connection without a valid header is closed. Dialing is unchanged.

4.34 reads the header on first use of the connection without a deadline of its own;
here it is read when the connection is accepted, within ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from v2py.errors import RemoteProtocolError
from v2py.protocol.proxy_header import ProxyHeaderError, decode_proxy_header
from v2py.transport.layer import InnerTransport, LayerHandler, LayerListener
from v2py.transport.stream import READ_CHUNK_BYTES, PushLayer, PushTarget, Stream

log = logging.getLogger(__name__)

__all__ = ["ProxyProtocolStream", "ProxyProtocolTransport", "read_proxy_header"]

#: Default bound on receiving the header (4.34's default handshake policy).
PROXY_HEADER_TIMEOUT_S = 60.0


async def read_proxy_header(below: Stream) -> tuple[tuple[str, int] | None, bytes]:
    """Read the header; return (source or None, bytes after it).

    Raises:
        RemoteProtocolError: no valid header (or the connection ended first).
    """
    buffer = bytearray()
    while True:
        header = decode_proxy_header(buffer)
        if header is not None:
            return header.source, bytes(buffer[header.size :])
        data = await below.read()
        if not data:
            raise RemoteProtocolError("connection closed before the PROXY header")
        buffer += data


class ProxyProtocolStream(PushLayer):
    """The accepted stream, with the header's source as ``peer`` and the bytes read
    past the header handed out first (pushes as the stream below does)."""

    def __init__(self, below: Stream, source: tuple[str, int] | None, rest: bytes) -> None:
        self._below = below
        self._source = source
        self._rest = rest
        self._push: PushTarget | None = None

    def _take_held(self) -> bytes:
        rest, self._rest = self._rest, b""
        return rest

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        rest = self._rest
        if rest:
            self._rest = rest[max_bytes:]
            return rest[:max_bytes]
        below: Stream = self._below
        return await below.read(max_bytes)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._below.write(data)

    async def drain(self) -> None:
        await self._below.drain()

    def write_eof(self) -> None:
        self._below.write_eof()

    def close(self) -> None:
        self._below.close()

    def abort(self) -> None:
        """Close at once."""
        abort = getattr(self._below, "abort", None)
        if abort is not None:
            abort()
        else:
            self._below.close()

    async def wait_closed(self) -> None:
        await self._below.wait_closed()

    @property
    def peer(self) -> tuple[str, int] | None:
        below: Stream = self._below
        return self._source if self._source is not None else below.peer

    @property
    def local(self) -> tuple[str, int] | None:
        below: Stream = self._below
        return below.local


class ProxyProtocolTransport:
    """Requires a PROXY header on every accepted connection of ``inner`` (TCP)."""

    def __init__(
        self,
        inner: InnerTransport,
        *,
        timeout: float = PROXY_HEADER_TIMEOUT_S,
        error_reply: bytes = b"",
    ) -> None:
        self.inner = inner
        self.timeout = timeout
        self.error_reply = error_reply

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def listener_ends_sessions(self) -> bool:
        return self.inner.listener_ends_sessions

    async def dial(self, host: str, port: int, *, timeout: float | None = None) -> Stream:
        return await self.inner.dial(host, port, timeout=timeout)

    async def listen(
        self, host: str, port: int, handler: LayerHandler, *, reuse_port: bool = False
    ) -> LayerListener:
        timeout = self.timeout
        error_reply = self.error_reply

        async def accept(below: Stream) -> None:
            try:
                async with asyncio.timeout(timeout):
                    source, rest = await read_proxy_header(below)
            except ProxyHeaderError as exc:
                # Under plain WebSocket, Go's HTTP server answers the failed read.
                if error_reply:
                    with contextlib.suppress(ConnectionError):
                        below.write(error_reply)
                log.debug("proxy protocol: %s from %s", exc, below.peer)
                return
            except (RemoteProtocolError, OSError, TimeoutError) as exc:
                log.debug("proxy protocol: %s from %s", exc, below.peer)
                return
            stream = ProxyProtocolStream(below, source, rest)
            try:
                await handler(stream)
            finally:
                stream.close()

        return await self.inner.listen(host, port, accept, reuse_port=reuse_port)

    async def aclose(self) -> None:
        await self.inner.aclose()
