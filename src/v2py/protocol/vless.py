"""VLESS, client side (v2ray-core 4.34 ``proxy/vless/encoding``), pure.

* Request header: version 0, the user's 16-byte UUID, an addons length of 0 (4.34
  never sends addons, not even ``flow``), the command (1 TCP, 2 UDP, 3 Mux), then for
  TCP/UDP the port (2 bytes) and the address (type 1 IPv4, 2 domain with a length
  byte, 3 IPv6). The first payload follows in the same write.
* Response header: the request's version, an addons length and that many bytes
  (protobuf; skipped); then the data.
* Over UDP every datagram is a 2-byte big-endian length and the payload; the writer
  drops empty datagrams and those above 2046 bytes (``length + 2 > buf.Size``), the
  reader takes any length.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from v2py.common.net import pack_ip
from v2py.protocol.framing import LengthPrefixed

__all__ = [
    "COMMAND_MUX",
    "COMMAND_TCP",
    "COMMAND_UDP",
    "MAX_WRITTEN_PACKET_BYTES",
    "VERSION",
    "PacketReader",
    "RequestDecoder",
    "ResponseHeader",
    "VlessRequest",
    "encode_request",
    "encode_response",
    "frame_packet",
]

VERSION = 0
COMMAND_TCP = 1
COMMAND_UDP = 2
COMMAND_MUX = 3
#: 4.34's writer skips a datagram when ``length + 2 > buf.Size`` (2048).
MAX_WRITTEN_PACKET_BYTES = 2048 - 2
_ADDRESS_IPV4 = 1
_ADDRESS_DOMAIN = 2
_ADDRESS_IPV6 = 3
_MAX_DOMAIN_BYTES = 255
_LENGTH = struct.Struct("!H")


def _address(address: str) -> bytes:
    packed = pack_ip(address)
    if packed is None:
        raw = address.encode("ascii", "strict")
        if not raw or len(raw) > _MAX_DOMAIN_BYTES:
            raise ValueError(f"domain length out of range: {address!r}")
        return bytes((_ADDRESS_DOMAIN, len(raw))) + raw
    kind = _ADDRESS_IPV4 if len(packed) == 4 else _ADDRESS_IPV6
    return bytes((kind,)) + packed


def encode_request(user_id: bytes, command: int, address: str, port: int) -> bytes:
    """The request header. Raises ValueError for a bad id or address."""
    if len(user_id) != 16:
        raise ValueError("a VLESS id is 16 bytes")
    head = bytes((VERSION,)) + user_id + b"\x00" + bytes((command,))
    if command == COMMAND_MUX:
        return head
    return head + _LENGTH.pack(port) + _address(address)


class ResponseHeader:
    """Strips the response header from the first bytes read.

    :meth:`feed` returns the data after the header once it is complete (possibly
    empty), None while more is needed; raises ValueError for another version.
    """

    __slots__ = ("_buffer", "done")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.done = False

    def feed(self, data: bytes) -> bytes | None:
        buffer = self._buffer
        buffer += data
        if not buffer:
            return None
        if buffer[0] != VERSION:
            raise ValueError(
                f"unexpected response version. Expecting {VERSION} but actually {buffer[0]}"
            )
        if len(buffer) < 2:
            return None
        end = 2 + buffer[1]
        if len(buffer) < end:
            return None
        self.done = True
        rest = bytes(buffer[end:])
        buffer.clear()
        return rest


def frame_packet(payload: bytes) -> bytes | None:
    """``payload`` as one UDP packet on the stream, or None when 4.34 would drop it."""
    if not payload or len(payload) > MAX_WRITTEN_PACKET_BYTES:
        return None
    return _LENGTH.pack(len(payload)) + payload


#: Splits the UDP stream into datagrams (any length, as 4.34's reader).
PacketReader = LengthPrefixed


# -- server side ---------------------------------------------------------------------


class VlessRequest:
    """A decoded request header: the user (as the lookup returned it), the command,
    the destination (``v1.mux.cool``, port 0, for Mux) and the bytes after the header."""

    __slots__ = ("address", "command", "port", "rest", "user")

    def __init__(self, user: object, command: int, address: str, port: int, rest: bytes) -> None:
        self.user = user
        self.command = command
        self.address = address
        self.port = port
        self.rest = rest


class RequestDecoder:
    """Decodes the request header as 4.34's ``DecodeRequestHeader`` (server side).

    ``lookup(id)`` returns the user of a 16-byte id or None. :meth:`feed` returns the
    request once the header is complete, None while more is needed; raises ValueError
    with 4.34's reason ("invalid request version", "invalid request user id",
    "invalid request address"). The addons (protobuf) are skipped: 4.34 reads ``flow``
    from them and uses nothing of it.
    """

    __slots__ = ("_buffer", "_lookup", "_user")

    def __init__(self, lookup: Callable[[bytes], object | None]) -> None:
        self._buffer = bytearray()
        self._lookup = lookup
        self._user: object | None = None

    def feed(self, data: bytes) -> VlessRequest | None:
        buffer = self._buffer
        buffer += data
        if not buffer:
            return None
        if buffer[0] != VERSION:
            raise ValueError("invalid request version")
        if len(buffer) < 17:
            return None
        if self._user is None:
            self._user = self._lookup(bytes(buffer[1:17]))
            if self._user is None:
                raise ValueError("invalid request user id")
        if len(buffer) < 18:
            return None
        pos = 18 + buffer[17]
        if len(buffer) < pos + 1:
            return None
        command = buffer[pos]
        pos += 1
        if command == COMMAND_MUX:
            return self._done("v1.mux.cool", 0, pos, command)
        if command not in (COMMAND_TCP, COMMAND_UDP):
            raise ValueError("invalid request address")
        if len(buffer) < pos + 3:
            return None
        (port,) = _LENGTH.unpack_from(buffer, pos)
        kind = buffer[pos + 2]
        pos += 3
        if kind == _ADDRESS_IPV4:
            end = pos + 4
        elif kind == _ADDRESS_IPV6:
            end = pos + 16
        elif kind == _ADDRESS_DOMAIN:
            if len(buffer) < pos + 1:
                return None
            end = pos + 1 + buffer[pos]
        else:
            raise ValueError("invalid request address")
        if len(buffer) < end:
            return None
        raw = bytes(buffer[pos:end])
        if kind == _ADDRESS_DOMAIN:
            address = raw[1:].decode("utf-8", "surrogateescape")
        else:
            import ipaddress

            address = str(ipaddress.ip_address(raw))
        return self._done(address, port, end, command)

    def _done(self, address: str, port: int, end: int, command: int) -> VlessRequest:
        rest = bytes(self._buffer[end:])
        self._buffer.clear()
        return VlessRequest(self._user, command, address, port, rest)


def encode_response() -> bytes:
    """The response header 4.34 writes: version 0, no addons."""
    return bytes((VERSION, 0))
