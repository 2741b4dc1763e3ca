"""Mux.Cool: many sub-connections over one stream, sans I/O.

Spec: ``docs/spec/transports.md`` section 1. Matches v2ray-core 4.34
``common/mux/{frame,reader,writer,session,client,server}.go``. Every frame is::

    MetaLen u16 | SessionID u16 | Status u8 | Option u8 | [New: Network u8 | Port u16 |
    AddrType u8 | Address] | [Option & DATA: DataLen u16 | Data]

all big-endian; the address coding is VMess's (port first; 1 IPv4, 2 domain, 3 IPv6).

Theory of operation
-------------------
One :class:`MuxConnection` is one end of a mux connection, client or server (the
4.34 parsers are the same for both; only who allocates sessions differs). Input is
parsed greedily in :meth:`~MuxConnection.receive_data`: stream (TCP) data is handed
out as it arrives, a packet (UDP) frame only when the whole datagram is there.
Frames the receiver must answer (Keep+data for an unknown session gets End) are
queued in :meth:`~MuxConnection.data_to_send` without an event, as 4.34 does.

A session id is *live* (its data is delivered) from New (received by a server,
:meth:`~MuxConnection.open_session` on a client) until End is received or sent; this
is 4.34's session map, whose size is :attr:`~MuxConnection.active_sessions`. Sending
is allowed from then until we send End, so a server keeps answering after the
client's End (4.34 removes the id from its map at once but its response copy runs on).

==========================  ===============================  ==========================
frame received              session                          effect
==========================  ===============================  ==========================
New (server)                any                              live; ``SessionOpened``
New (client)                any                              ignored, data discarded
Keep + data                 live                             ``DataReceived``
Keep + data                 unknown                          End (option 0) sent back
Keep without data           any                              ignored
End                         live                             ``SessionEnded(error=E)``
End                         unknown                          ignored
KeepAlive                   any                              ignored, data discarded
packet data > 2048 bytes    live                             End+E both ways
bad metadata, status, net   --                               :class:`MuxError`
==========================  ===============================  ==========================

After a :class:`~v2py.errors.MuxError` the connection is terminal: :meth:`next_event`
raises it (again on every call) once the events before it are drained, and input is
ignored. ``receive_data(b"")`` queues :class:`ConnectionEnded`.

Deliberate differences from 4.34 (it would misbehave, v2py stays safe and in sync):
an oversized packet is skipped whole (4.34 reads on from inside it on New, or ends
the connection on Keep); an empty domain is a MuxError (4.34's goroutine panics and
takes the process down).
"""

from __future__ import annotations

import collections
import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

from v2py.common.net import Destination, Network, canonical_ip, ip_text, pack_ip
from v2py.errors import LocalProtocolError, MuxError

__all__ = [
    "MAX_METADATA_BYTES",
    "MAX_PACKET_BYTES",
    "MAX_SESSIONS_PER_CONNECTION",
    "MUX_COOL_HOST",
    "MUX_COOL_PORT",
    "STREAM_CHUNK_BYTES",
    "ConnectionEnded",
    "DataReceived",
    "FrameMetadata",
    "MuxConnection",
    "MuxEvent",
    "MuxOption",
    "MuxRole",
    "MuxStatistics",
    "MuxStatus",
    "SessionEnded",
    "SessionOpened",
    "TargetNetwork",
    "decode_metadata",
    "encode_frame",
    "iter_frames",
]

