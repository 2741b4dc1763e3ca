"""QUIC (``network: "quic"``) as v2ray-core 4.34 ``transport/internet/quic``
(docs/spec/transports.md section 5), on ``aioquic``.

* Every UDP datagram is wrapped by :class:`~v2py.protocol.quic_packet.QuicPacketCodec`
  (``quicSettings`` security, key and mKCP header); undecryptable datagrams are
  dropped before aioquic sees them. With neither security nor header the datagrams
  are plain QUIC.
* Each proxied connection is one bidirectional stream. The client keeps its QUIC
  connections per destination for the transport's lifetime, puts a new stream on the
  first live one with fewer than :data:`MAX_STREAMS_PER_CONNECTION` open streams and
  stream credit left from the server (where 4.34's client gets an error and dials
  anew), else dials a new connection from a fresh UDP socket (0.0.0.0:0, as 4.34).
* The server grants 32 bidirectional streams, one more each time one is done both
  ways, and no unidirectional ones (4.34's ``MaxIncomingStreams: 32``,
  ``MaxIncomingUniStreams: -1``).
* Receive flow control follows the reader, with quic-go 0.29's windows
  (``protocol/quic_flow.py``): a stream's credit is what its reader consumed plus
  512 KiB, the connection's what all readers consumed plus 768 KiB, each auto-tuned
  up to 6 MiB and 15 MiB. A stream nobody reads stops its sender once its window is
  full; aioquic's own doubling of the credit as data arrives is kept only for streams
  v2py no longer reads (their data is dropped as it comes).
* TLS 1.3 runs inside QUIC. Without ``tlsSettings`` the server makes a self-signed
  certificate for ``quic.internal.v2ray.com`` (valid an hour, made when listening)
  and the client sends that name and does not verify. With ``tlsSettings``: its
  certificates chosen by the ClientHello's SNI as over TCP (several ``encipherment``
  ones by name; ``issue`` CAs mint a leaf per name), its ALPN (default h2, http/1.1
  both sides), ``allowInsecure``, the listed certificates as extra roots. The client
  never sends the destination as SNI: 4.34 resolves the destination to an IP before
  building the TLS settings, so only ``serverName`` counts, and without it the client
  must be ``allowInsecure``.
* quic-go settings of 4.34: connection-ID length 12, handshake timeout 8 s, idle
  timeout 30 s (client) / 45 s (server).

QUIC versions: aioquic speaks QUIC v1 (RFC 9000) and v2 (RFC 9369). Debian's 4.34 is
built with quic-go 0.29, which speaks v1, draft-29 and a draft v2 number
(0x709a50c4); its client starts with v1, so v1 is what both sides use. An upstream
v4.34.0 binary vendors quic-go v0.19.3, which predates RFC 9000 (v0.21.0 added v1) and
speaks only drafts 29/32/34: no version in common with aioquic, so v2py cannot reach
or serve such a binary over QUIC.

Differences: once v2py closes a stream, what still comes on it is dropped and credited
as it arrives (quic-go's ``Close`` closes only the sending side; its receive side keeps
holding up to the window). The flow control leans on aioquic internals, checked with
aioquic 1.7.2: the two overridden ``_write_*_limits`` methods, the counters they read
and the smoothed RTT.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from v2py.config.stream import TlsConfig
from v2py.config.transport_extra import QuicConfig
from v2py.errors import ConfigError
from v2py.protocol.quic_flow import (
    CONNECTION_WINDOW_BYTES,
    CONNECTION_WINDOW_MULTIPLIER,
    MAX_CONNECTION_WINDOW_BYTES,
    MAX_STREAM_WINDOW_BYTES,
    STREAM_WINDOW_BYTES,
    ReceiveWindow,
)
from v2py.protocol.quic_packet import QuicPacketCodec
from v2py.transport.layer import LayerHandler
from v2py.transport.multiplex import ConnectionPool, FedStream, TaskSet, run_handler
from v2py.transport.sockopt import bound_udp_socket
from v2py.transport.stream import READ_CHUNK_BYTES
from v2py.transport.udp_batch import open_batch_endpoint

if TYPE_CHECKING:
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.asyncio.server import QuicServer
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection
    from aioquic.quic.events import QuicEvent
    from aioquic.quic.packet_builder import QuicPacketBuilder
    from aioquic.quic.recovery import QuicPacketSpace
    from aioquic.quic.stream import QuicStream as AioquicStream

    from v2py.transport.sockopt import SocketOptions
    from v2py.transport.tls import IssuingCA

__all__ = ["INTERNAL_DOMAIN", "QuicListener", "QuicStream", "QuicTransport"]

log = logging.getLogger(__name__)

#: The name of the generated certificate and of the client's default SNI (quic.go).
INTERNAL_DOMAIN = "quic.internal.v2ray.com"
DEFAULT_ALPN = ("h2", "http/1.1")
CONNECTION_ID_BYTES = 12
HANDSHAKE_TIMEOUT_S = 8.0
CLIENT_IDLE_TIMEOUT_S = 30.0
SERVER_IDLE_TIMEOUT_S = 45.0
#: 4.34's server ``MaxIncomingStreams``.
MAX_STREAMS_PER_CONNECTION = 32
#: QUIC packet size before the wrap (aioquic's default is 1200): quic-go 0.29 reads
#: packets of up to 1452 bytes, and 1400 plus the widest wrap (13 + 12 + 16) still fits
#: a 1500-byte MTU over IPv6. Fewer, larger packets: aioquic's cost is per packet.
MAX_QUIC_PACKET_BYTES = 1400
#: Validity of the generated certificate.
GENERATED_CERT_VALIDITY = datetime.timedelta(hours=1)
#: Unsent bytes of one stream above which ``drain`` waits.
WRITE_HIGH_WATER_BYTES = 512 * 1024


#: UDP socket buffers asked for: quic-go raises its receive buffer to 2.5 MB, since a
#: congestion window's burst overflows the default and every loss halves the window.
UDP_BUFFER_BYTES = 2_500_000


def _grow_buffers(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, UDP_BUFFER_BYTES)


def _read_file(name: str) -> bytes:
    with open(name, "rb") as fh:
        return fh.read()


# --------------------------------------------------------------------------
# the stream


class QuicStream(FedStream):
    """One bidirectional QUIC stream as a :class:`~v2py.transport.stream.Stream`."""

    _write_high_water = WRITE_HIGH_WATER_BYTES

    def __init__(self, owner: _Connection, stream_id: int) -> None:
        super().__init__()
        self._owner = owner
        self.stream_id = stream_id
        self._written = 0
        self._ended = False
        self._closed = False
        #: Receive credit granted to the peer as this stream's reader consumes.
        self._window = ReceiveWindow(STREAM_WINDOW_BYTES, MAX_STREAM_WINDOW_BYTES)

    def _feed(self, data: bytes, end: bool) -> None:
        if data:
            self._chunks.append(data)
        if end:
            self._eof = True
        self._readable.set()

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        """As :meth:`FedStream.read`; what is read is credited to the peer."""
        data = await super().read(max_bytes)
        if data and not self._closed:  # the application has it: credit follows
            self._owner.consumed(self, len(data))
        return data

    def _unsent(self) -> int:
        return self._written - self._owner.sent_offset(self.stream_id)

    def _want_writable(self) -> None:
        self._owner.want_writable(self)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._error is not None:
            raise ConnectionResetError(f"write on a reset QUIC stream: {self._error}")
        if self._closed or self._ended:
            raise ConnectionResetError("write on a closed QUIC stream")
        if data:
            self._written += len(data)
            self._owner.send(self.stream_id, bytes(data), end=False)

    def write_eof(self) -> None:
        if self._ended or self._closed or self._error is not None:
            return
        self._ended = True
        self._owner.send(self.stream_id, b"", end=True)

    def close(self) -> None:
        """Send FIN if not sent (quic-go ``Stream.Close`` closes the sending side) and
        stop reading."""
        if self._closed:
            return
        self.write_eof()
        self._closed = True
        self._owner.forget(self)
        self._owner.discarded(sum(map(len, self._chunks)))
        self._closed_event.set()

    @property
    def peer(self) -> tuple[str, int] | None:
        return self._owner.peer

    @property
    def local(self) -> tuple[str, int] | None:
        return self._owner.local


# --------------------------------------------------------------------------
# UDP wrapping


def send_many(transport: Any, datagrams: list[bytes], addr: Any) -> None:
    """Send ``datagrams`` through ``transport``: in batches where it can."""
    batch = getattr(transport, "send_many", None)
    if batch is not None:
        batch(datagrams, addr)
        return
    for data in datagrams:
        transport.sendto(data, addr)


class _SealingTransport:
    """What aioquic writes to: seals each datagram, then sends it."""

    def __init__(self, transport: asyncio.DatagramTransport, codec: QuicPacketCodec) -> None:
        self._transport = transport
        self._codec = codec

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self._transport.sendto(self._codec.seal(data), addr)

    def send_many(self, datagrams: list[bytes], addr: Any) -> None:
        seal = self._codec.seal
        send_many(self._transport, [seal(data) for data in datagrams], addr)

    def close(self) -> None:
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def abort(self) -> None:
        self._transport.abort()


class _OpeningProtocol(asyncio.DatagramProtocol):
    """The UDP socket's protocol: opens each datagram, hands the QUIC packet on."""

    def __init__(self, inner: asyncio.DatagramProtocol, codec: QuicPacketCodec) -> None:
        self._inner = inner
        self._codec = codec
        self.dropped = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        wrapped = (
            transport if self._codec.transparent else _SealingTransport(self.transport, self._codec)
        )
        self._inner.connection_made(cast(asyncio.DatagramTransport, wrapped))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        packet = self._codec.open(data)
        if packet is None:
            self.dropped += 1
            return
        try:
            self._inner.datagram_received(packet, addr)
        except Exception:  # garbage never stops the socket
            log.debug("quic: datagram from %s dropped", addr, exc_info=True)

    def error_received(self, exc: Exception) -> None:
        log.debug("quic: UDP error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


# --------------------------------------------------------------------------
# connections


def _protocol_class() -> type[QuicConnectionProtocol]:
    """The aioquic protocol subclass (built on first use: aioquic is imported lazily)."""
    global _PROTOCOL_CLASS
    if _PROTOCOL_CLASS is None:
        from aioquic.asyncio.protocol import QuicConnectionProtocol

        class _Protocol(QuicConnectionProtocol):
            owner: _Connection

            def quic_event_received(self, event: QuicEvent) -> None:
                self.owner.event(event)

            def datagram_received(self, data: bytes | str, addr: Any) -> None:
                if self.owner.peer is None and isinstance(addr, tuple):
                    self.owner.peer = (str(addr[0]), int(addr[1]))
                # aioquic transmits after every datagram; the socket hands over up to
                # 32 per loop turn, so answer (ACKs, credit, more data) once per turn.
                self._quic.receive_datagram(cast(bytes, data), addr, now=self._loop.time())
                self._process_events()
                self._transmit_soon()

            def transmit(self) -> None:
                # aioquic's transmit, with the datagrams of a turn handed over together
                # (one GSO send per run of equal-size ones, transport/udp_batch.py).
                self._transmit_task = None
                pending = self._quic.datagrams_to_send(now=self._loop.time())
                transport = self._transport
                if pending and transport is not None:
                    addr = pending[0][1]
                    if all(a == addr for _, a in pending):
                        send_many(transport, [data for data, _ in pending], addr)
                    else:
                        for data, a in pending:
                            transport.sendto(data, a)
                timer_at = self._quic.get_timer()
                if self._timer is not None and self._timer_at != timer_at:
                    self._timer.cancel()
                    self._timer = None
                if self._timer is None and timer_at is not None:
                    self._timer = self._loop.call_at(timer_at, self._handle_timer)
                self._timer_at = timer_at
                self.owner.transmitted()

        _PROTOCOL_CLASS = _Protocol
    return _PROTOCOL_CLASS


_PROTOCOL_CLASS: type[QuicConnectionProtocol] | None = None


#: quic-go 0.29's pacer (internal/congestion/pacer.go) lets a burst of
#: (MinPacingDelay + TimerGranularity) = 2 ms at the pacing rate go out at once.
PACING_BURST_S = 0.002


def _pacer_class() -> type[Any]:
    """aioquic's pacer with quic-go's burst allowance (built on first use).

    aioquic caps a burst at 16 packets, and its timer then waits for the event loop,
    whose timers run at millisecond granularity: on a fast path that caps a connection
    near 16 packets per millisecond (~20 MB/s), whatever the congestion window. quic-go
    bounds a burst by 2 ms at the pacing rate instead; so does this pacer (the rate and
    the congestion window still apply)."""
    global _PACER_CLASS
    if _PACER_CLASS is None:
        from aioquic.quic.recovery import QuicPacketPacer

        class _Pacer(QuicPacketPacer):
            def update_rate(self, congestion_window: int, smoothed_rtt: float) -> None:
                super().update_rate(congestion_window, smoothed_rtt)
                if self.bucket_max < PACING_BURST_S:
                    self.bucket_max = PACING_BURST_S

        _PACER_CLASS = _Pacer
    return _PACER_CLASS


_PACER_CLASS: type[Any] | None = None

#: quic-go 0.29's first congestion window (internal/congestion/cubic_sender.go
#: ``initialCongestionWindow`` packets of ``InitialPacketSizeIPv4`` bytes): 32 x 1252.
#: aioquic starts at 10 packets, which made short transfers ramp up far slower than
#: 4.34's (bench, 32 MiB over QUIC, v2py against v2py: upload 1.22x, download 1.62x).
INITIAL_CONGESTION_WINDOW_BYTES = 32 * 1252
CONGESTION_CONTROL = "v2py-reno"


def _register_congestion_control() -> None:
    """aioquic's New Reno with quic-go's first window, registered as
    :data:`CONGESTION_CONTROL` (once, on first use)."""
    global _CONGESTION_REGISTERED
    if _CONGESTION_REGISTERED:
        return
    from aioquic.quic.congestion.base import register_congestion_control
    from aioquic.quic.congestion.reno import RenoCongestionControl

    class _Reno(RenoCongestionControl):
        def __init__(self, *, max_datagram_size: int) -> None:
            super().__init__(max_datagram_size=max_datagram_size)
            self.congestion_window = INITIAL_CONGESTION_WINDOW_BYTES

    register_congestion_control(CONGESTION_CONTROL, _Reno)
    _CONGESTION_REGISTERED = True


_CONGESTION_REGISTERED = False


def _flow_class() -> type[QuicConnection]:
    """aioquic's connection with receive credit that follows v2py's readers (built on
    first use).

    aioquic doubles a stream's MAX_STREAM_DATA (and the connection's MAX_DATA) once half
    of it has arrived, read or not. Here a stream's limit comes from its reader's
    :class:`ReceiveWindow`, and the connection's from a window whose ``read`` is the
    bytes received less those held unread in v2py's streams. aioquic still writes the
    frames and resends lost ones; while it does, the counter its doubling looks at is
    hidden (set to 0 and put back). Streams v2py does not read (closed, or not
    proxied) drop their data as it comes and keep aioquic's crediting.
    """
    global _FLOW_CLASS
    if _FLOW_CLASS is None:
        from aioquic.quic.connection import QuicConnection

        class _FlowControlled(QuicConnection):
            v2py_readers: dict[int, QuicStream]
            v2py_held: int
            v2py_window: ReceiveWindow
            #: A listener's certificates chosen by SNI (None: the configuration's one).
            v2py_certificates: _QuicCertificates | None = None

            def _initialize(self, peer_cid: bytes) -> None:
                super()._initialize(peer_cid)
                if self.v2py_certificates is not None:
                    _choosing_hello(self.tls, self.v2py_certificates)

            def v2py_rtt(self) -> float:
                loss = self._loss
                return float(loss._rtt_smoothed) if loss._rtt_initialized else 0.0

            def v2py_connection_due(self) -> bool:
                window = self.v2py_window
                read = self._local_max_data.used - self.v2py_held
                if read > window.read:
                    window.read = read
                return window.due()

            def _write_connection_limits(
                self, builder: QuicPacketBuilder, space: QuicPacketSpace
            ) -> None:
                limit = self._local_max_data
                used = limit.used
                if self.v2py_connection_due():
                    granted = self.v2py_window.advance(time.monotonic(), self.v2py_rtt())
                    limit.value = max(limit.value, granted)
                limit.used = 0
                try:
                    super()._write_connection_limits(builder, space)
                finally:
                    limit.used = used

            def _write_stream_limits(
                self, builder: QuicPacketBuilder, space: QuicPacketSpace, stream: AioquicStream
            ) -> None:
                sid = stream.stream_id
                reader = self.v2py_readers.get(sid) if sid is not None else None
                if reader is None:
                    super()._write_stream_limits(builder, space, stream)
                    return
                window = reader._window
                if window.due():
                    size = window.size
                    now = time.monotonic()
                    granted = window.advance(now, self.v2py_rtt())
                    stream.max_stream_data_local = max(stream.max_stream_data_local, granted)
                    if window.size > size:
                        wanted = int(window.size * CONNECTION_WINDOW_MULTIPLIER)
                        self.v2py_window.ensure_size(wanted, now)
                if stream.max_stream_data_local_sent == stream.max_stream_data_local:
                    return  # nothing to send (the usual case: this runs for every packet)
                receiver = stream.receiver
                highest = receiver.highest_offset
                receiver.highest_offset = 0
                try:
                    super()._write_stream_limits(builder, space, stream)
                finally:
                    receiver.highest_offset = highest

        _FLOW_CLASS = _FlowControlled
    return _FLOW_CLASS


_FLOW_CLASS: type[QuicConnection] | None = None


class _Connection:
    """One QUIC connection (either side) and its streams."""

    def __init__(
        self,
        quic: Any,
        *,
        client: bool,
        on_stream: Callable[[QuicStream], None] | None = None,
    ) -> None:
        self.streams: dict[int, QuicStream] = {}
        # QuicServer builds aioquic's own class: it becomes the flow-controlled one
        # before any packet is handled (same attributes, two methods overridden).
        quic.__class__ = _flow_class()
        quic.v2py_readers = self.streams
        quic.v2py_held = 0
        quic.v2py_window = ReceiveWindow(CONNECTION_WINDOW_BYTES, MAX_CONNECTION_WINDOW_BYTES)
        quic.v2py_window.start(time.monotonic())
        quic._loss._pacer.__class__ = _pacer_class()
        if not client:
            # 4.34's server: MaxIncomingStreams 32 (one more each time one is done
            # both ways), MaxIncomingUniStreams -1 (none).
            for limit, count in (
                (quic._local_max_streams_bidi, MAX_STREAMS_PER_CONNECTION),
                (quic._local_max_streams_uni, 0),
            ):
                limit.value = limit.sent = count
        self.protocol = _protocol_class()(quic)
        self.protocol.owner = self  # type: ignore[attr-defined]
        self.quic = quic
        self.client = client
        self.closed = False
        self.peer: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self._on_stream = on_stream
        self._blocked: set[QuicStream] = set()
        self._error: BaseException | None = None
        #: Server: the next client-bidirectional stream ID never seen, and the lower
        #: ones whose data has not come yet.
        self._next_peer_id = 0
        self._skipped: set[int] = set()
        self.terminated = asyncio.get_running_loop().create_future()

    # -- output -------------------------------------------------------------
    def send(self, stream_id: int, data: bytes, *, end: bool) -> None:
        if self.closed:
            raise ConnectionResetError(str(self._error or "QUIC connection closed"))
        self.quic.send_stream_data(stream_id, data, end_stream=end)
        self.protocol._transmit_soon()

    def sent_offset(self, stream_id: int) -> int:
        """How far the stream's data has gone out (aioquic keeps it on its stream)."""
        streams = getattr(self.quic, "_streams", None)
        stream = streams.get(stream_id) if streams is not None else None
        if stream is None:
            return 1 << 62
        return int(stream.sender.highest_offset)

    def want_writable(self, stream: QuicStream) -> None:
        self._blocked.add(stream)

    def transmitted(self) -> None:
        if not self._blocked:
            return
        for stream in list(self._blocked):
            if stream._unsent() <= WRITE_HIGH_WATER_BYTES or stream._error is not None:
                self._blocked.discard(stream)
                stream._writable.set()

    def forget(self, stream: QuicStream) -> None:
        self.streams.pop(stream.stream_id, None)
        self._blocked.discard(stream)

    def consumed(self, stream: QuicStream, size: int) -> None:
        """A reader took ``size`` bytes: credit them; send new limits once due."""
        quic = self.quic
        quic.v2py_held -= size
        window = stream._window
        if not window.read:
            window.start(time.monotonic())
        window.read += size
        if (window.due() or quic.v2py_connection_due()) and not self.closed:
            self.protocol._transmit_soon()

    def discarded(self, size: int) -> None:
        """A stream closed with ``size`` bytes unread: the connection credits them."""
        if size:
            self.quic.v2py_held -= size
            if self.quic.v2py_connection_due() and not self.closed:
                self.protocol._transmit_soon()

    # -- client -------------------------------------------------------------
    def can_open(self) -> bool:
        """Fewer than 32 streams open here, and the server's stream credit not used up
        (quic-go's ``OpenStream`` fails then, and 4.34 dials a new connection)."""
        quic = self.quic
        return (
            not self.closed
            and len(self.streams) < MAX_STREAMS_PER_CONNECTION
            and quic.get_next_available_stream_id() // 4 < quic._remote_max_streams_bidi
        )

    def open_stream(self) -> QuicStream:
        """A new client stream. aioquic takes a stream ID only on the first send, so an
        empty send claims it now: dials that have not written yet (a VMess client
        writes its header with the first payload) must not share an ID."""
        stream_id = self.quic.get_next_available_stream_id()
        self.quic.send_stream_data(stream_id, b"", end_stream=False)
        stream = QuicStream(self, stream_id)
        self.streams[stream_id] = stream
        return stream

    # -- input --------------------------------------------------------------
    def event(self, event: QuicEvent) -> None:
        from aioquic.quic import events

        if isinstance(event, events.StreamDataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is None:
                # Only the peer's bidirectional streams are proxied connections.
                if self.client or event.stream_id % 4 != 0 or self._on_stream is None:
                    return
                if not self._first_sight(event.stream_id):
                    return  # a late packet of a stream we have already closed
                stream = QuicStream(self, event.stream_id)
                self.streams[event.stream_id] = stream
                self.quic.v2py_held += len(event.data)
                stream._feed(event.data, event.end_stream)
                self._on_stream(stream)
                return
            self.quic.v2py_held += len(event.data)
            stream._feed(event.data, event.end_stream)
        elif isinstance(event, events.StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream._fail(ConnectionResetError(f"QUIC stream reset ({event.error_code})"))
        elif isinstance(event, events.ConnectionTerminated):
            reason = event.reason_phrase or f"code {event.error_code}"
            self.terminate(ConnectionResetError(f"QUIC connection closed: {reason}"))

    def _first_sight(self, stream_id: int) -> bool:
        """Whether a peer stream's data is seen for the first time. Streams' first
        packets may arrive out of ID order (a client opens streams 0, 4, 8 and writes
        on 8 first), so the IDs skipped over stay new until their data comes."""
        if stream_id >= self._next_peer_id:
            self._skipped.update(range(self._next_peer_id, stream_id, 4))
            self._next_peer_id = stream_id + 4
            return True
        if stream_id in self._skipped:
            self._skipped.discard(stream_id)
            return True
        return False

    def terminate(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self.closed = True
        for stream in list(self.streams.values()):
            stream._fail(exc)
        self._blocked.clear()
        if not self.terminated.done():
            self.terminated.set_result(None)


# --------------------------------------------------------------------------
# TLS settings -> aioquic configuration


def _generated_pair() -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, INTERNAL_DOMAIN)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - GENERATED_CERT_VALIDITY)
        .not_valid_after(now + GENERATED_CERT_VALIDITY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(INTERNAL_DOMAIN)]), False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


@dataclass
class _QuicCert:
    """A server certificate of a QUIC listener, as aioquic takes it."""

    certificate: Any  # cryptography x509.Certificate
    chain: list[Any]
    key: Any  # its private key
    pem: bytes
    names: tuple[str, ...] = ()
    not_after: datetime.datetime | None = None

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes | None) -> _QuicCert | None:
        from cryptography import x509

        from v2py.transport.pem import read_private_key

        if key_pem is None:
            return None
        try:
            chain = x509.load_pem_x509_certificates(cert_pem)
        except ValueError:
            return None
        key = read_private_key(key_pem)  # also as Go reads it (v2ctl cert's keys)
        if key is None:
            return None
        return cls(chain[0], chain[1:], key, cert_pem)


