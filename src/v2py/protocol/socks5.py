"""SOCKS4/4a/5 server codec and SOCKS5 client codec, sans I/O
(docs/spec/socks-sniffing-freedom.md section 1).

Matches v2ray-core 4.34 ``proxy/socks/protocol.go`` on the wire: the method reply must
name exactly the configured method, RFC 1929 ignores the sub-negotiation version byte,
Tor's RESOLVE commands count as CONNECT, and every refusal is answered with the byte
sequence 4.34 sends before closing.

Theory of operation
-------------------
``Socks5ServerConnection`` parses greedily inside :meth:`receive_data` and queues
events and reply bytes. A refusal queues its reply bytes and moves to ``ERROR``;
:meth:`next_event` then raises the :class:`~v2py.errors.Socks5Error` once the events
queued before it are drained. The shell flushes :meth:`data_to_send` and closes.

=============  ===========================================  ===============
state          input                                        next state
=============  ===========================================  ===============
GREETING       ``05 n methods`` offering the expected one   AUTH / REQUEST
GREETING       ``05 n methods`` without it (reply 05 FF)     ERROR
GREETING       ``04 01 ...`` complete, noauth               AWAIT_REPLY
GREETING       ``04 ..`` under password auth / other cmd    ERROR
GREETING       any other version                            ERROR
AUTH           ``ver ulen user plen pass`` matching         REQUEST
AUTH           non-matching (reply 01 FF)                   ERROR
REQUEST        CONNECT / RESOLVE / UDP (enabled) + address  AWAIT_REPLY
REQUEST        BIND, UDP disabled, unknown cmd (reply 07)   ERROR
AWAIT_REPLY    :meth:`accept`                               ESTABLISHED
AWAIT_REPLY    :meth:`reject`                               REJECTED
AWAIT_REPLY,   bytes -> ``DataReceived``;                   same /
ESTABLISHED    EOF -> ``StreamEnded``                       CLOSED
handshake      EOF                                          ERROR
=============  ===========================================  ===============
"""

from __future__ import annotations

import collections
import enum
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from v2py.common.net import canonical_ip, ip_text, pack_ip
from v2py.errors import LocalProtocolError, Socks5Error

__all__ = [
    "AddressType",
    "AuthMethod",
    "DataReceived",
    "ReplyReceived",
    "RequestReceived",
    "Socks4Reply",
    "Socks5ClientConnection",
    "Socks5ClientState",
    "Socks5Command",
    "Socks5Event",
    "Socks5Reply",
    "Socks5ServerConnection",
    "Socks5State",
    "StreamEnded",
    "UdpDatagram",
    "decode_address",
    "decode_udp_datagram",
    "encode_address",
    "encode_client_greeting",
    "encode_client_request",
    "encode_udp_datagram",
    "udp_associate_reply_host",
]

SOCKS4_VERSION = 4
SOCKS5_VERSION = 5
RFC1929_VERSION = 1
#: Longest SOCKS4 user id / 4a domain accepted (v2ray reads NUL-terminated fields into
#: one 2048-byte buffer and fails with "buffer overrun" beyond it).
SOCKS4_FIELD_MAX_BYTES = 2047
#: The UDP header is at least RSV(2) FRAG ATYP and one more byte.
UDP_HEADER_MIN_BYTES = 5
#: 4.34 receives each client datagram into one 2048-byte buffer (transport/internet/
#: udp/hub.go): a longer one is cut there, header included, so an IPv4-addressed
#: payload goes on with at most 2,038 bytes [verified against the binary].
UDP_READ_MAX_BYTES = 2048
_DOMAIN_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")


class AuthMethod(enum.IntEnum):
    """SOCKS5 method identifiers (RFC 1928 section 3)."""

    NO_AUTH = 0x00
    PASSWORD = 0x02
    NO_ACCEPTABLE = 0xFF


class Socks5Command(enum.IntEnum):
    """SOCKS5 CMD values, including Tor's resolve extensions."""

    CONNECT = 0x01
    BIND = 0x02
    UDP_ASSOCIATE = 0x03
    TOR_RESOLVE = 0xF0
    TOR_RESOLVE_PTR = 0xF1


