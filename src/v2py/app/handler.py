"""What inbound and outbound handlers look like to the rest of v2py (v2ray-core
``proxy/proxy.go``, ``features/inbound``, ``features/outbound``).

One argument order everywhere: the session first, then the stream (or packet
link), then the dispatcher. The proxies in ``v2py.proxy`` implement these
protocols; ``app`` never imports ``proxy`` (the assembly in ``v2py.build`` joins
them).
"""

from __future__ import annotations

from typing import Protocol

from v2py.app.packet import PacketLink
from v2py.app.session import Session
from v2py.transport.stream import Stream

__all__ = ["Dispatch", "InboundHandler", "InboundProxy", "Outbound"]


class Outbound(Protocol):
    """Carries one session's traffic towards ``session.destination`` (``proxy.Outbound``)."""

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
    """The dispatcher as inbounds see it (``routing.Dispatcher``)."""

    async def dispatch(self, session: Session, stream: Stream) -> None: ...

    async def dispatch_packets(self, session: Session, link: PacketLink) -> None: ...


class InboundProxy(Protocol):
    """An inbound protocol handler (socks, http, dokodemo-door, vmess): ``proxy.Inbound``."""

    async def handle(self, session: Session, stream: Stream, dispatcher: Dispatch) -> None:
        """Serve one accepted connection; ``session`` carries its source and inbound tag."""
        ...

    async def start(self, dispatcher: Dispatch) -> None:
        """Start background work (none for most protocols)."""
        ...

    def close(self) -> None:
        """Stop background work; open connections end on their own."""
        ...


class InboundHandler(Protocol):
    """Listeners around one inbound proxy (``inbound.Handler``): always-on or dynamic."""

    tag: str

    async def start(self, dispatcher: Dispatch) -> None:
        """Open the listeners; connections are handed to ``dispatcher``."""
        ...

    async def close(self) -> None:
        """Close the listeners and the proxy."""
        ...

    def get_random_worker(self, rng_index: int) -> tuple[InboundProxy, int, int] | None:
        """A detour target: (proxy, port, minutes it stays valid), or None."""
        ...