class _QuicCertificates:
    """The certificates a QUIC listener chooses from by the ClientHello's SNI, as TLS
    over TCP chooses (:func:`~v2py.transport.tls.choose_certificate`): by name among
    several, or a leaf minted for the name by an issuing CA (``usage: "issue"``)."""

    def __init__(
        self,
        certs: list[_QuicCert],
        cas: list[IssuingCA],
        now: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self.certs = certs
        self.cas = cas
        self._now = now or (lambda: datetime.datetime.now(datetime.UTC))

    def pick(self, name: str) -> _QuicCert | None:
        from v2py.transport.tls import choose_certificate

        return choose_certificate(
            self.certs, name, issuing=bool(self.cas), now=self._now, mint=self._mint
        )

    def _mint(self, name: str, now: datetime.datetime) -> _QuicCert | None:
        from v2py.transport.tls import mint_leaf

        return mint_leaf(self.cas, name, now, _QuicCert.load, "quic")


def _choosing_hello(tls: Any, certificates: _QuicCertificates) -> None:
    """Makes aioquic's TLS server context ``tls`` take its certificate from
    ``certificates`` by the ClientHello's SNI (aioquic has no hook for it: its
    ClientHello handler is wrapped; checked with aioquic 1.7.2). No certificate for
    the name fails the handshake with a handshake_failure alert, as Go's does."""
    from aioquic import tls as aioquic_tls

    handle = tls._server_handle_hello

    def hello(input_buf: Any, initial_buf: Any, handshake_buf: Any) -> None:
        start = input_buf.tell()
        try:
            name = aioquic_tls.pull_client_hello(input_buf).server_name or ""
        finally:
            input_buf.seek(start)
        chosen = certificates.pick(name)
        if chosen is None:
            raise aioquic_tls.AlertHandshakeFailure("no certificate for the server name")
        tls.certificate = chosen.certificate
        tls.certificate_chain = chosen.chain
        tls.certificate_private_key = chosen.key
        handle(input_buf, initial_buf, handshake_buf)

    tls._server_handle_hello = hello


class QuicTransport:
    """``network: "quic"``: streams over QUIC connections wrapped per ``quicSettings``.

    Raises:
        ConfigError: a certificate in ``tlsSettings`` cannot be used on QUIC.
    """

    name = "quic"
    listener_ends_sessions = True

    def __init__(
        self,
        config: QuicConfig,
        tls: TlsConfig | None,
        *,
        path: str = "streamSettings.tlsSettings",
        rng: Callable[[int], bytes] = os.urandom,
        read_file: Callable[[str], bytes] = _read_file,
        options: SocketOptions | None = None,
    ) -> None:
        self.config = config
        self.tls = tls
        #: ``sockopt`` (mark, tproxy) of the UDP sockets, dialled and listening, as
        #: 4.34's ``ListenSystemPacket`` sets them (``sendThrough`` has no effect on
        #: QUIC in 4.34: its dialer always binds the any-address).
        self.options = options
        self._rng = rng
        self._path = path
        self._read_file = read_file
        self._pool: ConnectionPool[_Connection] = ConnectionPool()
        self._sockets: set[asyncio.DatagramTransport] = set()

    def _codec(self) -> QuicPacketCodec:
        return QuicPacketCodec(
            security=self.config.security,
            key=self.config.key,
            header=self.config.header_type,
            rng=self._rng,
        )

    def _configuration(self, *, client: bool) -> QuicConfiguration:
        from aioquic.quic.configuration import QuicConfiguration

        tls = self.tls
        alpn = list(tls.alpn) if tls is not None and tls.alpn else list(DEFAULT_ALPN)
        configuration = QuicConfiguration(
            is_client=client,
            alpn_protocols=alpn,
            connection_id_length=CONNECTION_ID_BYTES,
            idle_timeout=CLIENT_IDLE_TIMEOUT_S if client else SERVER_IDLE_TIMEOUT_S,
            max_datagram_size=MAX_QUIC_PACKET_BYTES,
            max_data=CONNECTION_WINDOW_BYTES,
            max_stream_data=STREAM_WINDOW_BYTES,
            congestion_control_algorithm=CONGESTION_CONTROL,
        )
        _register_congestion_control()
        if client:
            if tls is None:
                configuration.server_name = INTERNAL_DOMAIN
                configuration.verify_mode = ssl.CERT_NONE
            else:
                name = tls.server_name.removeprefix("experiment:8357")
                configuration.server_name = name or None
                if tls.allow_insecure:
                    configuration.verify_mode = ssl.CERT_NONE
                else:
                    self._client_roots(configuration, tls)
        return configuration

    def _pems(self, tls: TlsConfig) -> list[tuple[str, bytes, bytes | None]]:
        pems = []
        for index, cert in enumerate(tls.certificates):
            try:
                cert_pem, key_pem = cert.load_pem(self._read_file)
            except OSError as exc:
                raise ConfigError(
                    f"{self._path}.certificates[{index}]", f"cannot read it: {exc}"
                ) from None
            pems.append((cert.usage, cert_pem, key_pem))
        return pems

    def _client_roots(self, configuration: QuicConfiguration, tls: TlsConfig) -> None:
        import certifi

        listed = b"\n".join(pem for _, pem, _ in self._pems(tls))
        if listed:
            configuration.cadata = listed
        if not tls.disable_system_root:
            configuration.cafile = certifi.where()

    def _server_certificate(self, configuration: QuicConfiguration) -> _QuicCertificates | None:
        """Sets the certificate every handshake starts with; returns the chooser when
        the ClientHello's SNI picks one (several certificates, or issuing CAs), as
        4.34's QUIC listener serves the whole TLS config of TLS over TCP."""
        from v2py.transport.tls import server_certificates

        tls = self.tls
        if tls is None:
            configuration.certificate, configuration.private_key = _generated_pair()
            return None
        certs, cas = server_certificates(self._pems(tls), _QuicCert.load, "quic")
        if certs:
            first = certs[0]
            configuration.certificate = first.certificate
            configuration.certificate_chain = first.chain
            configuration.private_key = first.key
        elif cas:
            # aioquic's server needs a certificate to start a connection with; each
            # handshake replaces it with the leaf minted for its SNI.
            configuration.certificate, configuration.private_key = _generated_pair()
        if len(certs) <= 1 and not cas:
            return None
        return _QuicCertificates(certs, cas)

    # -- dial -----------------------------------------------------------------
    async def dial(self, host: str, port: int, *, timeout: float | None = None) -> QuicStream:
        async with asyncio.timeout(timeout):
            conn = await self._pool.get(host, port, lambda: self._connect(host, port))
            return conn.open_stream()

    async def _connect(self, host: str, port: int) -> _Connection:
        from aioquic.quic.connection import QuicConnection

        loop = asyncio.get_running_loop()
        # 4.34 resolves the destination first and dials its address.
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, _, _, _, address = infos[0]
        quic = QuicConnection(configuration=self._configuration(client=True))
        conn = _Connection(quic, client=True)
        codec = self._codec()
        local = ("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)
        sock = bound_udp_socket(family, local, self.options)
        try:
            transport = await open_batch_endpoint(_OpeningProtocol(conn.protocol, codec), sock)
        except BaseException:
            sock.close()
            raise
        self._sockets.add(transport)
        _grow_buffers(transport)
        conn.peer = (str(address[0]), int(address[1]))
        sockname = transport.get_extra_info("sockname")
        conn.local = (str(sockname[0]), int(sockname[1])) if sockname else None

        def finished(_: object) -> None:
            transport.close()
            self._sockets.discard(transport)

        conn.terminated.add_done_callback(finished)
        try:
            conn.protocol.connect(address)
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                await conn.protocol.wait_connected()
        except BaseException as exc:
            conn.terminate(ConnectionResetError(f"QUIC handshake failed: {exc!r}"))
            conn.protocol.close()
            transport.close()
            if isinstance(exc, (ConnectionError, TimeoutError)):
                raise ConnectionRefusedError(f"failed to dial QUIC {host}:{port}") from exc
            raise
        return conn

    # -- listen ---------------------------------------------------------------
    async def listen(
        self, host: str, port: int, handler: LayerHandler, *, reuse_port: bool = False
    ) -> QuicListener:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise OSError(f"domain address is not allowed for listening quic: {host}") from None
        configuration = self._configuration(client=False)
        listener = QuicListener(configuration, handler, self._server_certificate(configuration))
        await listener.start(host, port, self._codec(), reuse_port=reuse_port, options=self.options)
        return listener

    async def aclose(self) -> None:
        for conn in self._pool:
            with contextlib.suppress(Exception):
                conn.protocol.close()
            conn.terminate(ConnectionResetError("QUIC transport closed"))
        self._pool.clear()
        for transport in list(self._sockets):
            transport.close()
        self._sockets.clear()


class QuicListener:
    """One UDP socket serving QUIC connections; each peer stream runs ``handler``."""

    def __init__(
        self,
        configuration: QuicConfiguration,
        handler: LayerHandler,
        certificates: _QuicCertificates | None = None,
    ) -> None:
        self._configuration = configuration
        self._handler = handler
        self._certificates = certificates
        self._tasks = TaskSet()
        self._server: QuicServer | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._udp: _OpeningProtocol | None = None
        self._connections: list[_Connection] = []

    async def start(
        self,
        host: str,
        port: int,
        codec: QuicPacketCodec,
        *,
        reuse_port: bool = False,
        options: SocketOptions | None = None,
    ) -> None:
        from aioquic.asyncio.server import QuicServer

        server = QuicServer(configuration=self._configuration, create_protocol=self._protocol)
        self._server = server
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = bound_udp_socket(family, (host, port), options, reuse_port=reuse_port)
        udp = _OpeningProtocol(server, codec)
        try:
            transport = await open_batch_endpoint(udp, sock)
        except BaseException:
            sock.close()
            raise
        self._transport = transport
        self._udp = udp
        _grow_buffers(transport)

    def _protocol(self, quic: Any, **_: Any) -> QuicConnectionProtocol:
        conn = _Connection(quic, client=False, on_stream=self._spawn)
        if self._certificates is not None:
            quic.v2py_certificates = self._certificates
        self._connections = [c for c in self._connections if not c.closed]
        self._connections.append(conn)
        return conn.protocol

    def _spawn(self, stream: QuicStream) -> None:
        self._tasks.spawn(run_handler(self._handler, stream, log, "quic: stream handler failed"))

    @property
    def port(self) -> int:
        assert self._transport is not None
        return int(self._transport.get_extra_info("sockname")[1])

    @property
    def dropped(self) -> int:
        """Datagrams dropped because they did not open (short or undecryptable)."""
        return self._udp.dropped if self._udp is not None else 0

    def stop_accepting(self) -> None:
        # The UDP socket carries the established connections: closing it ends them.
        self.close()

    def close(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.close()
            self._server = None
        for conn in self._connections:
            conn.terminate(ConnectionResetError("QUIC listener closed"))
        self._tasks.cancel()

    async def wait_closed(self) -> None:
        await self._tasks.wait()
