"""HTTP proxy request heads, sans I/O (v2ray-core 4.34 ``proxy/http/server.go`` behaviour).

A forward proxy sees either ``CONNECT host:port`` or a request whose target is an
absolute URI (``GET http://host/path``; RFC 7230 section 5.3.2). With
``allowTransparent`` an origin-form target plus ``Host`` is accepted too. The head
is parsed once it is complete; plain requests are rewritten to origin-form with the
hop-by-hop and proxy headers removed and ``Connection: close`` added, so the origin
ends the exchange after one response (no keep-alive handling is needed).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass

from v2py.common.net import normalize_address
from v2py.errors import RemoteProtocolError

__all__ = [
    "HEAD_MAX_BYTES",
    "RESPONSE_400",
    "RESPONSE_407",
    "RESPONSE_CONNECT_OK",
    "HttpProxyRequest",
    "check_basic_auth",
    "decode_request_head",
    "encode_origin_request",
    "find_head_end",
]

#: Largest request head accepted before the connection is refused.
HEAD_MAX_BYTES = 64 * 1024
DEFAULT_HTTP_PORT = 80
DEFAULT_HTTPS_PORT = 443

RESPONSE_CONNECT_OK = b"HTTP/1.1 200 Connection established\r\n\r\n"
RESPONSE_407 = (
    b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="proxy"\r\n\r\n'
)
RESPONSE_400 = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/\d\.\d")
#: Dropped when forwarding (RFC 7230 section 6.1 plus the proxy-only headers); the
#: framing headers stay because the body is forwarded as received.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "upgrade",
    }
)
_NEVER_DROPPED = frozenset({"host", "content-length", "transfer-encoding"})


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpProxyRequest:
    """One parsed request head.

    ``host``/``port`` is where to connect ("" when an origin-form target has no
    Host). ``path`` is the origin-form target (``/`` when the URI has none).
    ``absolute`` tells an absolute-URI (or CONNECT authority) target from origin-form.
    """

    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]
    host: str
    port: int
    path: str
    absolute: bool

    @property
    def is_connect(self) -> bool:
        return self.method.upper() == "CONNECT"

    def header(self, name: str) -> str | None:
        """Value of the last header called ``name`` (case-insensitive), or None."""
        lowered = name.lower()
        value = None
        for key, val in self.headers:
            if key.lower() == lowered:
                value = val
        return value


def find_head_end(buf: bytes | bytearray, start: int = 0) -> int | None:
    """Offset just past the blank line ending the head, or None if not there yet.

    ``start`` lets a caller resume near where the previous search stopped (pass
    ``max(0, old_len - 3)``) so repeated searches stay linear.
    """
    match = _HEAD_END.search(buf, start)
    return match.end() if match else None


def _split_authority(authority: str, default_port: int) -> tuple[str, int]:
    if "@" in authority:
        authority = authority.rpartition("@")[2]
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise RemoteProtocolError(f"bad authority: {authority!r}")
        host, rest = authority[1:close], authority[close + 1 :]
        if rest and not rest.startswith(":"):
            raise RemoteProtocolError(f"bad authority: {authority!r}")
        port_text = rest[1:]
    else:
        host, _, port_text = authority.partition(":")
        if ":" in port_text:
            raise RemoteProtocolError(f"bad authority: {authority!r}")
    if not host:
        raise RemoteProtocolError(f"empty host in {authority!r}")
    if not port_text:
        return normalize_address(host), default_port
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) <= 0xFFFF:
        raise RemoteProtocolError(f"bad port in {authority!r}")
    return normalize_address(host), int(port_text)


def decode_request_head(buf: bytes | bytearray) -> tuple[HttpProxyRequest, int] | None:
    """Parse the head at the start of ``buf``; return ``(request, head_length)``.

    Returns None while the head is incomplete. Raises RemoteProtocolError for a
    malformed head or one longer than :data:`HEAD_MAX_BYTES`.
    """
    end = find_head_end(buf)
    if end is None:
        if len(buf) > HEAD_MAX_BYTES:
            raise RemoteProtocolError("request head too large")
        return None
    if end > HEAD_MAX_BYTES:
        raise RemoteProtocolError("request head too large")
    lines = bytes(buf[:end]).split(b"\n")
    request_line = lines[0].rstrip(b"\r")
    parts = request_line.split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise RemoteProtocolError("malformed request line")
    if not _VERSION.fullmatch(parts[2]):
        raise RemoteProtocolError("unsupported HTTP version")
    method = parts[0].decode("ascii")
    target = parts[1].decode("latin-1")
    headers: list[tuple[str, str]] = []
    for raw in lines[1:]:
        line = raw.rstrip(b"\r")
        if not line:
            break
        raw_name, sep, raw_value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(raw_name):
            raise RemoteProtocolError("malformed header line")
        headers.append((raw_name.decode("ascii"), raw_value.strip().decode("latin-1")))
    host_header = ""
    for name, value in headers:
        if name.lower() == "host":
            host_header = value
    absolute = True
    if method.upper() == "CONNECT":
        host, port = _split_authority(target, DEFAULT_HTTP_PORT)
        path = ""
    else:
        scheme, scheme_sep, rest = target.partition("://")
        if scheme_sep and scheme.lower() in ("http", "https"):
            default = DEFAULT_HTTPS_PORT if scheme.lower() == "https" else DEFAULT_HTTP_PORT
            slash = len(rest)
            for mark in "/?#":
                index = rest.find(mark)
                if 0 <= index < slash:
                    slash = index
            authority, path = rest[:slash], rest[slash:]
            path = path.partition("#")[0]
            if not path.startswith("/"):
                path = "/" + path
            host, port = _split_authority(authority, default)
        elif target.startswith("/") or target == "*":
            absolute = False
            path = target
            if host_header:
                host, port = _split_authority(host_header, DEFAULT_HTTP_PORT)
            else:
                host, port = "", 0
        else:
            raise RemoteProtocolError(f"unsupported request target {target!r}")
    request = HttpProxyRequest(
        method=method,
        target=target,
        version=parts[2].decode("ascii"),
        headers=tuple(headers),
        host=host,
        port=port,
        path=path,
        absolute=absolute,
    )
    return request, end


def check_basic_auth(request: HttpProxyRequest, accounts: Mapping[str, str]) -> str | None:
    """The user named by a valid ``Proxy-Authorization: Basic`` header, else None."""
    value = request.header("proxy-authorization")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8", "surrogateescape")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    stored = accounts.get(user)
    if stored is None or stored != password:
        return None
    return user


def _authority(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == DEFAULT_HTTP_PORT else f"{shown}:{port}"


def encode_origin_request(request: HttpProxyRequest) -> bytes:
    """The head to send to the origin: origin-form target, proxy and hop-by-hop headers
    removed (plus those named in ``Connection``), ``Host`` set from the URI when it was
    absolute, and ``Connection: close``."""
    named: set[str] = set()
    for name, value in request.headers:
        if name.lower() in ("connection", "proxy-connection"):
            named.update(t.strip().lower() for t in value.split(",") if t.strip())
    # A client must not be able to strip the framing or the Host through Connection.
    named -= _NEVER_DROPPED
    lines = [f"{request.method} {request.path} {request.version}"]
    have_host = False
    for name, value in request.headers:
        lowered = name.lower()
        if lowered in _HOP_BY_HOP or lowered in named:
            continue
        if lowered == "host":
            if have_host:
                continue
            have_host = True
            if request.absolute:
                value = _authority(request.host, request.port)
        lines.append(f"{name}: {value}")
    if not have_host:
        lines.insert(1, f"Host: {_authority(request.host, request.port)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
