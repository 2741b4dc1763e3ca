"""Reading the ALPN offer out of a TLS ClientHello (RFC 8446 section 4.1.2, RFC 7301).

The TLS server needs the client's offer before OpenSSL sees it: Go 1.17+ (which
the reference 4.34 build uses; ``crypto/tls`` ``negotiateALPN``) ends a handshake
whose offer shares nothing with the server's list with a fatal
``no_application_protocol`` alert, where OpenSSL just continues without ALPN.
:func:`alpn_refused` is that rule, :data:`NO_APPLICATION_PROTOCOL_ALERT` the alert.

Pure: bytes in, values out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "NO_APPLICATION_PROTOCOL_ALERT",
    "ClientHelloAlpn",
    "alpn_refused",
    "decode_client_hello_alpn",
]

_RECORD_HANDSHAKE = 0x16
_HANDSHAKE_CLIENT_HELLO = 0x01
_EXT_ALPN = 0x0010
_RECORD_HEADER = 5
#: A ClientHello longer than this is not waited for (the check is then skipped).
MAX_HELLO_BYTES = 64 * 1024

#: Fatal alert 120 (no_application_protocol) in a TLS 1.2-versioned record, as Go sends.
NO_APPLICATION_PROTOCOL_ALERT = bytes((0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x78))


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientHelloAlpn:
    """What a ClientHello says about ALPN.

    ``is_hello`` is False when the bytes are not a TLS ClientHello (OpenSSL will
    refuse them itself); ``offered`` is None when there is no ALPN extension.
    """

    is_hello: bool
    offered: tuple[bytes, ...] | None = None


_NOT_A_HELLO = ClientHelloAlpn(is_hello=False)


def decode_client_hello_alpn(data: bytes | bytearray | memoryview) -> ClientHelloAlpn | None:
    """Parse the ClientHello at the start of ``data`` (it may span records).

    Returns None when more bytes are needed, else what was found. Never raises on
    malformed input: anything that does not parse is "not a hello".
    """
    view = memoryview(data)
    body = bytearray()
    pos = 0
    while True:
        if len(view) - pos < _RECORD_HEADER:
            return None
        if view[pos] != _RECORD_HANDSHAKE or view[pos + 1] != 0x03:
            return _NOT_A_HELLO
        length = int.from_bytes(view[pos + 3 : pos + 5], "big")
        if len(view) - pos - _RECORD_HEADER < length:
            return None if pos + _RECORD_HEADER + length <= MAX_HELLO_BYTES else _NOT_A_HELLO
        body += view[pos + _RECORD_HEADER : pos + _RECORD_HEADER + length]
        pos += _RECORD_HEADER + length
        if len(body) < 4:
            continue
        if body[0] != _HANDSHAKE_CLIENT_HELLO:
            return _NOT_A_HELLO
        need = int.from_bytes(body[1:4], "big")
        if need > MAX_HELLO_BYTES:
            return _NOT_A_HELLO
        if len(body) - 4 >= need:
            return _parse_hello(memoryview(body)[4 : 4 + need])


def _parse_hello(hello: memoryview) -> ClientHelloAlpn:
    try:
        pos = 2 + 32  # legacy_version, random
        pos += 1 + hello[pos]  # session id
        pos += 2 + int.from_bytes(hello[pos : pos + 2], "big")  # cipher suites
        pos += 1 + hello[pos]  # compression methods
        if pos == len(hello):
            return ClientHelloAlpn(is_hello=True)
        end = pos + 2 + int.from_bytes(hello[pos : pos + 2], "big")
        pos += 2
        if end > len(hello):
            return _NOT_A_HELLO
        while pos + 4 <= end:
            kind = int.from_bytes(hello[pos : pos + 2], "big")
            size = int.from_bytes(hello[pos + 2 : pos + 4], "big")
            pos += 4
            if pos + size > end:
                return _NOT_A_HELLO
            if kind == _EXT_ALPN:
                return _parse_alpn(hello[pos : pos + size])
            pos += size
        return ClientHelloAlpn(is_hello=True)
    except IndexError:
        return _NOT_A_HELLO


def _parse_alpn(ext: memoryview) -> ClientHelloAlpn:
    if len(ext) < 2:
        return _NOT_A_HELLO
    end = 2 + int.from_bytes(ext[0:2], "big")
    if end > len(ext):
        return _NOT_A_HELLO
    names: list[bytes] = []
    pos = 2
    while pos < end:
        size = ext[pos]
        if size == 0 or pos + 1 + size > end:
            return _NOT_A_HELLO
        names.append(bytes(ext[pos + 1 : pos + 1 + size]))
        pos += 1 + size
    return ClientHelloAlpn(is_hello=True, offered=tuple(names))


def alpn_refused(server: Sequence[str], offered: Sequence[bytes] | None) -> bool:
    """Whether Go 1.19's server ends the handshake with ``no_application_protocol``.

    No refusal when either list is empty, when they share a protocol, or when the
    server has ``h2`` and the client offers ``http/1.1`` (Go's special case: such
    clients connect as if they had not asked for ALPN).
    """
    if not server or not offered:
        return False
    wanted = {name.encode() for name in server}
    if any(name in wanted for name in offered):
        return False
    return not ("h2" in server and b"http/1.1" in offered)