class Socks5Reply(enum.IntEnum):
    """SOCKS5 REP values (RFC 1928 section 6)."""

    SUCCEEDED = 0x00
    GENERAL_FAILURE = 0x01
    CONNECTION_NOT_ALLOWED = 0x02
    NETWORK_UNREACHABLE = 0x03
    HOST_UNREACHABLE = 0x04
    CONNECTION_REFUSED = 0x05
    TTL_EXPIRED = 0x06
    COMMAND_NOT_SUPPORTED = 0x07
    ADDRESS_TYPE_NOT_SUPPORTED = 0x08


class Socks4Reply(enum.IntEnum):
    """SOCKS4 CD values of a reply."""

    GRANTED = 0x5A
    REJECTED = 0x5B


class AddressType(enum.IntEnum):
    """SOCKS5 ATYP values."""

    IPV4 = 0x01
    DOMAIN = 0x03
    IPV6 = 0x04


class Socks5State(enum.Enum):
    """States of :class:`Socks5ServerConnection` (see the module's transition table)."""

    GREETING = "greeting"
    AUTH = "auth"
    REQUEST = "request"
    AWAIT_REPLY = "await_reply"
    ESTABLISHED = "established"
    REJECTED = "rejected"
    CLOSED = "closed"
    ERROR = "error"


# -- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Socks5Event:
    """Base class of SOCKS server events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived(Socks5Event):
    """The client finished its handshake and asks for ``command`` to ``address:port``.

    ``version`` is 4 (SOCKS4/4a) or 5. ``command`` is CONNECT (also for Tor RESOLVE
    commands, as 4.34 treats them) or UDP_ASSOCIATE. ``username`` is the RFC 1929 user
    ("" without password auth). Answer with :meth:`Socks5ServerConnection.accept`.
    """

    version: int
    command: Socks5Command
    address: str
    port: int
    username: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReceived(Socks5Event):
    """Client bytes after the request (payload to relay, or to discard after UDP ASSOCIATE)."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEnded(Socks5Event):
    """The client finished sending after a completed handshake."""


# -- addresses ------------------------------------------------------------------------


def encode_address(host: str, port: int) -> bytes:
    """ATYP + ADDR + PORT for ``host`` (IPv4/IPv6 literal or domain) and ``port``.

    Raises ValueError for a port outside 0..65535 or a domain longer than 255 bytes.
    """
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port out of range: {port}")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    packed = pack_ip(bare)
    if packed is None:
        name = host.encode("utf-8", "surrogateescape")
        if not 0 < len(name) <= 0xFF:
            raise ValueError(f"domain length out of range: {host!r}") from None
        return bytes((AddressType.DOMAIN, len(name))) + name + port.to_bytes(2, "big")
    atyp = AddressType.IPV4 if len(packed) == 4 else AddressType.IPV6
    return bytes((atyp,)) + packed + port.to_bytes(2, "big")


def decode_address(
    buf: bytes | bytearray | memoryview, offset: int = 0
) -> tuple[str, int, int] | None:
    """Parse ATYP + ADDR + PORT at ``offset``; return ``(host, port, end_offset)``.

    Returns None when more bytes are needed. A domain that spells an IP literal is
    returned as that IP (v2ray ``ParseAddress``). Raises Socks5Error for an unknown
    ATYP, an empty domain or a domain with characters outside ``[A-Za-z0-9._-]``.
    """
    if len(buf) <= offset:
        return None
    atyp = buf[offset]
    if atyp == AddressType.IPV4:
        end = offset + 1 + 4
        if len(buf) < end + 2:
            return None
        host = ip_text(buf[offset + 1 : end])
    elif atyp == AddressType.IPV6:
        end = offset + 1 + 16
        if len(buf) < end + 2:
            return None
        host = ip_text(buf[offset + 1 : end])
    elif atyp == AddressType.DOMAIN:
        if len(buf) < offset + 2:
            return None
        size = buf[offset + 1]
        end = offset + 2 + size
        if len(buf) < end + 2:
            return None
        host = _decode_domain(bytes(buf[offset + 2 : end]))
    else:
        raise Socks5Error(f"unknown address type {atyp:#x}", reply_code=None)
    port = int.from_bytes(buf[end : end + 2], "big")
    return host, port, end + 2


