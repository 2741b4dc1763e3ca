"""PROXY protocol v1/v2 headers (HAProxy's proxy-protocol.txt), read as 4.34 reads them:
go-proxyproto 0.4.2 (the Debian build's) behind ``acceptProxyProtocol`` with policy
REQUIRE (v2ray-core ``transport/internet/system_listener.go``): a connection without a
valid header fails.

Pure: bytes in, values out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from v2py.errors import RemoteProtocolError

__all__ = ["ProxyHeader", "ProxyHeaderError", "decode_proxy_header"]

SIG_V1 = b"PROXY"
SIG_V2 = b"\r\n\r\n\x00\r\nQUIT\n"
#: go-proxyproto: a v1 line longer than this fails.
MAX_V1_BYTES = 107
#: go-proxyproto peeks the v2 payload through a 4096-byte bufio.Reader.
MAX_V2_PAYLOAD = 4096
_V2_LOCAL = 0x20
_V2_PROXY = 0x21
_MIN_LENGTH = {0x1: 12, 0x2: 36, 0x3: 216}


class ProxyHeaderError(RemoteProtocolError):
    """No valid PROXY header where one is required."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyHeader:
    """A decoded header: ``size`` bytes long; ``source`` is the client address it
    carries, or None (LOCAL, UNKNOWN, unix) to keep the socket's peer."""

    size: int
    source: tuple[str, int] | None


def decode_proxy_header(data: bytes | bytearray) -> ProxyHeader | None:
    """Decode the header at the start of ``data``; None means "need more bytes".

    Raises:
        ProxyHeaderError: the bytes cannot start a valid header.
    """
    if not data:
        return None
    first = data[0]
    if first == SIG_V1[0]:
        if len(data) < len(SIG_V1):
            return None if data == SIG_V1[: len(data)] else _fail("no PROXY signature")
        if data[:5] == SIG_V1:
            return _decode_v1(data)
    if first == SIG_V2[0]:
        if len(data) < len(SIG_V2):
            return None if data == SIG_V2[: len(data)] else _fail("no PROXY signature")
        if data[:12] == SIG_V2:
            return _decode_v2(data)
    return _fail("proxy protocol signature not present")


def _fail(message: str) -> ProxyHeader:
    raise ProxyHeaderError(message)


def _decode_v1(data: bytes | bytearray) -> ProxyHeader | None:
    end = data.find(b"\n", 0, MAX_V1_BYTES)
    if end < 0:
        return None if len(data) < MAX_V1_BYTES else _fail("v1 header too long")
    line = bytes(data[: end + 1])
    if len(line) < 2 or line[-2:] != b"\r\n":
        return _fail("v1 header must end with CRLF")
    tokens = line[:-2].decode("latin-1").split(" ")
    if len(tokens) < 2 or tokens[1] not in ("TCP4", "TCP6", "UNKNOWN"):
        return _fail("can't read address family or protocol")
    if tokens[1] == "UNKNOWN":
        return ProxyHeader(size=len(line), source=None)
    if len(tokens) < 6:
        return _fail("can't read address family or protocol")
    source = _v1_ip(tokens[1], tokens[2])
    _v1_ip(tokens[1], tokens[3])
    port = _v1_port(tokens[4])
    _v1_port(tokens[5])
    return ProxyHeader(size=len(line), source=(source, port))


def _v1_ip(family: str, text: str) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyHeaderError("invalid address") from None
    v4 = address.version == 4 or (
        isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None
    )
    if (family == "TCP4") != v4:
        raise ProxyHeaderError("invalid address")
    return str(address)


def _v1_port(text: str) -> int:
    body = text[1:] if text[:1] in ("+", "-") else text
    if not body.isascii() or not body.isdigit():
        raise ProxyHeaderError("invalid port number")
    port = int(text)
    if not 0 <= port <= 0xFFFF:
        raise ProxyHeaderError("invalid port number")
    return port


def _decode_v2(data: bytes | bytearray) -> ProxyHeader | None:
    if len(data) < 16:
        return None
    command, family = data[12], data[13]
    if command not in (_V2_LOCAL, _V2_PROXY):
        return _fail("unsupported proxy protocol version and command")
    if family == 0x00 and command != _V2_LOCAL:
        return _fail("unsupported address family and protocol")
    length = int.from_bytes(data[14:16], "big")
    high, low = family >> 4, family & 0x0F
    minimum = _MIN_LENGTH.get(high)
    if minimum is None and high != 0 and low != 0:
        return _fail("invalid length")
    if length < (minimum or 0) or length > MAX_V2_PAYLOAD:
        return _fail("invalid length")
    if len(data) < 16 + length:
        return None
    size = 16 + length
    if command == _V2_LOCAL or low not in (0x1, 0x2) or high not in (0x1, 0x2):
        return ProxyHeader(size=size, source=None)
    if high == 0x1:
        ip = str(ipaddress.IPv4Address(bytes(data[16:20])))
        port = int.from_bytes(data[24:26], "big")
    else:
        ip = str(ipaddress.IPv6Address(bytes(data[16:32])))
        port = int.from_bytes(data[48:50], "big")
    return ProxyHeader(size=size, source=(ip, port))
