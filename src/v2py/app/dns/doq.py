"""DNS over QUIC (v2ray-core 4.34 ``app/dns/nameserver_quic.go``), imported only when a
``quic+local://host[:port]`` name server is configured; aioquic is imported on first use.

What 4.34 does, and v2py with it:

* One QUIC connection per server, dialled directly (never through routing) from a fresh
  UDP socket, to the host's address from the system resolver (an IPv4 one first, as Go's
  ``ResolveUDPAddr``). It is kept while alive and replaced once it has ended (closed by
  the server, idle for 30 s: quic-go's default idle timeout, no keep-alives); a dial that
  fails is tried once more (4.34 ``getConnection``).
* QUIC v1 (quic-go 0.29 starts with it); TLS 1.3 offering ALPN ``http/1.1``, ``h2``,
  ``doq-i00`` in that order (whichever the server picks is used); the URL's host is the
  SNI (none for an IP) and the name the certificate is verified for, against the system
  roots (OpenSSL's default paths, which ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` replace, as
  they do Go's); no session resumption; the handshake must finish within 8 s.
* Each question (A and/or AAAA, as :class:`~v2py.app.dns.nameserver.CachingNameServer`
  asks them: IDs 1, 2, ... per server, EDNS client subnet from ``clientIp``) goes on a
  new bidirectional stream: the packed message without a length prefix (draft
  ``doq-i00``), then FIN. The answer is what comes back on that stream.
* Answers are cached per name for their TTL, exactly as for DoH (the two share 4.34's
  code); the lookup's deadline is the 4 s every server gets.

Differences from 4.34: 4.34 takes the answer from a single read of at most 2048 bytes;
v2py reads until the server ends the stream or the bytes make a whole DNS message (so a
server that never sends FIN still works), up to 65535 bytes. 4.34's first A and AAAA
questions can race into dialling two connections; v2py dials one. A failed dial or
stream fails the lookup at that server at once and the next server is asked, where
4.34 logs the failure and waits out the 4 s deadline first (as for DoH).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from v2py.app.dns.nameserver import (
    QUERY_TIMEOUT_S,
    CachingNameServer,
    DnsLookupError,
    parse_answer,
)
from v2py.config.routing import DoqAddress
from v2py.transport.sockopt import bound_udp_socket

if TYPE_CHECKING:
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection
    from aioquic.quic.events import QuicEvent

__all__ = ["ALPN", "DoqError", "DoqNameServer", "quic_configuration"]

log = logging.getLogger(__name__)

#: 4.34 ``openConnection``: ``WithNextProto("http/1.1", http2.NextProtoTLS, NextProtoDQ)``.
ALPN = ("http/1.1", "h2", "doq-i00")
#: quic-go ``HandshakeIdleTimeout`` as 4.34 sets it.
HANDSHAKE_TIMEOUT_S = 8.0
#: quic-go 0.29's default ``MaxIdleTimeout`` (4.34 leaves it).
IDLE_TIMEOUT_S = 30.0
#: The largest DNS message; a longer answer is not one.
MAX_ANSWER_BYTES = 65535


class DoqError(Exception):
    """The connection or one exchange on it failed."""


def quic_configuration(host: str, *, cafile: str | None = None) -> QuicConfiguration:
    """The client's QUIC and TLS settings for ``host`` (see the module doc). Roots: the
    file ``cafile`` when given, else OpenSSL's default paths (``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR`` apply; aioquic's certifi bundle when neither exists)."""
    from aioquic.quic.configuration import QuicConfiguration

    capath = None
    if cafile is None:
        paths = ssl.get_default_verify_paths()
        cafile, capath = paths.cafile, paths.capath
    return QuicConfiguration(
        is_client=True,
        alpn_protocols=list(ALPN),
        server_name=host,
        verify_mode=ssl.CERT_REQUIRED,
        cafile=cafile,
        capath=capath,
        idle_timeout=IDLE_TIMEOUT_S,
    )


def _whole_message(data: bytes) -> bool:
    try:
        parse_answer(data)
    except ValueError:
        return False
    return True


class _Connection:
    """One QUIC connection to the server; each :meth:`exchange` is one stream."""

    def __init__(self, quic: QuicConnection) -> None:
        self.quic = quic
        self.protocol = _protocol_class()(quic)
        self.protocol.owner = self  # type: ignore[attr-defined]
        loop = asyncio.get_running_loop()
        self.handshake: asyncio.Future[None] = loop.create_future()
        self.ended = asyncio.Event()
        self.transport: asyncio.DatagramTransport | None = None
        self._reason = ""
        self._answers: dict[int, tuple[bytearray, asyncio.Future[bytes]]] = {}

    @property
    def alive(self) -> bool:
        return not self.ended.is_set()

    async def exchange(self, message: bytes) -> bytes:
        """Send ``message`` on a new stream, then FIN; the answer that comes back."""
        if not self.alive:
            raise DoqError(f"connection closed: {self._reason}")
        stream_id = self.quic.get_next_available_stream_id()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._answers[stream_id] = (bytearray(), future)
        try:
            self.quic.send_stream_data(stream_id, message, end_stream=True)
            self.protocol.transmit()
            return await future
        finally:
            # An answer still to come on a stream given up (deadline) is dropped.
            self._answers.pop(stream_id, None)

    def event(self, event: QuicEvent) -> None:
        from aioquic.quic import events

        if isinstance(event, events.StreamDataReceived):
            waiting = self._answers.get(event.stream_id)
            if waiting is None:
                return
            data, future = waiting
            data += event.data
            if future.done():
                return
            if len(data) > MAX_ANSWER_BYTES:
                future.set_exception(DoqError("answer too long"))
            elif event.end_stream or _whole_message(bytes(data)):
                future.set_result(bytes(data))
        elif isinstance(event, events.StreamReset):
            waiting = self._answers.get(event.stream_id)
            if waiting is not None and not waiting[1].done():
                waiting[1].set_exception(DoqError(f"stream reset (code {event.error_code})"))
        elif isinstance(event, events.HandshakeCompleted):
            if not self.handshake.done():
                self.handshake.set_result(None)
        elif isinstance(event, events.ConnectionTerminated):  # draining over, or idle
            self.end(event.reason_phrase or f"code {event.error_code}")
            if self.transport is not None:
                self.transport.close()

    def end(self, reason: str) -> None:
        """The connection is over (closing, draining or gone): fail what waits on it."""
        if self.ended.is_set():
            return
        self._reason = reason
        self.ended.set()
        error = DoqError(f"connection closed: {reason}")
        if not self.handshake.done():
            self.handshake.set_exception(error)
            self.handshake.exception()  # retrieved: a dial gone on need not see it
        for _, future in self._answers.values():
            if not future.done():
                future.set_exception(error)

    def close(self) -> None:
        """Send CONNECTION_CLOSE (if not over yet) and close the socket."""
        with contextlib.suppress(Exception):
            self.protocol.close()
        self.end("closed")
        if self.transport is not None:
            self.transport.close()


def _protocol_class() -> type[QuicConnectionProtocol]:
    """The aioquic protocol subclass (built on first use: aioquic is imported lazily)."""
    global _PROTOCOL_CLASS
    if _PROTOCOL_CLASS is None:
        from aioquic.asyncio.protocol import QuicConnectionProtocol

        class _Protocol(QuicConnectionProtocol):
            owner: _Connection

            def datagram_received(self, data: bytes | str, addr: Any) -> None:
                super().datagram_received(data, addr)
                # aioquic reports a CONNECTION_CLOSE (the server's, or its own after a
                # failed handshake) only once the draining period is over; quic-go's
                # connection is done at once, and so is this one.
                close = self._quic._close_event
                if close is not None:
                    self.owner.end(close.reason_phrase or f"code {close.error_code}")

            def quic_event_received(self, event: QuicEvent) -> None:
                self.owner.event(event)

            def connection_lost(self, exc: Exception | None) -> None:
                self.owner.end(str(exc) if exc else "socket closed")

        _PROTOCOL_CLASS = _Protocol
    return _PROTOCOL_CLASS


_PROTOCOL_CLASS: type[QuicConnectionProtocol] | None = None


class DoqNameServer(CachingNameServer):
    """DoQ to ``address`` (see the module doc). ``cafile``: trust only this file's
    certificates (tests); ``clock``: the loop's time."""

    def __init__(
        self,
        address: DoqAddress,
        *,
        client_ip: str | None = None,
        timeout: float = QUERY_TIMEOUT_S,
        clock: Callable[[], float] | None = None,
        cafile: str | None = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT_S,
    ) -> None:
        super().__init__(address.name, client_ip=client_ip, timeout=timeout, clock=clock)
        self.address = address
        self._cafile = cafile
        self._handshake_timeout = handshake_timeout
        self._conn: _Connection | None = None
        self._dialing = asyncio.Lock()
        self._closed = False
        #: Connections dialled so far (each successful handshake counts).
        self.connections = 0

    async def _ask_all(self, fqdn: str, questions: list[tuple[int, int]]) -> None:
        try:
            await asyncio.gather(*(self._ask(fqdn, k, i) for k, i in questions))
        except DoqError as exc:
            raise DnsLookupError(f"{self.name}: {exc}", retry_next=True) from None

    async def _ask(self, fqdn: str, rdtype: int, query_id: int) -> None:
        conn = await self._connection()
        data = await conn.exchange(self._question(fqdn, rdtype, query_id))
        try:
            answer = parse_answer(data)
        except ValueError as exc:
            raise DoqError(f"failed to handle response: {exc}") from None
        self._remember(fqdn, rdtype, answer)

    async def _connection(self) -> _Connection:
        """The live connection, dialled (a second time if the first dial fails) when
        there is none."""
        conn = self._conn
        if conn is not None and conn.alive:
            return conn
        async with self._dialing:
            conn = self._conn
            if conn is not None and conn.alive:
                return conn
            if conn is not None:
                conn.close()
                self._conn = None
            try:
                conn = await self._dial()
            except DoqError as exc:
                log.debug("%s: failed to open a QUIC connection, once more: %s", self.name, exc)
                conn = await self._dial()
            if self._closed:
                conn.close()
                raise DoqError("closed")
            self._conn = conn
            self.connections += 1
            return conn

    async def _dial(self) -> _Connection:
        from aioquic.quic.connection import QuicConnection

        if self._closed:
            raise DoqError("closed")
        host, port = self.address.host, self.address.port
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise DoqError(f"cannot resolve {host}: {exc}") from None
        family, _, _, _, address = min(infos, key=lambda info: info[0] != socket.AF_INET)
        conn = _Connection(
            QuicConnection(configuration=quic_configuration(host, cafile=self._cafile))
        )
        try:
            local = ("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)
            sock = bound_udp_socket(family, local, None)
            try:
                transport, _ = await loop.create_datagram_endpoint(lambda: conn.protocol, sock=sock)
            except BaseException:
                sock.close()
                raise
            conn.transport = transport
            conn.protocol.connect(address)
            async with asyncio.timeout(self._handshake_timeout):
                await conn.handshake
        except BaseException as exc:
            conn.close()
            if isinstance(exc, (OSError, TimeoutError, DoqError)):
                reason = str(exc) or type(exc).__name__
                raise DoqError(
                    f"failed to open QUIC connection to {host}:{port}: {reason}"
                ) from None
            raise
        return conn

    async def aclose(self) -> None:
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None