def _decode_domain(raw: bytes) -> str:
    if not raw:
        raise Socks5Error("empty domain name")
    text = raw.decode("latin-1")
    ip = canonical_ip(text)
    if ip is not None:
        return ip
    if not _DOMAIN_CHARS.issuperset(raw):
        raise Socks5Error(f"invalid domain name: {text!r}")
    return text


def udp_associate_reply_host(
    *, configured_ip: str | None, client_host: str, listen_host: str
) -> str:
    """The address a UDP ASSOCIATE reply announces (spec section 1.2 step 4).

    The configured ``ip`` when set; else the client's own address when it is the
    loopback 127.0.0.1 or ::1; else the inbound's listen address.
    """
    if configured_ip:
        return configured_ip
    if client_host in ("127.0.0.1", "::1"):
        return client_host
    return listen_host


# -- UDP datagrams --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class UdpDatagram:
    """One SOCKS5 UDP relay datagram: destination (or origin) plus payload."""

    address: str
    port: int
    payload: bytes


def encode_udp_datagram(address: str, port: int, payload: bytes | bytearray | memoryview) -> bytes:
    """``RSV RSV FRAG=0`` + ATYP/ADDR/PORT + payload (spec section 1.4).

    Replies carry the destination the client originally asked for. Raises ValueError
    as :func:`encode_address`.
    """
    return b"\x00\x00\x00" + encode_address(address, port) + bytes(payload)


def decode_udp_datagram(data: bytes | bytearray | memoryview) -> UdpDatagram | None:
    """Parse one client datagram, or return None when it must be dropped.

    Dropped: shorter than 5 bytes, FRAG != 0 (fragmentation is unsupported, as in
    4.34), a truncated or malformed address. RSV is not checked. Never raises.
    Bytes past :data:`UDP_READ_MAX_BYTES` are cut off, as 4.34 cuts them.
    """
    data = data[:UDP_READ_MAX_BYTES]
    if len(data) < UDP_HEADER_MIN_BYTES or data[2] != 0:
        return None
    try:
        parsed = decode_address(data, 3)
    except Socks5Error:
        return None
    if parsed is None:
        return None
    host, port, end = parsed
    return UdpDatagram(address=host, port=port, payload=bytes(data[end:]))


# -- the server core ------------------------------------------------------------------


