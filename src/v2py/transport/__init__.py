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
    from v2py.transport.sockopt import SocketOptions
    from v2py.transport.tcp import TcpStream

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
    """Plain TCP (``transport/internet/tcp``).

    ``options`` are the stream's ``sockopt`` (None: none set), ``source`` the local IP
    dialled connections bind (an outbound's ``sendThrough``; None: any). A listener
    whose options ask for the original destination records it for each accepted
    connection (``v2py.transport.sockopt.accepted_original_destination``).
    """

    name = "tcp"
    listener_ends_sessions = False

    def __init__(self, options: SocketOptions | None = None, source: str | None = None) -> None:
        self.options = options
        self.source = source

    async def dial(self, host: str, port: int, *, timeout: float | None = None) -> Stream:
        from v2py.transport.tcp import dial_tcp

        return await dial_tcp(host, port, timeout=timeout, options=self.options, source=self.source)

    async def listen(
        self, host: str, port: int, handler: StreamHandler, *, reuse_port: bool = False
    ) -> Listener:
        from v2py.config.model import is_unix_listen

        if is_unix_listen(host):
            # An inbound's listen path: a Unix socket, no socket options (4.34
            # ListenSystem sets no Control function for a UnixAddr).
            from v2py.transport.ds import listen_unix_path

            return await listen_unix_path(host, handler)
        from v2py.transport.tcp import listen_tcp

        options = self.options
        if options is None:
            return await listen_tcp(host, port, handler, reuse_port=reuse_port)
        if options.receive_original_destination:
            recording = _recording_original_destination(handler, options)
            return await listen_tcp(host, port, recording, reuse_port=reuse_port, options=options)
        return await listen_tcp(host, port, handler, reuse_port=reuse_port, options=options)

    async def aclose(self) -> None:
        return None


def _recording_original_destination(
    handler: StreamHandler, options: SocketOptions
) -> Callable[[TcpStream], Awaitable[None]]:
    """``handler`` preceded by reading the connection's original destination, as
    4.34's TCP worker does for inbounds that follow redirects."""
    from v2py.transport.sockopt import original_destination_of, set_accepted_original_destination

    async def recording(stream: TcpStream) -> None:
        sock = stream.raw_socket()
        found = original_destination_of(sock, options.tproxy) if sock is not None else None
        set_accepted_original_destination(found)
        await handler(stream)

    return recording


class KcpTransport:
    """mKCP (``transport/internet/kcp``) with fixed settings.

    Dialed streams are tracked by a dialer of this transport's own, so that
    :meth:`aclose` ends their sockets with the instance that built it.
    """

    name = "kcp"
    listener_ends_sessions = True

    def __init__(
        self,
        settings: KcpSettings,
        options: SocketOptions | None = None,
        source: str | None = None,
    ) -> None:
        self.settings = settings
        #: ``sockopt`` (mark, tproxy) of the UDP sockets, dialled and listening.
        self.options = options
        #: ``sendThrough``: the address dialled sockets bind.
        self.source = source
        self._dialer: KcpDialer | None = None

    async def dial(self, host: str, port: int, *, timeout: float | None = None) -> Stream:
        # mKCP has no handshake: dialing returns at once, so there is nothing to time out.
        if self._dialer is None:
            from v2py.transport.mkcp import KcpDialer

            self._dialer = KcpDialer()
        return await self._dialer.dial(
            host, port, self.settings, options=self.options, source=self.source
        )

    async def listen(
        self, host: str, port: int, handler: StreamHandler, *, reuse_port: bool = False
    ) -> Listener:
        from v2py.transport.mkcp import listen_kcp

        return await listen_kcp(
            host, port, self.settings, handler, reuse_port=reuse_port, options=self.options
        )

    def streams(self) -> tuple[KcpStream, ...]:
        """The dialed streams whose sockets are still open (oldest first)."""
        return self._dialer.streams() if self._dialer is not None else ()

    async def aclose(self) -> None:
        if self._dialer is not None:
            await self._dialer.aclose(grace=0.0)
