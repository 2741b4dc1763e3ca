"""Trojan, both sides (v2ray-core 4.34 ``proxy/trojan/protocol.go``, ``server.go``), pure.

* Request header: the user's key (56 lower-case hex digits of SHA-224 of the password),
  CRLF, the command (1 TCP, 3 UDP), the address SOCKS5-style (type 1 IPv4, 3 domain
  with a length byte, 4 IPv6) and the port, CRLF. The client sends it with its first
  payload, never alone (4.34's ``ConnWriter`` writes it on the first ``Write``).
* After it, a TCP stream is raw both ways (no response header, no end marker).
* Over UDP every packet, both ways, is the address and port, a 2-byte big-endian length,
  CRLF and the payload; writers cut a payload into packets of at most 8192 bytes and
  readers refuse a longer one ("oversize payload").
* The server decides on its *first read* (4.34 ``Server.Process``): fewer than 58 bytes
  or no CR at byte 56 is "not trojan protocol", an unknown key "not a valid user"; the
  rest of the header may come in later reads. Neither CRLF is otherwise checked (4.34
  reads them and throws them away); any command but 3 is TCP.

Error reasons are 4.34's texts (what its access log prints after the
``v2ray.com/core/proxy/trojan: `` prefix, which the shell adds).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass

from v2py.common.net import canonical_ip, ip_text
from v2py.errors import printable
from v2py.protocol.socks5 import encode_address

__all__ = [
    "COMMAND_TCP",
    "COMMAND_UDP",
    "KEY_BYTES",
    "MAX_PACKET_BYTES",
    "PacketReader",
    "RequestDecoder",
    "TrojanPacket",
    "TrojanRequest",
    "encode_packet",
    "encode_request",
    "password_key",
]

COMMAND_TCP = 1
COMMAND_UDP = 3
#: Hex SHA-224: the user's key on the wire.
KEY_BYTES = 56
#: 4.34's ``maxLength``: writers cut payloads to it, readers refuse longer ones.
MAX_PACKET_BYTES = 8192
CRLF = b"\r\n"
#: The server's first read must hold the key and the CR after it (4.34: ``firstLen < 58``).
_FIRST_READ_MIN = KEY_BYTES + 2
_ADDRESS_IPV4 = 1
_ADDRESS_DOMAIN = 3
_ADDRESS_IPV6 = 4
#: 4.34 ``common/protocol/address.go`` ``isValidDomain``.
_DOMAIN_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")
_LENGTH = struct.Struct("!H")
_PROTOCOL = "v2ray.com/core/common/protocol: "
_EOF = "EOF"
_UNEXPECTED_EOF = "unexpected EOF"


def password_key(password: str) -> bytes:
    """The 56-byte key of ``password`` (4.34 ``hexSha224``)."""
    return hashlib.sha224(password.encode("utf-8", "surrogateescape")).hexdigest().encode()


def encode_request(key: bytes, command: int, address: str, port: int) -> bytes:
    """The request header. Raises ValueError for a bad key, address or port."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"a trojan key is {KEY_BYTES} bytes")
    return key + CRLF + bytes((command,)) + encode_address(address, port) + CRLF


def encode_packet(address: str, port: int, payload: bytes | bytearray | memoryview) -> bytes:
    """``payload`` as UDP packets on the stream (4.34 ``PacketWriter``): one per 8192
    bytes, none for an empty payload. Raises ValueError for a bad address or port."""
    head = encode_address(address, port)
    view = memoryview(payload)
    parts: list[bytes] = []
    for start in range(0, len(view), MAX_PACKET_BYTES):
        chunk = view[start : start + MAX_PACKET_BYTES]
        parts += (head, _LENGTH.pack(len(chunk)), CRLF, chunk.tobytes())
    return b"".join(parts)


# -- reading -------------------------------------------------------------------------


class _Need:
    """More input is needed: in which 4.34 step, and whether that step has begun
    (the end of input then reads as Go's ``unexpected EOF`` rather than ``EOF``)."""

    __slots__ = ("partial", "step")

    def __init__(self, step: str, partial: bool) -> None:
        self.step = step
        self.partial = partial

    def reason(self) -> str:
        return f"{self.step} > {_UNEXPECTED_EOF if self.partial else _EOF}"


def _field(buffer: bytearray, pos: int, size: int, step: str) -> _Need | None:
    """None when ``size`` bytes are there at ``pos``; else what is missing."""
    have = len(buffer) - pos
    if have >= size:
        return None
    return _Need(step, have > 0)


def _address(buffer: bytearray, pos: int, step: str) -> tuple[str, int, int] | _Need:
    """Address and port at ``pos`` (4.34 ``ReadAddressPort``): (address, port, end) or
    what is missing. Raises ValueError with 4.34's reason for a bad type or domain."""
    need = _field(buffer, pos, 1, step)
    if need is not None:
        return need
    kind = buffer[pos]
    pos += 1
    if kind in (_ADDRESS_IPV4, _ADDRESS_IPV6):
        size = 4 if kind == _ADDRESS_IPV4 else 16
        need = _field(buffer, pos, size, step)
        if need is not None:
            return need
        address = ip_text(buffer[pos : pos + size])
        pos += size
    elif kind == _ADDRESS_DOMAIN:
        need = _field(buffer, pos, 1, step)
        if need is not None:
            return need
        size = buffer[pos]
        pos += 1
        need = _field(buffer, pos, size, step)
        if need is not None:
            return need
        address = _domain(bytes(buffer[pos : pos + size]), step)
        pos += size
    else:
        raise ValueError(f"{step} > {_PROTOCOL}unknown address type: {kind}")
    need = _field(buffer, pos, 2, step)
    if need is not None:
        return need
    (port,) = _LENGTH.unpack_from(buffer, pos)
    return address, port, pos + 2