class Socks5ServerConnection:
    """Server side of one SOCKS4/4a/5 TCP connection (spec section 1.2).

    Parameters:
        auth_method: ``AuthMethod.NO_AUTH`` or ``AuthMethod.PASSWORD``: the one method
            the client must offer.
        accounts: user -> password for RFC 1929 (used with PASSWORD).
        udp_enabled: whether UDP ASSOCIATE is accepted (else reply 07).

    Drive it with :meth:`receive_data` (``b""`` is EOF), :meth:`next_event` and
    :meth:`data_to_send`. Remote errors surface as :class:`Socks5Error` from
    :meth:`next_event`; flush :meth:`data_to_send` before closing, it may hold the
    refusal reply.
    """

    def __init__(
        self,
        *,
        auth_method: AuthMethod = AuthMethod.NO_AUTH,
        accounts: Mapping[str, str] | None = None,
        udp_enabled: bool = False,
    ) -> None:
        if auth_method not in (AuthMethod.NO_AUTH, AuthMethod.PASSWORD):
            raise ValueError(f"unsupported auth method: {auth_method!r}")
        self._auth_method = auth_method
        self._accounts = dict(accounts or {})
        self._udp_enabled = udp_enabled
        self._state = Socks5State.GREETING
        self._buf = bytearray()
        self._out = bytearray()
        self._events: collections.deque[Socks5Event] = collections.deque()
        self._error: Socks5Error | None = None
        self._version = 0
        self._username = ""

    @property
    def state(self) -> Socks5State:
        """Current state (see the transition table)."""
        return self._state

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the client; ``b""`` means EOF. Flush afterwards.

        Raises LocalProtocolError when data arrives after EOF was fed. Peer errors are
        reported by :meth:`next_event`.
        """
        state = self._state
        if state in (Socks5State.AWAIT_REPLY, Socks5State.ESTABLISHED):
            if data:
                self._events.append(DataReceived(data=bytes(data)))
            else:
                self._state = Socks5State.CLOSED
                self._events.append(StreamEnded())
            return
        if state in (Socks5State.ERROR, Socks5State.REJECTED):
            return
        if state is Socks5State.CLOSED:
            if data:
                raise LocalProtocolError("data fed after EOF")
            return
        if not data:
            self._fail(Socks5Error("connection closed during the handshake"))
            return
        self._buf += data
        try:
            self._parse()
        except Socks5Error as exc:
            self._fail(exc)

    def next_event(self) -> Socks5Event | None:
        """Next event, or None when more input is needed.

        Raises Socks5Error (once the queue is empty) after the peer broke the protocol;
        the error's ``reply_code`` is what was queued for sending, if anything.
        """
        if self._events:
            return self._events.popleft()
        if self._error is not None:
            raise self._error
        return None

    def data_to_send(self) -> bytes:
        """Bytes to write to the client now (replies); empties the buffer."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def accept(self, bind_address: str = "0.0.0.0", bind_port: int = 0) -> None:
        """Answer the request with success. Flush afterwards.

        SOCKS5 announces ``bind_address:bind_port`` (the listen address for CONNECT,
        :func:`udp_associate_reply_host` for UDP); SOCKS4 always answers
        ``00 5A 0000 00000000`` as 4.34 does. Raises LocalProtocolError unless a
        request is awaiting its reply.
        """
        if self._state is not Socks5State.AWAIT_REPLY:
            raise LocalProtocolError(f"accept() in state {self._state.name}")
        if self._version == SOCKS4_VERSION:
            self._out += _socks4_reply(Socks4Reply.GRANTED)
        else:
            self._out += _socks5_reply(Socks5Reply.SUCCEEDED, bind_address, bind_port)
        self._state = Socks5State.ESTABLISHED

    def reject(self, reply_code: int = Socks5Reply.GENERAL_FAILURE) -> None:
        """Refuse the request with ``reply_code`` (SOCKS4: always REJECTED). Flush
        afterwards, then close. Raises LocalProtocolError unless a request is pending."""
        if self._state is not Socks5State.AWAIT_REPLY:
            raise LocalProtocolError(f"reject() in state {self._state.name}")
        if self._version == SOCKS4_VERSION:
            self._out += _socks4_reply(Socks4Reply.REJECTED)
        else:
            self._out += _socks5_reply(reply_code, "0.0.0.0", 0)
        self._state = Socks5State.REJECTED

    # -- internals --------------------------------------------------------------------
    def _fail(self, exc: Socks5Error) -> None:
        self._state = Socks5State.ERROR
        self._error = exc
        self._buf.clear()

    def _parse(self) -> None:
        while True:
            state = self._state
            if state is Socks5State.GREETING:
                progressed = self._parse_greeting()
            elif state is Socks5State.AUTH:
                progressed = self._parse_auth()
            elif state is Socks5State.REQUEST:
                progressed = self._parse_request()
            else:
                progressed = False
            if not progressed:
                break
        if self._state is Socks5State.AWAIT_REPLY and self._buf:
            # A client may pipeline payload behind its request; it belongs to the relay.
            self._events.append(DataReceived(data=bytes(self._buf)))
            self._buf.clear()

    def _parse_greeting(self) -> bool:
        buf = self._buf
        if len(buf) < 2:
            return False
        version = buf[0]
        if version == SOCKS5_VERSION:
            count = buf[1]
            if len(buf) < 2 + count:
                return False
            methods = buf[2 : 2 + count]
            del buf[: 2 + count]
            self._version = SOCKS5_VERSION
            expected = self._auth_method
            if expected not in methods:
                self._out += bytes((SOCKS5_VERSION, AuthMethod.NO_ACCEPTABLE))
                raise Socks5Error("client offered no acceptable auth method")
            self._out += bytes((SOCKS5_VERSION, expected))
            self._state = (
                Socks5State.AUTH if expected == AuthMethod.PASSWORD else Socks5State.REQUEST
            )
            return True
        if version == SOCKS4_VERSION:
            return self._parse_socks4()
        raise Socks5Error(f"unknown SOCKS version {version}")

    def _parse_socks4(self) -> bool:
        buf = self._buf
        if self._auth_method == AuthMethod.PASSWORD:
            # 4.34 refuses SOCKS4 outright when password auth is configured.
            self._out += _socks4_reply(Socks4Reply.REJECTED)
            raise Socks5Error("SOCKS4 is not allowed when auth is required")
        head = 8  # VN CD DSTPORT(2) DSTIP(4)
        if len(buf) < head:
            return False
        user_end = self._find_nul(head)
        if user_end is None:
            return False
        end = user_end + 1
        ip = bytes(buf[4:8])
        if ip[0] == 0:
            domain_end = self._find_nul(end)
            if domain_end is None:
                return False
            host = _decode_domain(bytes(buf[end:domain_end]))
            end = domain_end + 1
        else:
            host = ip_text(ip)
        command = buf[1]
        port = int.from_bytes(buf[2:4], "big")
        del buf[:end]
        self._version = SOCKS4_VERSION
        if command != Socks5Command.CONNECT:
            self._out += _socks4_reply(Socks4Reply.REJECTED)
            raise Socks5Error(f"unsupported SOCKS4 command {command}")
        self._state = Socks5State.AWAIT_REPLY
        self._events.append(
            RequestReceived(
                version=SOCKS4_VERSION, command=Socks5Command.CONNECT, address=host, port=port
            )
        )
        return True

    def _find_nul(self, start: int) -> int | None:
        """Index of the NUL ending the field that starts at ``start``, or None.

        Rescanning from ``start`` stays cheap: the field is capped at 2 KiB and
        ``bytearray.find`` is a memchr.
        """
        buf = self._buf
        index = buf.find(0, start, start + SOCKS4_FIELD_MAX_BYTES + 1)
        if index < 0:
            if len(buf) - start > SOCKS4_FIELD_MAX_BYTES:
                raise Socks5Error("SOCKS4 field too long")
            return None
        return index

    def _parse_auth(self) -> bool:
        buf = self._buf
        # The sub-negotiation version byte is not checked (4.34 compatibility).
        if len(buf) < 2:
            return False
        ulen = buf[1]
        if len(buf) < 2 + ulen + 1:
            return False
        plen = buf[2 + ulen]
        end = 3 + ulen + plen
        if len(buf) < end:
            return False
        username = bytes(buf[2 : 2 + ulen]).decode("utf-8", "surrogateescape")
        password = bytes(buf[3 + ulen : end]).decode("utf-8", "surrogateescape")
        del buf[:end]
        stored = self._accounts.get(username)
        if stored is None or not hmac.compare_digest(
            stored.encode("utf-8", "surrogateescape"), password.encode("utf-8", "surrogateescape")
        ):
            self._out += bytes((RFC1929_VERSION, 0xFF))
            raise Socks5Error("wrong username or password")
        self._out += bytes((RFC1929_VERSION, 0x00))
        self._username = username
        self._state = Socks5State.REQUEST
        return True

    def _parse_request(self) -> bool:
        buf = self._buf
        if len(buf) < 3:
            return False
        command = buf[1]
        if command in (
            Socks5Command.CONNECT,
            Socks5Command.TOR_RESOLVE,
            Socks5Command.TOR_RESOLVE_PTR,
        ):
            kind = Socks5Command.CONNECT
        elif command == Socks5Command.UDP_ASSOCIATE and self._udp_enabled:
            kind = Socks5Command.UDP_ASSOCIATE
        else:
            # 4.34 refuses right after VER CMD RSV, before reading the address.
            self._out += _socks5_reply(Socks5Reply.COMMAND_NOT_SUPPORTED, "0.0.0.0", 0)
            raise Socks5Error(
                f"unsupported SOCKS5 command {command}",
                reply_code=Socks5Reply.COMMAND_NOT_SUPPORTED,
            )
        parsed = decode_address(buf, 3)
        if parsed is None:
            return False
        host, port, end = parsed
        del buf[:end]
        self._state = Socks5State.AWAIT_REPLY
        self._events.append(
            RequestReceived(
                version=SOCKS5_VERSION,
                command=kind,
                address=host,
                port=port,
                username=self._username,
            )
        )
        return True