#: The destination domain that names a mux connection, and the port a 4.34 client
#: dials it on (any port is accepted by a server).
MUX_COOL_HOST = "v1.mux.cool"
MUX_COOL_PORT = 9527
#: Metadata longer than this ends the connection (frame.go Unmarshal).
MAX_METADATA_BYTES = 512
#: A packet (UDP) data block longer than this is refused (reader.go, buf.Size).
MAX_PACKET_BYTES = 2048
#: Senders split stream data into blocks of at most this (writer.go).
STREAM_CHUNK_BYTES = 8 * 1024
#: A 4.34 client opens a new connection after this many sessions on one (mux.go).
MAX_SESSIONS_PER_CONNECTION = 128
#: Largest data block the u16 length can carry.
MAX_DATA_BYTES = 0xFFFF
_MIN_METADATA_BYTES = 4
_MIN_NEW_METADATA_BYTES = 8
_MAX_DOMAIN_BYTES = 255
_U16 = 2
_DOMAIN_RE = re.compile(rb"[0-9A-Za-z._-]+")
# Plain ints of the wire values for the per-frame path (enum operations cost more).
_NEW, _KEEP, _END, _KEEP_ALIVE = 0x01, 0x02, 0x03, 0x04
_OPT_DATA, _OPT_ERROR = 0x01, 0x02
_FAST_STATUSES = frozenset((_KEEP, _END, _KEEP_ALIVE))
_V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


class MuxStatus(enum.IntEnum):
    """Frame status byte."""

    NEW = 0x01
    KEEP = 0x02
    END = 0x03
    KEEP_ALIVE = 0x04


class MuxOption(enum.IntFlag):
    """Frame option bits: DATA (a data block follows), ERROR (meaningful on End)."""

    NONE = 0
    DATA = 0x01
    ERROR = 0x02


class TargetNetwork(enum.IntEnum):
    """Network byte of a New frame."""

    TCP = 0x01
    UDP = 0x02


class _AddressType(enum.IntEnum):
    IPV4 = 0x01
    DOMAIN = 0x02
    IPV6 = 0x03


class MuxRole(enum.Enum):
    """Which end of the mux connection a :class:`MuxConnection` is."""

    CLIENT = "client"
    SERVER = "server"


_NETWORK_BYTE = {Network.TCP: TargetNetwork.TCP, Network.UDP: TargetNetwork.UDP}
_BYTE_NETWORK = {int(v): k for k, v in _NETWORK_BYTE.items()}
# Members by wire value: an enum call or a flag operation costs ~1 us each, and a New
# frame (one per connection) took several.
_STATUS_BY_BYTE = {int(status): status for status in MuxStatus}
_OPTION_BY_BITS = tuple(MuxOption(bits) for bits in range(4))  # DATA | ERROR


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameMetadata:
    """The metadata of one frame; ``destination`` is set exactly on New frames."""

    session_id: int
    status: MuxStatus
    option: MuxOption = MuxOption.NONE
    destination: Destination | None = None


# -- codec -----------------------------------------------------------------------------


def _encode_address(address: str) -> bytes:
    packed = pack_ip(address)
    if packed is None:
        try:
            raw = address.encode("ascii")
        except UnicodeEncodeError:
            raise LocalProtocolError(f"mux: not an ASCII domain: {address!r}") from None
        if not raw or len(raw) > _MAX_DOMAIN_BYTES:
            raise LocalProtocolError(f"mux: domain length out of range: {address!r}")
        return bytes((_AddressType.DOMAIN, len(raw))) + raw
    kind = _AddressType.IPV4 if len(packed) == 4 else _AddressType.IPV6
    return bytes((kind,)) + packed


def encode_metadata(meta: FrameMetadata) -> bytes:
    """MetaLen and metadata of ``meta`` (the data block, if any, is not included).

    Raises LocalProtocolError for a New frame without a destination or with an
    address that cannot be coded.
    """
    body = bytearray(
        (meta.session_id >> 8 & 0xFF, meta.session_id & 0xFF, meta.status, meta.option)
    )
    if meta.status is MuxStatus.NEW:
        dest = meta.destination
        if dest is None:
            raise LocalProtocolError("mux: a New frame needs a destination")
        body.append(_NETWORK_BYTE[dest.network])
        body += dest.port.to_bytes(2, "big")
        body += _encode_address(dest.address)
    return len(body).to_bytes(2, "big") + bytes(body)


