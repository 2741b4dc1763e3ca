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

from v2py.common.net import pack_ip

__all__ = [
    "COMMAND_MUX",
    "COMMAND_TCP",
    "COMMAND_UDP",
    "MAX_WRITTEN_PACKET_BYTES",
    "VERSION",
    "PacketReader",
    "ResponseHeader",
    "encode_request",
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


class PacketReader:
    """Splits the UDP stream into datagrams (partial input kept for the next feed)."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        packets: list[bytes] = []
        start = 0
        while len(buffer) - start >= 2:
            (size,) = _LENGTH.unpack_from(buffer, start)
            if len(buffer) - start - 2 < size:
                break
            packets.append(bytes(buffer[start + 2 : start + 2 + size]))
            start += 2 + size
        del buffer[:start]
        return packets