def _socks5_reply(code: int, address: str, port: int) -> bytes:
    return bytes((SOCKS5_VERSION, code, 0)) + encode_address(address, port)


def _socks4_reply(code: Socks4Reply) -> bytes:
    return bytes((0, code)) + b"\x00" * 6


# -- the client core ------------------------------------------------------------------
#
# Theory of operation: 4.34's SOCKS outbound (``proxy/socks/protocol.go``
# ``ClientHandshake``) offers exactly one method -- 02 (username/password) when the
# server entry has a user, else 00 -- and writes the RFC 1929 sub-negotiation in the
# same write as the greeting, without waiting for the method reply. The request
# (CONNECT or UDP ASSOCIATE) goes out only after the method reply (and the auth
# reply) are read. Replies are checked as 4.34 checks them: the method reply's
# version and method; of the auth reply only the status byte; of the request reply
# only REP, then its address is read with the same parser as a request's.
#
# =============  ==================================================  =============
# state          input                                               next state
# =============  ==================================================  =============
# METHOD         ``05 <offered method>`` (password)                  AUTH
# METHOD         ``05 <offered method>`` (no auth): request queued   REPLY
# METHOD         other version / other method                        ERROR
# AUTH           ``?? 00``: request queued                           REPLY
# AUTH           ``?? nn`` (nn != 0)                                 ERROR
# REPLY          ``05 00 ?? ATYP ADDR PORT``                         ESTABLISHED
# REPLY          REP != 0, bad ATYP, bad domain                      ERROR
# any but        EOF                                                 ERROR
# ESTABLISHED
# =============  ==================================================  =============