def _domain(raw: bytes, step: str) -> str:
    """A domain as 4.34 reads it: one that spells an IP (brackets allowed) is that IP;
    otherwise only ``[A-Za-z0-9._-]``. An empty one is refused (4.34 reads its first
    byte unchecked, a Go index panic; not tried against the binary)."""
    text = raw.decode("latin-1")
    if raw and (raw[0] == ord("[") or raw[:1].isdigit()):
        bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        ip = canonical_ip(bare)
        if ip is not None:
            return ip
    if not raw or not _DOMAIN_CHARS.issuperset(raw):
        raise ValueError(f"{step} > {_PROTOCOL}invalid domain name: {printable(text)}")
    return text


@dataclass(frozen=True, slots=True)
class TrojanRequest:
    """A decoded request header: the user (as the lookup returned it), the command
    (:data:`COMMAND_UDP` or TCP for any other value), the destination and the bytes
    after the header."""

    user: object
    command: int
    address: str
    port: int
    rest: bytes


class RequestDecoder:
    """Decodes the request header as 4.34's trojan server (server side).

    ``lookup(key)`` returns the user of a 56-byte key or None. :meth:`feed` takes each
    read as it comes and returns the request once the header is complete, None while
    more is needed. The first call applies 4.34's first-read rule. Raises ValueError
    with 4.34's reason: "not trojan protocol", "not a valid user", "failed to read
    address and port > ...". At the end of input, :meth:`end_reason` says what 4.34
    logs (None before any read: 4.34 logs no rejection then).
    """

    __slots__ = ("_buffer", "_lookup", "_need", "_user")

    def __init__(self, lookup: Callable[[bytes], object | None]) -> None:
        self._buffer = bytearray()
        self._lookup = lookup
        self._user: object | None = None
        self._need: _Need | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> TrojanRequest | None:
        buffer = self._buffer
        if self._user is None:
            if not data:
                return None
            first = bytes(data)
            if len(first) < _FIRST_READ_MIN or first[KEY_BYTES] != CRLF[0]:
                raise ValueError("not trojan protocol")
            user = self._lookup(first[:KEY_BYTES])
            if user is None:
                raise ValueError("not a valid user")
            self._user = user
        buffer += data
        pos = KEY_BYTES + len(CRLF)
        need = _field(buffer, pos, 1, "failed to read command")
        if need is not None:
            self._need = need
            return None
        command = buffer[pos]
        found = _address(buffer, pos + 1, "failed to read address and port")
        if isinstance(found, _Need):
            self._need = found
            return None
        address, port, end = found
        need = _field(buffer, end, len(CRLF), "failed to read crlf")
        if need is not None:
            self._need = need
            return None
        rest = bytes(buffer[end + len(CRLF) :])
        buffer.clear()
        command = COMMAND_UDP if command == COMMAND_UDP else COMMAND_TCP
        return TrojanRequest(self._user, command, address, port, rest)

    def end_reason(self) -> str | None:
        """4.34's reason when the input ends before the header is complete."""
        if self._user is None:
            return None
        need = self._need or _Need("failed to read command", False)
        return need.reason()

    def timeout_reason(self, detail: str) -> str | None:
        """4.34's reason when the handshake timeout ends the header (``detail``: Go's
        read error text); None before the first read (4.34 logs no rejection)."""
        if self._user is None:
            return None
        need = self._need or _Need("failed to read command", False)
        return f"{need.step} > {detail}"


@dataclass(frozen=True, slots=True)
class TrojanPacket:
    """One UDP packet read from the stream: its address, port and payload."""

    address: str
    port: int
    payload: bytes


class PacketReader:
    """Splits a UDP stream into packets (4.34 ``PacketReader``).

    :meth:`feed` returns the packets completed by ``data`` (empty payloads included);
    raises ValueError with 4.34's reason for a bad address or an oversize payload.
    :attr:`pending` is true while a packet is incomplete (its end is then an error).
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> bool:
        return bool(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[TrojanPacket]:
        buffer = self._buffer
        buffer += data
        packets: list[TrojanPacket] = []
        pos = 0
        while pos < len(buffer):
            found = _address(buffer, pos, "failed to read address and port")
            if isinstance(found, _Need):
                break
            address, port, end = found
            if len(buffer) < end + 2:
                break
            (length,) = _LENGTH.unpack_from(buffer, end)
            if length > MAX_PACKET_BYTES:
                raise ValueError("oversize payload")
            start = end + 2 + len(CRLF)
            if len(buffer) < start + length:
                break
            packets.append(TrojanPacket(address, port, bytes(buffer[start : start + length])))
            pos = start + length
        del buffer[:pos]
        return packets