def encode_frame(meta: FrameMetadata, data: bytes | bytearray | memoryview | None = None) -> bytes:
    """One whole frame: metadata, then ``data`` as the data block when not None.

    The DATA option bit is set exactly when ``data`` is given. Raises
    LocalProtocolError when ``data`` exceeds 65535 bytes.
    """
    option = int(meta.option) & ~_OPT_DATA
    if data is not None:
        if len(data) > MAX_DATA_BYTES:
            raise LocalProtocolError(f"mux: data block of {len(data)} bytes")
        option |= _OPT_DATA
    if option != meta.option:
        meta = FrameMetadata(
            session_id=meta.session_id,
            status=meta.status,
            option=_OPTION_BY_BITS[option] if option < 4 else MuxOption(option),
            destination=meta.destination,
        )
    head = encode_metadata(meta)
    if data is None:
        return head
    return head + len(data).to_bytes(2, "big") + bytes(data)


def _decode_domain(raw: bytes) -> str:
    if not raw:
        raise MuxError("mux: empty domain")
    if raw[:1] == b"[" or raw[:1].isdigit():
        # 4.34 reads a "domain" that parses as an IP as that IP (common/protocol/address.go).
        text = raw.decode("ascii", "replace")
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        ip = canonical_ip(text.strip())
        if ip is not None:
            return ip
    if _DOMAIN_RE.fullmatch(raw) is None:
        raise MuxError(f"mux: invalid domain name: {raw!r}")
    return raw.decode("ascii")


def _ip(packed: bytes) -> str:
    if len(packed) == 16 and packed.startswith(_V4_MAPPED_PREFIX):
        packed = packed[12:]  # 4.34 keeps IPv4-mapped IPv6 as IPv4 (common/net/address.go)
    return ip_text(packed)


def decode_metadata(meta: bytes | bytearray | memoryview) -> FrameMetadata:
    """Decode metadata (without its MetaLen). Bytes after the parsed fields are ignored,
    as 4.34 does (this is how Xray's XUDP extras pass through).

    Raises MuxError for what 4.34 treats as fatal: fewer than 4 bytes, an unknown
    status, a New frame shorter than 8 bytes, an unknown network or address type, a
    truncated or invalid address.
    """
    raw = bytes(meta)
    if len(raw) < _MIN_METADATA_BYTES:
        raise MuxError(f"mux: metadata of {len(raw)} bytes")
    session_id = raw[0] << 8 | raw[1]
    status = _STATUS_BY_BYTE.get(raw[2])
    if status is None:
        raise MuxError(f"mux: unknown status {raw[2]}")
    option = _OPTION_BY_BITS[raw[3] & (_OPT_DATA | _OPT_ERROR)]
    if status is not MuxStatus.NEW:
        return FrameMetadata(session_id=session_id, status=status, option=option)
    if len(raw) < _MIN_NEW_METADATA_BYTES:
        raise MuxError(f"mux: New metadata of {len(raw)} bytes")
    network_byte = raw[4]
    port = raw[5] << 8 | raw[6]
    kind = raw[7]
    address: str
    if kind == _AddressType.IPV4:
        if len(raw) < 12:
            raise MuxError("mux: truncated IPv4 address")
        address = _ip(raw[8:12])
    elif kind == _AddressType.IPV6:
        if len(raw) < 24:
            raise MuxError("mux: truncated IPv6 address")
        address = _ip(raw[8:24])
    elif kind == _AddressType.DOMAIN:
        if len(raw) < 9 or len(raw) < 9 + raw[8]:
            raise MuxError("mux: truncated domain")
        address = _decode_domain(raw[9 : 9 + raw[8]])
    else:
        raise MuxError(f"mux: unknown address type {kind}")
    network = _BYTE_NETWORK.get(network_byte)
    if network is None:
        raise MuxError(f"mux: unknown network type {network_byte}")
    return FrameMetadata(
        session_id=session_id,
        status=status,
        option=option,
        destination=Destination(network, address, port),
    )


def iter_frames(
    frames: Iterable[tuple[FrameMetadata, bytes | None]],
) -> bytes:
    """Concatenate :func:`encode_frame` of each ``(meta, data)`` (a test helper)."""
    return b"".join(encode_frame(meta, data) for meta, data in frames)