class Socks5ClientState(enum.Enum):
    """States of :class:`Socks5ClientConnection` (see the table above)."""

    METHOD = "method"
    AUTH = "auth"
    REPLY = "reply"
    ESTABLISHED = "established"
    ERROR = "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyReceived(Socks5Event):
    """The server granted the request; ``address:port`` is its BND.ADDR/BND.PORT
    (for UDP ASSOCIATE: where to send datagrams)."""

    address: str
    port: int


#: Longest RFC 1929 user name or password (one length byte each).
RFC1929_FIELD_MAX_BYTES = 0xFF


def encode_client_greeting(username: str | None, password: str = "") -> bytes:
    """What 4.34's client writes first: the greeting offering one method, followed
    (with a user) by the RFC 1929 request in the same write.

    Raises ValueError for a user name or password longer than 255 bytes.
    """
    if username is None:
        return bytes((SOCKS5_VERSION, 1, AuthMethod.NO_AUTH))
    user = username.encode()
    secret = password.encode()
    if len(user) > RFC1929_FIELD_MAX_BYTES or len(secret) > RFC1929_FIELD_MAX_BYTES:
        raise ValueError("SOCKS user name and password are limited to 255 bytes")
    return (
        bytes((SOCKS5_VERSION, 1, AuthMethod.PASSWORD, RFC1929_VERSION, len(user)))
        + user
        + bytes((len(secret),))
        + secret
    )


def encode_client_request(command: Socks5Command, address: str, port: int) -> bytes:
    """``05 CMD 00`` + ATYP/ADDR/PORT. Raises ValueError as :func:`encode_address`."""
    return bytes((SOCKS5_VERSION, command, 0)) + encode_address(address, port)


