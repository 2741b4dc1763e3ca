"""Transports (v2ray-core ``transport/internet``): one object per ``streamSettings``.

A :class:`Transport` is built once from an inbound's or outbound's stream
settings (``v2py.build.build_transport``) and offers ``dial`` and ``listen``;
the proxies never learn which network or security runs beneath them. TCP and
mKCP are the bottom layers; security and framing layers (TLS, WebSocket, the
TCP HTTP header, ...) wrap another transport and compose the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from v2py.transport.stream import Stream

if TYPE_CHECKING:
    from v2py.protocol.mkcp.settings import KcpSettings
    from v2py.transport.mkcp import KcpDialer, KcpStream

__all__ = ["KcpTransport", "Listener", "StreamHandler", "TcpTransport", "Transport"]

#: What a listener runs for every accepted connection.
StreamHandler = Callable[[Stream], Awaitable[None]]


class Listener(Protocol):
    """A listening endpoint of some transport."""

    def close(self) -> None: ...

    def stop_accepting(self) -> None: ...

    async def wait_closed(self) -> None: ...


class Transport(Protocol):
    """Dials and listens over one ``streamSettings`` (network + security + settings)."""

    @property
    def name(self) -> str:
        """The network as logs name it: ``"tcp"``, ``"kcp"``, ``"ws"``..."""
        ...

    @property
    def listener_ends_sessions(self) -> bool:
        """True when closing a listener ends its accepted sessions too (mKCP: they
        share its UDP socket); else a listener can stop accepting and let them run."""
        ...

    async def dial(self, host: str, port: int, *, timeout: float | None = None) -> Stream:
        """Open a stream to ``host:port``. Raises OSError / TimeoutError."""
        ...

    async def listen(
        self, host: str, port: int, handler: StreamHandler, *, reuse_port: bool = False
    ) -> Listener:
        """Listen on ``host:port``; each connection runs ``handler(stream)``.

        ``reuse_port`` sets SO_REUSEPORT, so that sibling worker processes can bind
        the same port and the kernel spreads connections among them. Raises OSError.
        """
        ...

    async def aclose(self) -> None:
        """Release what dialing left open (mKCP sockets in their close handshake)."""
        ...


class TcpTransport:
    """Plain TCP (``transport/internet/tcp``)."""

    name = "tcp"
    listener_ends_sessions = False

    async def dial(self, host: str, port: int, *, timeout: float | None = None) -> Stream:
        from v2py.transport.tcp import dial_tcp

        return await dial_tcp(host, port, timeout=timeout)

    async def listen(
        self, host: str, port: int, handler: StreamHandler, *, reuse_port: bool = False
    ) -> Listener:
        from v2py.transport.tcp import listen_tcp

        return await listen_tcp(host, port, handler, reuse_port=reuse_port)

    async def aclose(self) -> None:
        return None


class KcpTransport:
    """mKCP (``transport/internet/kcp``) with fixed settings.

    Dialed streams are tracked by a dialer of this transport's own, so that
    :meth:`aclose` ends their sockets with the instance that built it.
    """

    name = "kcp"
    listener_ends_sessions = True

    def __init__(self, settings: KcpSettings) -> None:
        self.settings = settings
        self._dialer: KcpDialer | None = None

    async def dial(self, host: str, port: int, *, timeout: float | None = None) -> Stream:
        # mKCP has no handshake: dialing returns at once, so there is nothing to time out.
        if self._dialer is None:
            from v2py.transport.mkcp import KcpDialer

            self._dialer = KcpDialer()
        return await self._dialer.dial(host, port, self.settings)

    async def listen(
        self, host: str, port: int, handler: StreamHandler, *, reuse_port: bool = False
    ) -> Listener:
        from v2py.transport.mkcp import listen_kcp

        return await listen_kcp(host, port, self.settings, handler, reuse_port=reuse_port)

    def streams(self) -> tuple[KcpStream, ...]:
        """The dialed streams whose sockets are still open (oldest first)."""
        return self._dialer.streams() if self._dialer is not None else ()

    async def aclose(self) -> None:
        if self._dialer is not None:
            await self._dialer.aclose(grace=0.0)
