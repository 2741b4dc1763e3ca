"""What inbound and outbound handlers look like to the rest of v2py (v2ray-core proxy/proxy.go)."""

from __future__ import annotations

from typing import Protocol

from v2py.app.packet import PacketLink
from v2py.app.session import Session
from v2py.transport.stream import Stream


class Outbound(Protocol):
    """Carries one session's traffic towards ``session.destination``."""

    tag: str

    async def handle(self, session: Session, stream: Stream) -> None:
        """Relay the TCP ``stream`` (the inbound side) to the destination; return when done.

        Raises OSError / ProtocolError on failure; never closes ``stream``.
        """
        ...

    async def handle_packets(self, session: Session, link: PacketLink) -> None:
        """Relay UDP datagrams of ``link`` to the destination until the link closes or idles out."""
        ...


class Dispatch(Protocol):
    """The dispatcher as inbounds see it."""

    async def dispatch(self, session: Session, stream: Stream) -> None: ...

    async def dispatch_packets(self, session: Session, link: PacketLink) -> None: ...