class Socks5ClientConnection:
    """Client side of one SOCKS5 handshake, as 4.34's SOCKS outbound speaks it.

    Parameters:
        command: ``CONNECT`` or ``UDP_ASSOCIATE``.
        address, port: the destination named in the request (for UDP ASSOCIATE
            4.34 names the session's destination too).
        username, password: RFC 1929 credentials; ``username=None`` offers no auth.

    The greeting is queued at construction: flush :meth:`data_to_send` first. Then
    feed the server's bytes with :meth:`receive_data` (``b""`` is EOF) and flush
    again; :meth:`next_event` gives one :class:`ReplyReceived`, after which
    :attr:`trailing_data` holds what the server sent past its reply (tunnel data).
    Raises ValueError at construction for an address or credentials that cannot be
    encoded.
    """

    def __init__(
        self,
        *,
        command: Socks5Command,
        address: str,
        port: int,
        username: str | None = None,
        password: str = "",
    ) -> None:
        if command not in (Socks5Command.CONNECT, Socks5Command.UDP_ASSOCIATE):
            raise ValueError(f"unsupported client command: {command!r}")
        self._method = AuthMethod.NO_AUTH if username is None else AuthMethod.PASSWORD
        self._request = encode_client_request(command, address, port)
        self._out = bytearray(encode_client_greeting(username, password))
        self._buf = bytearray()
        self._state = Socks5ClientState.METHOD
        self._events: collections.deque[Socks5Event] = collections.deque()
        self._error: Socks5Error | None = None

    @property
    def state(self) -> Socks5ClientState:
        """Current state (see the transition table)."""
        return self._state

    @property
    def trailing_data(self) -> bytes:
        """Bytes the server sent after its reply (empty before ESTABLISHED)."""
        if self._state is not Socks5ClientState.ESTABLISHED:
            return b""
        return bytes(self._buf)

    def data_to_send(self) -> bytes:
        """Bytes to write to the server now; empties the buffer."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the server; ``b""`` means EOF. Flush afterwards.

        Peer errors are reported by :meth:`next_event`; after ESTABLISHED further
        bytes are kept in :attr:`trailing_data`.
        """
        if self._state is Socks5ClientState.ERROR:
            return
        if self._state is Socks5ClientState.ESTABLISHED:
            self._buf += data
            return
        if not data:
            self._fail(Socks5Error("connection closed during the handshake"))
            return
        self._buf += data
        try:
            while self._step():
                pass
        except Socks5Error as exc:
            self._fail(exc)

    def next_event(self) -> Socks5Event | None:
        """:class:`ReplyReceived` once, else None while more input is needed.

        Raises Socks5Error once the server broke the protocol or refused.
        """
        if self._events:
            return self._events.popleft()
        if self._error is not None:
            raise self._error
        return None

    def _fail(self, exc: Socks5Error) -> None:
        self._state = Socks5ClientState.ERROR
        self._error = exc
        self._buf.clear()

    def _step(self) -> bool:
        buf = self._buf
        state = self._state
        if state is Socks5ClientState.METHOD:
            if len(buf) < 2:
                return False
            if buf[0] != SOCKS5_VERSION:
                raise Socks5Error(f"unexpected server version: {buf[0]}")
            if buf[1] != self._method:
                raise Socks5Error("auth method not supported.")
            del buf[:2]
            if self._method is AuthMethod.PASSWORD:
                self._state = Socks5ClientState.AUTH
            else:
                self._send_request()
            return True
        if state is Socks5ClientState.AUTH:
            if len(buf) < 2:
                return False
            if buf[1] != 0:
                raise Socks5Error(f"server rejects account: {buf[1]}")
            del buf[:2]
            self._send_request()
            return True
        if state is Socks5ClientState.REPLY:
            if len(buf) < 3:
                return False
            if buf[1] != Socks5Reply.SUCCEEDED:
                raise Socks5Error(f"server rejects request: {buf[1]}", reply_code=buf[1])
            parsed = decode_address(buf, 3)
            if parsed is None:
                return False
            host, port, end = parsed
            del buf[:end]
            self._state = Socks5ClientState.ESTABLISHED
            self._events.append(ReplyReceived(address=host, port=port))
        return False

    def _send_request(self) -> None:
        self._out += self._request
        self._state = Socks5ClientState.REPLY
