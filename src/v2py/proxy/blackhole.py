"""The ``blackhole`` outbound: swallow everything (v2ray-core 4.34 ``proxy/blackhole``).

``response: "http"`` first answers with 4.34's fixed HTTP 403 (LF line endings, as
4.34 sends them) and keeps the connection for 1 s more, as 4.34 sleeps "to make sure
the response is sent"; ``"none"`` answers nothing. The inbound then closes the
connection. UDP datagrams are dropped until the link closes.
"""

from __future__ import annotations

import asyncio
import logging

from v2py.app.packet import PacketLink
from v2py.app.session import Session
from v2py.transport.stream import Stream

__all__ = ["HTTP_403_RESPONSE", "BlackholeOutbound"]

log = logging.getLogger(__name__)

HTTP_403_RESPONSE = (
    b"HTTP/1.1 403 Forbidden\n"
    b"Connection: close\n"
    b"Cache-Control: max-age=3600, public\n"
    b"Content-Length: 0\n"
    b"\n\n"
)

_RESPONSES = {"none": b"", "http": HTTP_403_RESPONSE}

#: How long 4.34 waits after writing a response before it ends the link.
RESPONSE_LINGER_S = 1.0


class BlackholeOutbound:
    """Drops traffic. ``response`` is "none" or "http" (case-insensitive); anything
    else raises ValueError."""

    def __init__(
        self, *, tag: str, response: str = "none", linger: float = RESPONSE_LINGER_S
    ) -> None:
        key = (response or "none").strip().lower()
        if key not in _RESPONSES:
            raise ValueError(f"unknown blackhole response type: {response!r}")
        self.tag = tag
        self._response = _RESPONSES[key]
        self._linger = linger

    async def handle(self, session: Session, stream: Stream) -> None:
        """Write the configured response (if any), wait ``linger`` seconds after it, and
        return; never reads the client."""
        if self._response:
            stream.write(self._response)
            await stream.drain()
            await asyncio.sleep(self._linger)

    async def handle_packets(self, session: Session, link: PacketLink) -> None:
        """Discard datagrams until the link closes."""
        while await link.recv() is not None:
            pass
