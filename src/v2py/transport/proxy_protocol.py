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
from v2py.transport.layer import InnerTransport, LayerAccept, LayerStream, LayerTransport
from v2py.transport.stream import PrefixedStream, Stream

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


class ProxyProtocolStream(LayerStream, PrefixedStream):
    """The accepted stream, with the header's source as ``peer`` and the bytes read
    past the header handed out first (pushes as the stream below does)."""

    def __init__(self, below: Stream, source: tuple[str, int] | None, rest: bytes) -> None:
        super().__init__(rest, below)
        self._peer = source


class ProxyProtocolTransport(LayerTransport):
    """Requires a PROXY header on every accepted connection of ``inner`` (TCP)."""

    def __init__(
        self,
        inner: InnerTransport,
        *,
        timeout: float = PROXY_HEADER_TIMEOUT_S,
        error_reply: bytes = b"",
    ) -> None:
        super().__init__(inner)
        self.timeout = timeout
        self.error_reply = error_reply

    def _accepting(self) -> LayerAccept:
        timeout = self.timeout
        error_reply = self.error_reply

        async def accept(below: Stream) -> Stream | None:
            try:
                async with asyncio.timeout(timeout):
                    source, rest = await read_proxy_header(below)
            except ProxyHeaderError as exc:
                # Under plain WebSocket, Go's HTTP server answers the failed read.
                if error_reply:
                    with contextlib.suppress(ConnectionError):
                        below.write(error_reply)
                log.debug("proxy protocol: %s from %s", exc, below.peer)
                return None
            except (RemoteProtocolError, OSError, TimeoutError) as exc:
                log.debug("proxy protocol: %s from %s", exc, below.peer)
                return None
            return ProxyProtocolStream(below, source, rest)

        return accept