# -- events ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MuxEvent:
    """Base class of Mux.Cool events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionOpened(MuxEvent):
    """A New frame opened ``session_id`` towards ``destination`` (server side)."""

    session_id: int
    destination: Destination


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReceived(MuxEvent):
    """Data for a live session: any part of a stream, or one whole datagram."""

    session_id: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEnded(MuxEvent):
    """The peer ended ``session_id`` (End frame); ``error`` is the E option: abort both
    directions. Also emitted (with ``error``) when v2py refuses a session's data."""

    session_id: int
    error: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionEnded(MuxEvent):
    """The mux connection's input ended; ``truncated`` when inside a frame."""

    truncated: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class MuxStatistics:
    """Counters of one mux connection."""

    frames_received: int
    frames_sent: int
    active_sessions: int
    total_sessions: int
    unknown_session_frames: int
    refused_packets: int


# -- the connection --------------------------------------------------------------------


class _Block(enum.Enum):
    """What to do with the data block being read."""

    STREAM = "stream"  # hand out as it arrives
    PACKET = "packet"  # whole, then hand out
    DISCARD = "discard"  # read and drop
    REFUSE = "refuse"  # an oversized packet: drop, then end the session


class MuxConnection:
    """One end of a Mux.Cool connection: the frame parser and the session table.

    ``role`` decides who opens sessions (the client, via :meth:`open_session`) and
    whether New frames are served (by the server). Raises nothing from its
    constructor.
    """

    def __init__(self, role: MuxRole) -> None:
        self.role = role
        self._buf = bytearray()
        self._events: collections.deque[MuxEvent] = collections.deque()
        self._out: list[bytes | memoryview] = []
        self._error: MuxError | None = None
        self._eof = False
        # live sessions: id -> network (4.34's session map)
        self._live: dict[int, Network] = {}
        # sessions we may send on: id -> destination of a New still to send (client), or None
        self._sendable: dict[int, Destination | None] = {}
        self._send_network: dict[int, Network] = {}
        self._count = 0
        # the data block being read
        self._block: _Block | None = None
        self._block_session = 0
        self._block_left = -1  # -1: its DataLen is still to be read
        self._frames_received = 0
        self._frames_sent = 0
        self._unknown_frames = 0
        self._refused_packets = 0

    # -- state --------------------------------------------------------------------
    @property
    def active_sessions(self) -> int:
        """Sessions whose data is delivered (4.34's session map size)."""
        return len(self._live)

    @property
    def total_sessions(self) -> int:
        """Sessions this client has opened on this connection (New frames received, on a
        server)."""
        return self._count

    @property
    def failed(self) -> bool:
        """True once the peer broke the protocol (the connection is terminal)."""
        return self._error is not None

    def is_live(self, session_id: int) -> bool:
        """Whether ``session_id`` still receives data."""
        return session_id in self._live

    def is_sendable(self, session_id: int) -> bool:
        """Whether we may still send on ``session_id`` (no End sent yet)."""
        return session_id in self._sendable

    def live_session_ids(self) -> list[int]:
        """The live session ids."""
        return list(self._live)

    def sendable_session_ids(self) -> list[int]:
        """The ids we have not sent End on."""
        return list(self._sendable)

    def statistics(self) -> MuxStatistics:
        """A snapshot of the counters."""
        return MuxStatistics(
            frames_received=self._frames_received,
            frames_sent=self._frames_sent,
            active_sessions=len(self._live),
            total_sessions=self._count,
            unknown_session_frames=self._unknown_frames,
            refused_packets=self._refused_packets,
        )

    # -- sending --------------------------------------------------------------------
    def open_session(self, destination: Destination) -> int:
        """Client: allocate the next session id (1, 2, ...) towards ``destination``.

        Nothing is sent until :meth:`send_data` (the New frame goes with the first data,
        or alone for ``b""``). Raises LocalProtocolError on a server, after the 65535th
        session or once the connection failed.
        """
        if self.role is not MuxRole.CLIENT:
            raise LocalProtocolError("mux: only a client opens sessions")
        if self._error is not None or self._eof:
            raise LocalProtocolError("mux: the connection is over")
        if self._count >= 0xFFFF:
            raise LocalProtocolError("mux: session ids exhausted")
        _encode_address(destination.address)  # refuse what could never be sent
        self._count += 1
        session_id = self._count
        self._live[session_id] = destination.network
        self._sendable[session_id] = destination
        self._send_network[session_id] = destination.network
        return session_id

    def send_data(self, session_id: int, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` on ``session_id``: stream data in blocks of at most 8 KiB, a
        packet session's ``data`` as one datagram; ``b""`` sends a frame without data
        (a client's New that had no first payload in time). Flush afterwards.

        Raises LocalProtocolError for a session we ended or never had, or a datagram
        above 65535 bytes.
        """
        if session_id not in self._sendable:
            raise LocalProtocolError(f"mux: session {session_id} is not open for sending")
        new_dest = self._sendable[session_id]
        if new_dest is not None:
            self._sendable[session_id] = None
        out = self._out
        if not data:
            out.append(encode_frame(self._meta(session_id, new_dest)))
            self._frames_sent += 1
            return
        if self._send_network[session_id] is Network.UDP:
            out.append(encode_frame(self._meta(session_id, new_dest), data))
            self._frames_sent += 1
            return
        if not isinstance(data, bytes):
            data = bytes(data)  # the caller may reuse its buffer; queued views must not move
        view = memoryview(data)
        keep_head = bytes((0, 4, session_id >> 8 & 0xFF, session_id & 0xFF, _KEEP, _OPT_DATA))
        total = len(view)
        for start in range(0, total, STREAM_CHUNK_BYTES):
            piece = view[start : start + STREAM_CHUNK_BYTES]
            if new_dest is not None:
                out.append(encode_frame(self._meta(session_id, new_dest), piece))
                new_dest = None
            else:
                # header and a view of the data: data_to_send joins them in one copy
                out.append(keep_head + len(piece).to_bytes(2, "big"))
                out.append(piece)
            self._frames_sent += 1

    def _meta(self, session_id: int, new_dest: Destination | None) -> FrameMetadata:
        if new_dest is not None:
            return FrameMetadata(session_id=session_id, status=MuxStatus.NEW, destination=new_dest)
        return FrameMetadata(session_id=session_id, status=MuxStatus.KEEP)

    def send_end(self, session_id: int, *, error: bool = False) -> None:
        """End ``session_id`` (with the E option when ``error``) and forget it: its data
        is no longer delivered. A no-op when End was already sent. Flush afterwards.

        A client session whose New was never sent gets its New first, as 4.34 writes
        the first payload (or an empty New) before it can close.
        """
        if session_id not in self._sendable:
            return
        if self._sendable[session_id] is not None:
            self.send_data(session_id, b"")
        del self._sendable[session_id]
        del self._send_network[session_id]
        self._live.pop(session_id, None)
        self._queue_end(session_id, error)

    def stop_sending(self, session_id: int) -> None:
        """Never send on ``session_id`` again, not even End (its data is still
        delivered): 4.34's reverse bridge never answers the portal's control session,
        not even when the connection ends."""
        self._sendable.pop(session_id, None)
        self._send_network.pop(session_id, None)

    def _queue_end(self, session_id: int, error: bool) -> None:
        self._out.append(
            bytes(
                (0, 4, session_id >> 8 & 0xFF, session_id & 0xFF, _END, _OPT_ERROR if error else 0)
            )
        )
        self._frames_sent += 1

    def data_to_send(self) -> bytes:
        """Bytes to write to the underlying stream (then cleared)."""
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        return out

    # -- receiving ------------------------------------------------------------------
    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the underlying stream; ``b""`` means it ended.

        Events (and End replies) are queued; a protocol violation is raised later by
        :meth:`next_event`. Input after the end or an error is ignored.
        """
        if self._error is not None or self._eof:
            return
        if not data:
            self._eof = True
            truncated = bool(self._buf) or self._block is not None
            self._buf.clear()
            self._live.clear()
            self._events.append(ConnectionEnded(truncated=truncated))
            return
        self._buf += data
        try:
            self._parse()
        except MuxError as exc:
            self._error = exc
            self._buf.clear()
            self._block = None

    def next_event(self) -> MuxEvent | None:
        """The next event, or None. Raises MuxError once the events queued before a
        protocol violation are drained (and on every later call)."""
        if self._events:
            return self._events.popleft()
        if self._error is not None:
            raise self._error
        return None

    def _parse(self) -> None:
        buf = self._buf
        end = len(buf)
        pos = 0
        events = self._events
        try:
            while pos < end:
                block = self._block
                if block is None:
                    if end - pos < _U16:
                        break
                    meta_len = buf[pos] << 8 | buf[pos + 1]
                    if meta_len > MAX_METADATA_BYTES:
                        raise MuxError(f"mux: metadata length {meta_len}")
                    if end - pos < _U16 + meta_len:
                        break
                    start = pos + _U16
                    status = buf[start + 2] if meta_len >= _MIN_METADATA_BYTES else 0
                    if status in _FAST_STATUSES:
                        # Keep / End / KeepAlive: no enum or dataclass on the bulk path.
                        self._on_frame(
                            buf[start] << 8 | buf[start + 1], status, buf[start + 3], None
                        )
                    else:
                        meta = decode_metadata(buf[start : start + meta_len])
                        self._on_frame(
                            meta.session_id, int(meta.status), int(meta.option), meta.destination
                        )
                    pos = start + meta_len
                    self._frames_received += 1
                    continue
                left = self._block_left
                if left < 0:
                    if end - pos < _U16:
                        break
                    left = self._block_left = buf[pos] << 8 | buf[pos + 1]
                    pos += _U16
                    if block is _Block.PACKET and left > MAX_PACKET_BYTES:
                        block = self._block = _Block.REFUSE
                        self._refuse_packet(self._block_session)
                if block is _Block.STREAM:
                    take = min(left, end - pos)
                    if take:
                        events.append(
                            DataReceived(
                                session_id=self._block_session, data=bytes(buf[pos : pos + take])
                            )
                        )
                        pos += take
                        left -= take
                elif block is _Block.PACKET:
                    if end - pos < left:
                        break
                    if left:
                        events.append(
                            DataReceived(
                                session_id=self._block_session, data=bytes(buf[pos : pos + left])
                            )
                        )
                    pos += left
                    left = 0
                else:
                    take = min(left, end - pos)
                    pos += take
                    left -= take
                self._block_left = left
                if left == 0:
                    self._block = None
        finally:
            del buf[:pos]

    def _on_frame(self, sid: int, status: int, option: int, dest: Destination | None) -> None:
        has_data = bool(option & _OPT_DATA)
        block = _Block.DISCARD
        if status == _KEEP:
            network = self._live.get(sid)
            if network is not None:
                block = _Block.PACKET if network is Network.UDP else _Block.STREAM
            elif has_data:
                # 4.34 tells the peer to close a session it does not know; never for a
                # Keep without data, so two peers cannot ping-pong Ends.
                self._unknown_frames += 1
                self._queue_end(sid, False)
        elif status == _NEW:
            if self.role is MuxRole.SERVER and dest is not None:  # set on every New
                if sid in self._live:
                    # 4.34 replaces the map entry; the old session is orphaned. v2py
                    # ends it for its owner so that nothing keeps running unseen.
                    self._events.append(SessionEnded(session_id=sid, error=True))
                self._count += 1
                self._live[sid] = dest.network
                self._sendable[sid] = None
                self._send_network[sid] = dest.network
                self._events.append(SessionOpened(session_id=sid, destination=dest))
                block = _Block.PACKET if dest.network is Network.UDP else _Block.STREAM
        elif status == _END and sid in self._live:
            del self._live[sid]
            self._events.append(SessionEnded(session_id=sid, error=bool(option & _OPT_ERROR)))
        # KEEP_ALIVE: ignored, data discarded
        if has_data:
            self._block = block
            self._block_session = sid
            self._block_left = -1

    def _refuse_packet(self, sid: int) -> None:
        self._refused_packets += 1
        if sid in self._live:
            del self._live[sid]
            self._events.append(SessionEnded(session_id=sid, error=True))
        if sid in self._sendable:
            del self._sendable[sid]
            del self._send_network[sid]
            self._queue_end(sid, True)
