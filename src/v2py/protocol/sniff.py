"""Protocol sniffers: HTTP Host, TLS SNI, BitTorrent
(docs/spec/socks-sniffing-freedom.md section 2).

Matches v2ray-core 4.34 ``common/protocol/http/sniff.go``, ``common/protocol/tls/sniff.go``,
``common/protocol/bittorrent`` and the ordering of ``app/dispatcher/sniffer.go``: the first
sniffer that finds something wins; otherwise "need more" if any sniffer needs more,
else unknown. Each sniffer answers FOUND, NEED_MORE ("no clue yet") or UNKNOWN ("not
mine"). Pure: bytes in, a :class:`SniffResult` out.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from v2py.common.net import normalize_address

__all__ = ["SniffResult", "SniffStatus", "sniff", "sniff_bittorrent", "sniff_http", "sniff_tls"]

PROTOCOL_HTTP1 = "http1"
PROTOCOL_TLS = "tls"
PROTOCOL_BITTORRENT = "bittorrent"

#: Methods an HTTP/1 request must start with, in 4.34's order (the order matters: a
#: buffer shorter than the next method in the list means "need more").
_HTTP_METHODS = (b"get", b"post", b"head", b"put", b"delete", b"options", b"connect")

_TLS_HANDSHAKE = 0x16
_TLS_RECORD_HEADER_BYTES = 5
#: ClientHello: handshake header(4) + version(2) + random(32) before the session id length.
_TLS_SESSION_ID_OFFSET = 38
_TLS_SESSION_ID_MAX = 32
_TLS_EXT_SERVER_NAME = 0x0000
_TLS_NAME_TYPE_HOST = 0

_BT_HANDSHAKE_BYTES = 20
_BT_PROTOCOL = b"\x13BitTorrent protocol"


class SniffStatus(enum.Enum):
    """Outcome of a sniff."""

    FOUND = "found"
    NEED_MORE = "need_more"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class SniffResult:
    """``protocol`` and ``domain`` are set when FOUND (``domain`` may be "" for bittorrent)."""

    status: SniffStatus
    protocol: str = ""
    domain: str = ""


_NEED_MORE = SniffResult(SniffStatus.NEED_MORE)
_UNKNOWN = SniffResult(SniffStatus.UNKNOWN)


def sniff(data: bytes | bytearray | memoryview) -> SniffResult:
    """Classify the first bytes of a TCP stream: HTTP, then TLS, then BitTorrent.

    Returns the first FOUND result; else NEED_MORE when some sniffer could still
    succeed with more bytes; else UNKNOWN. Never raises.
    """
    data = bytes(data)
    pending = False
    for sniffer in _SNIFFERS:
        result = sniffer(data)
        if result.status is SniffStatus.FOUND:
            return result
        if result.status is SniffStatus.NEED_MORE:
            pending = True
    return _NEED_MORE if pending else _UNKNOWN


# -- HTTP ---------------------------------------------------------------------------


def _http_method_status(data: bytes) -> SniffStatus:
    for method in _HTTP_METHODS:
        if len(data) < len(method):
            return SniffStatus.NEED_MORE
        if data[: len(method)].lower() == method:
            return SniffStatus.FOUND
    return SniffStatus.UNKNOWN


def _split_host_port(raw: str) -> tuple[str, str | None] | None:
    """Go ``net.SplitHostPort`` outcome: (host, port), (raw, None) when only the port is
    missing, or None for any other malformed value."""
    colon = raw.rfind(":")
    if colon < 0:
        return raw, None
    if raw.startswith("["):
        close = raw.find("]")
        if close < 0:
            return None
        if close + 1 == len(raw):
            return raw, None
        if close + 1 != colon:
            return None if raw[close + 1] == ":" else (raw, None)
        host = raw[1:close]
        if "[" in raw[1:] or "]" in raw[close + 1 :]:
            return None
    else:
        host = raw[:colon]
        if ":" in host or "[" in raw or "]" in raw:
            return None
    return host, raw[colon + 1 :]


def _parse_http_host(raw: str) -> str | None:
    """The address part of a Host value (port stripped), or None when unparsable."""
    split = _split_host_port(raw)
    if split is None:
        return None
    host, port = split
    if port:
        digits = port[1:] if port[0] in "+-" else port
        if not digits.isascii() or not digits.isdigit():
            return None
    return normalize_address(host)


def sniff_http(data: bytes) -> SniffResult:
    """HTTP/1 request Host header (spec section 2, protocol ``http1``).

    The last ``Host`` line before the first empty line wins; the value is trimmed,
    lower-cased and its port stripped. No Host yet means NEED_MORE.
    """
    status = _http_method_status(data)
    if status is not SniffStatus.FOUND:
        return SniffResult(status)
    host: str | None = None
    lines = data.split(b"\n")
    for line in lines[1:]:
        if not line:
            break
        name, sep, value = line.partition(b":")
        if not sep or name.lower() != b"host":
            continue
        parsed = _parse_http_host(value.strip().lower().decode("latin-1"))
        if parsed is None:
            return _UNKNOWN
        host = parsed
    if host:
        return SniffResult(SniffStatus.FOUND, PROTOCOL_HTTP1, host)
    return _NEED_MORE


# -- TLS ----------------------------------------------------------------------------


def sniff_tls(data: bytes) -> SniffResult:
    """TLS ClientHello server_name (spec section 2, protocol ``tls``).

    Needs the whole first record. The handshake type byte is not checked, as in 4.34.
    """
    if len(data) < _TLS_RECORD_HEADER_BYTES:
        return _NEED_MORE
    if data[0] != _TLS_HANDSHAKE or data[1] != 3:
        return _UNKNOWN
    length = int.from_bytes(data[3:5], "big")
    end = _TLS_RECORD_HEADER_BYTES + length
    if end > len(data):
        return _NEED_MORE
    return _read_client_hello(memoryview(data)[_TLS_RECORD_HEADER_BYTES:end])


def _read_client_hello(body: memoryview) -> SniffResult:
    # Truncations before the extensions count as "no clue" in 4.34 even though the
    # record is complete; they end up unknown after the dispatcher's attempts.
    if len(body) < _TLS_SESSION_ID_OFFSET + 4:
        return _NEED_MORE
    sid_len = body[_TLS_SESSION_ID_OFFSET]
    pos = _TLS_SESSION_ID_OFFSET + 1 + sid_len
    if sid_len > _TLS_SESSION_ID_MAX or len(body) < pos:
        return _NEED_MORE
    if len(body) < pos + 2:
        return _NEED_MORE
    suites_len = int.from_bytes(body[pos : pos + 2], "big")
    if suites_len % 2 or len(body) < pos + 2 + suites_len:
        return _UNKNOWN
    pos += 2 + suites_len
    if len(body) < pos + 1:
        return _NEED_MORE
    pos += 1 + body[pos]
    if len(body) < pos:
        return _NEED_MORE
    if len(body) < pos + 2:
        return _UNKNOWN
    ext_total = int.from_bytes(body[pos : pos + 2], "big")
    pos += 2
    if ext_total != len(body) - pos:
        return _UNKNOWN
    while pos < len(body):
        if len(body) - pos < 4:
            return _UNKNOWN
        ext_type = int.from_bytes(body[pos : pos + 2], "big")
        ext_len = int.from_bytes(body[pos + 2 : pos + 4], "big")
        pos += 4
        if len(body) - pos < ext_len:
            return _UNKNOWN
        if ext_type == _TLS_EXT_SERVER_NAME:
            return _read_server_name(body[pos : pos + ext_len])
        pos += ext_len
    return _UNKNOWN


def _read_server_name(ext: memoryview) -> SniffResult:
    if len(ext) < 2:
        return _UNKNOWN
    names_len = int.from_bytes(ext[:2], "big")
    if names_len != len(ext) - 2:
        return _UNKNOWN
    pos = 2
    while pos < len(ext):
        if len(ext) - pos < 3:
            return _UNKNOWN
        name_type = ext[pos]
        name_len = int.from_bytes(ext[pos + 1 : pos + 3], "big")
        pos += 3
        if len(ext) - pos < name_len:
            return _UNKNOWN
        if name_type == _TLS_NAME_TYPE_HOST:
            name = bytes(ext[pos : pos + name_len]).decode("latin-1")
            if name.endswith("."):
                return _UNKNOWN
            return SniffResult(SniffStatus.FOUND, PROTOCOL_TLS, name)
        pos += name_len
    return _UNKNOWN


# -- BitTorrent ---------------------------------------------------------------------


def sniff_bittorrent(data: bytes) -> SniffResult:
    """BitTorrent handshake: ``0x13 "BitTorrent protocol"``; never yields a domain."""
    if len(data) < _BT_HANDSHAKE_BYTES:
        return _NEED_MORE
    if data[:_BT_HANDSHAKE_BYTES] == _BT_PROTOCOL:
        return SniffResult(SniffStatus.FOUND, PROTOCOL_BITTORRENT, "")
    return _UNKNOWN


_SNIFFERS: tuple[Callable[[bytes], SniffResult], ...] = (sniff_http, sniff_tls, sniff_bittorrent)
