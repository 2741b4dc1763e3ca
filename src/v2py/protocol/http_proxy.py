"""HTTP forward proxying, sans I/O, as V2Ray 4.34 does it (v2ray-core
``proxy/http/server.go``, built with Go 1.19 ``net/http``).

A forward proxy sees ``CONNECT host:port`` or a request whose target is an absolute
URI (``GET http://host/path``); with ``allowTransparent`` an origin-form target plus
``Host`` too. h11 parses the client's requests (one at a time, pipelined ones wait in
the reader) and the origins' responses; this module re-writes both the way 4.34's Go
code writes them, so an origin and a client see the same bytes through v2py as
through 4.34.

Theory of operation, per client connection (the shell is ``proxy/http_inbound.py``)::

    read head -> CONNECT -> "200 Connection established", raw tunnel (end)
              -> other   -> forward head + body to *this* request's origin,
                            read the origin's response, write it re-framed,
                            copy the body (re-chunked when chunked)
                            -> next request if this one had "Proxy-Connection:
                               keep-alive" and the response a known length (or was
                               the 503 for an unreachable origin), else close

Go facts reproduced (checked against the 4.34 binary):

* header names are canonicalised (``x-foo`` -> ``X-Foo``) and written sorted by name,
  after ``Host``, ``User-Agent`` and the framing lines;
* ``Pragma: no-cache`` without ``Cache-Control`` gains ``Cache-Control: no-cache``;
* removed hop-by-hop headers: Proxy-Connection, Proxy-Authenticate,
  Proxy-Authorization, TE, Trailers, Transfer-Encoding, Upgrade, Connection and the
  names its first value lists (``Keep-Alive`` is not removed by itself);
* the forwarded request always says ``HTTP/1.1`` and ``Connection: close``;
* a response of known length gets ``Connection: keep-alive``,
  ``Keep-Alive: timeout=4``, ``Proxy-Connection: keep-alive``; a chunked or
  close-delimited one gets ``Connection: close`` and ends the connection;
* an empty response to GET gets a trailing ``Content-Length: 0``; a status line
  without reason text repeats the code (``HTTP/1.0 200 200``).

The HTTP outbound's side (4.34 ``proxy/http/client.go``) is :class:`HttpConnectClient`:
the CONNECT request Go writes, and h11 reading the proxy's answer.

Where v2py differs (each a request 4.34 mishandles or a parser limit): a 1xx
response is passed to the client and the final response follows (4.34 takes the
1xx for the response and loses the real one); request heads are limited to
:data:`HEAD_MAX_BYTES`; h11 refuses some malformed input Go accepts (a request
target with non-ASCII bytes, obsolete ``HTTP/1.0`` chunked bodies), which closes the
connection unanswered as 4.34 does for heads it cannot parse. A chunked body is
re-chunked per read, so chunk boundaries may differ from 4.34's.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import h11

from v2py.common.net import normalize_address
from v2py.errors import RemoteProtocolError

__all__ = [
    "GO_USER_AGENT",
    "HEAD_MAX_BYTES",
    "RESPONSE_400",
    "RESPONSE_407",
    "RESPONSE_503",
    "RESPONSE_CONNECT_OK",
    "BodyMode",
    "ClientClosed",
    "ForwardPlan",
    "GoHeader",
    "HttpConnectClient",
    "HttpRequestReader",
    "HttpResponseReader",
    "InformationalReceived",
    "ProxyRequest",
    "ProxyResponse",
    "RequestBodyReceived",
    "RequestEnded",
    "RequestHeadReceived",
    "ResponseBodyReceived",
    "ResponseEnded",
    "ResponseHeadReceived",
    "ResponsePlan",
    "TunnelEstablished",
    "canonical_header_name",
    "check_basic_auth",
    "connect_target",
    "encode_chunk",
    "encode_connect_request",
    "encode_informational",
    "encode_last_chunk",
    "find_head_end",
    "go_request_uri",
    "make_proxy_request",
    "parse_proxy_host",
    "plan_client_response",
    "plan_forward_request",
    "remove_hop_by_hop",
]

#: Largest request or response head accepted (4.34 has no limit).
HEAD_MAX_BYTES = 64 * 1024
DEFAULT_HTTP_PORT = 80
DEFAULT_HTTPS_PORT = 443
HTTP_OK = 200

RESPONSE_CONNECT_OK = b"HTTP/1.1 200 Connection established\r\n\r\n"
RESPONSE_407 = (
    b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="proxy"\r\n\r\n'
)
RESPONSE_400 = (
    b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nProxy-Connection: close\r\n"
    b"Content-Length: 0\r\n\r\n"
)
RESPONSE_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nProxy-Connection: close\r\n"
    b"Content-Length: 0\r\n\r\n"
)

_HEAD_END = re.compile(rb"\r?\n\r?\n")


def find_head_end(buf: bytes | bytearray, start: int = 0) -> int | None:
    """Offset just past the blank line ending the head, or None if not there yet.

    ``start`` lets a caller resume near where the previous search stopped (pass
    ``max(0, old_len - 3)``) so repeated searches stay linear.
    """
    match = _HEAD_END.search(buf, start)
    return match.end() if match else None


def check_basic_auth(request: ProxyRequest, accounts: Mapping[str, str]) -> str | None:
    """The user named by a valid ``Proxy-Authorization: Basic`` header, else None.

    As 4.34's ``parseBasicAuth``: the first such header, the exact prefix ``Basic ``,
    standard base64 with padding, user and password split at the first ``:``.
    """
    value = request.header("Proxy-Authorization")
    prefix = "Basic "
    if not value.startswith(prefix):
        return None
    try:
        decoded = base64.b64decode(value[len(prefix) :], validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.decode("utf-8", "surrogateescape").partition(":")
    if not sep:
        return None
    stored = accounts.get(user)
    if stored is None or stored != password:
        return None
    return user


#: Content-Length value meaning "unknown" (Go's -1).
UNKNOWN_LENGTH = -1
KEEP_ALIVE_TIMEOUT_TEXT = "timeout=4"

# Go's ``RemoveHopByHopHeaders`` (common/protocol/http/headers.go), canonical names.
_GO_HOP_BY_HOP = (
    "Proxy-Connection",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Te",
    "Trailers",
    "Transfer-Encoding",
    "Upgrade",
)
_REQUEST_WRITE_EXCLUDED = frozenset(
    {"Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer"}
)
_RESPONSE_WRITE_EXCLUDED = frozenset({"Content-Length", "Transfer-Encoding", "Trailer"})
_FORBIDDEN_TRAILERS = frozenset({"Transfer-Encoding", "Trailer", "Content-Length"})
_LENGTH_METHODS = frozenset({"POST", "PUT", "PATCH"})
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_URL_PORT = re.compile(r"[0-9]*")
_HEX = frozenset("0123456789abcdefABCDEF")
# Bytes Go's url.shouldEscape(c, encodePath) leaves alone (besides letters and digits).
_PATH_SAFE = frozenset("-_.~$&+,/:;=@")
# Bytes url.validEncoded(s, encodePath) accepts as they are.
_PATH_VALID = _PATH_SAFE | frozenset("!'()*[]%")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def canonical_header_name(name: str) -> str:
    """Go's ``textproto.CanonicalMIMEHeaderKey`` for a token: ``x-FOO-bar`` -> ``X-Foo-Bar``."""
    out = []
    upper = True
    for ch in name:
        if upper and "a" <= ch <= "z":
            ch = chr(ord(ch) - 32)
        elif not upper and "A" <= ch <= "Z":
            ch = chr(ord(ch) + 32)
        out.append(ch)
        upper = ch == "-"
    return "".join(out)


class GoHeader:
    """A Go ``http.Header``: canonical name -> values in arrival order."""

    __slots__ = ("_map",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._map: dict[str, list[str]] = {}
        for name, value in items:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        self._map.setdefault(canonical_header_name(name), []).append(value)

    def set(self, name: str, value: str) -> None:
        self._map[canonical_header_name(name)] = [value]

    def get(self, name: str) -> str:
        """The first value, or "" (Go's ``Header.Get``)."""
        values = self._map.get(canonical_header_name(name))
        return values[0] if values else ""

    def values(self, name: str) -> list[str]:
        return list(self._map.get(canonical_header_name(name), ()))

    def has(self, name: str) -> bool:
        return canonical_header_name(name) in self._map

    def names(self) -> list[str]:
        """The (canonical) names present."""
        return list(self._map)

    def delete(self, name: str) -> None:
        self._map.pop(canonical_header_name(name), None)

    def encode(self, exclude: frozenset[str] = frozenset()) -> str:
        """Go's ``Header.WriteSubset``: sorted by name, one line per value."""
        lines = []
        for name in sorted(self._map):
            if name in exclude:
                continue
            for value in self._map[name]:
                lines.append(f"{name}: {_go_trim(value)}\r\n")
        return "".join(lines)


def _go_trim(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ").strip(" \t\r\n")


def _has_token(values: Iterable[str], token: str) -> bool:
    """httpguts.HeaderValuesContainsToken."""
    return any(part.strip(" \t").lower() == token for value in values for part in value.split(","))


def remove_hop_by_hop(header: GoHeader) -> None:
    """v2ray's ``RemoveHopByHopHeaders``: the fixed list, then Connection and the names
    its first value lists."""
    for name in _GO_HOP_BY_HOP:
        header.delete(name)
    connections = header.get("Connection")
    header.delete("Connection")
    for name in connections.split(",") if connections else ():
        header.delete(name.strip())


def _go_parse_port(text: str) -> int:
    """strconv.ParseUint(text, 0, 16): decimal, 0x/0o/0b prefixes, leading 0 = octal."""
    lowered = text.lower()
    base = 10
    digits = lowered
    if lowered.startswith(("0x", "0o", "0b")):
        base = {"x": 16, "o": 8, "b": 2}[lowered[1]]
        digits = lowered[2:]
    elif len(lowered) > 1 and lowered.startswith("0"):
        base, digits = 8, lowered[1:]
    if "_" in digits or not digits:
        raise RemoteProtocolError(f"bad port {text!r}")
    try:
        value = int(digits, base)
    except ValueError:
        raise RemoteProtocolError(f"bad port {text!r}") from None
    if value > 0xFFFF:
        raise RemoteProtocolError(f"port out of range: {text!r}")
    return value


def parse_proxy_host(raw: str, default_port: int) -> tuple[str, int]:
    """v2ray's ``http.ParseHost``: ``host[:port]`` -> (address, port); raises
    RemoteProtocolError where Go's ``net.SplitHostPort`` or the port parse fails."""
    if raw.startswith("["):
        close = raw.find("]")
        if close < 0:
            raise RemoteProtocolError(f"missing ']' in {raw!r}")
        rest = raw[close + 1 :]
        if not rest:
            host, port_text = raw, None
        elif rest.startswith(":") and ":" not in rest[1:]:
            host, port_text = raw[1:close], rest[1:]
        else:
            raise RemoteProtocolError(f"bad address {raw!r}")
    else:
        colons = raw.count(":")
        if colons == 0:
            host, port_text = raw, None
        elif colons == 1:
            host, _, port_text = raw.partition(":")
        else:
            raise RemoteProtocolError(f"too many colons in {raw!r}")
    port = default_port if not port_text else _go_parse_port(port_text)
    # v2ray net.ParseAddress: brackets stripped, an IP literal is an IP, else a domain.
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.strip()
    if not host:
        raise RemoteProtocolError(f"empty host in {raw!r}")
    return normalize_address(host), port


def _escape_path(path: str) -> str:
    """Go ``url.escape(path, encodePath)`` of an unescaped path (UTF-8 bytes)."""
    out = []
    for byte in path.encode("utf-8", "surrogateescape"):
        ch = chr(byte)
        if byte < 0x80 and (ch in _ALNUM or ch in _PATH_SAFE):
            out.append(ch)
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def _unescape_path(raw: str) -> str:
    data = raw.encode("latin-1")
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i] == 0x25:  # '%'
            pair = data[i + 1 : i + 3].decode("latin-1")
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise RemoteProtocolError(f"invalid URL escape in {raw!r}")
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(data[i])
            i += 1
    return out.decode("utf-8", "surrogateescape")


def go_request_uri(raw_path: str, query: str | None) -> str:
    """Go's ``URL.RequestURI()`` after ``url.ParseRequestURI``: the path as sent when
    it is validly encoded, else re-escaped; ``/`` when empty; ``?query`` as sent."""
    if all(ch in _ALNUM or ch in _PATH_VALID for ch in raw_path):
        _unescape_path(raw_path)  # a bad %-escape fails the parse, as in Go
        path = raw_path
    else:
        path = _escape_path(_unescape_path(raw_path))
    path = path or "/"
    return path if query is None else f"{path}?{query}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyRequest:
    """One client request head, as Go's ``http.ReadRequest`` understands it.

    ``url_host`` is the authority of an absolute URI (or of CONNECT's target), "" for
    origin-form; ``host`` is Go's ``Request.Host``: ``url_host`` or else the first
    Host header. ``request_uri`` is what Go writes on the forwarded request line.
    ``headers`` are (name as sent, value) without Host. ``path`` is Go's
    ``Request.URL.Path`` (the path, %-escapes decoded).
    """

    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]
    scheme: str
    url_host: str
    host: str
    request_uri: str
    path: str = ""

    @property
    def is_connect(self) -> bool:
        return self.method.upper() == "CONNECT"

    def header(self, name: str) -> str:
        """The first value of header ``name`` (case-insensitive), or "" (Go's Get)."""
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return ""

    @property
    def keep_alive(self) -> bool:
        """4.34 reads another request only after ``Proxy-Connection: keep-alive``."""
        return self.header("Proxy-Connection").strip().lower() == "keep-alive"

    def destination(self) -> tuple[str, int]:
        """Where 4.34 dials: ``ParseHost(Request.Host, 443 for https else 80)``."""
        default = DEFAULT_HTTPS_PORT if self.scheme.lower() == "https" else DEFAULT_HTTP_PORT
        return parse_proxy_host(self.host, default)


def make_proxy_request(
    method: str, target: str, version: str, headers: Sequence[tuple[str, str]]
) -> ProxyRequest:
    """Interpret a parsed request line and headers as Go's ``ReadRequest`` does.

    Raises RemoteProtocolError where Go's URL parse fails.
    """
    scheme = url_host = ""
    query: str | None = None
    raw_path = ""
    if method.upper() == "CONNECT" and not target.startswith("/"):
        rest = "//" + target
        has_authority = True
    else:
        match = _SCHEME.match(target)
        if match and target[match.end() : match.end() + 1] == ":":
            scheme = target[: match.end()].lower()
            rest = target[match.end() + 1 :]
            if not rest.startswith("/"):
                raise RemoteProtocolError(f"opaque request target {target!r}")
        elif target.startswith("/") or target == "*":
            rest = target
        else:
            raise RemoteProtocolError(f"invalid URI for request {target!r}")
        has_authority = bool(scheme) and rest.startswith("//")
    if "?" in rest:
        rest, query = rest.split("?", 1)
    if has_authority:
        slash = rest.find("/", 2)
        authority = rest[2:] if slash < 0 else rest[2:slash]
        raw_path = "" if slash < 0 else rest[slash:]
        url_host = authority.rpartition("@")[2]
        if not url_host.startswith("["):
            _, colon, port = url_host.rpartition(":")
            if colon and not _URL_PORT.fullmatch(port):
                raise RemoteProtocolError(f"invalid port in {target!r}")
        elif "]" not in url_host or not _URL_PORT.fullmatch(url_host.rpartition("]")[2][1:]):
            raise RemoteProtocolError(f"invalid host in {target!r}")
    else:
        raw_path = rest
    request_uri = "*" if raw_path == "*" and query is None else go_request_uri(raw_path, query)
    host = url_host
    others: list[tuple[str, str]] = []
    for name, value in headers:
        if name.lower() == "host":
            if not host:
                host = value
            continue
        others.append((name, value))
    return ProxyRequest(
        method=method,
        target=target,
        version=version,
        headers=tuple(others),
        scheme=scheme,
        url_host=url_host,
        host=host,
        request_uri=request_uri,
        path=_unescape_path(raw_path),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardPlan:
    """How a request goes to its origin: the head to send and the body framing.

    ``chunked`` bodies are re-chunked (:func:`encode_chunk`, :func:`encode_last_chunk`);
    otherwise the body bytes pass as they are. ``trailers`` tells whether the request
    declared trailers (Go forwards received trailers only then). ``attributes`` is what
    4.34's HTTP inbound gives routing's ``attrs``: ``:method`` (upper case), ``:path``
    (``URL.Path``) and each header left after Go's parsing and 4.34's hop-by-hop
    removal, lower-cased name -> first value, ``user-agent`` "" when absent.
    """

    head: bytes
    chunked: bool
    trailers: bool
    attributes: dict[str, str]


def plan_forward_request(request: ProxyRequest, *, chunked: bool, length: int) -> ForwardPlan:
    """The request as 4.34 writes it to the origin (Go ``Request.Write``).

    ``chunked``/``length`` is the client's body framing (``length`` is ignored when
    chunked).
    """
    header = GoHeader(request.headers)
    # http.ReadRequest: fixPragmaCacheControl, then the transfer headers.
    pragma = header.values("Pragma")
    if pragma and pragma[0] == "no-cache" and not header.has("Cache-Control"):
        header.set("Cache-Control", "no-cache")
    header.delete("Transfer-Encoding")
    trailer_keys: list[str] = []
    if chunked:
        header.delete("Content-Length")
        if header.has("Trailer"):
            trailer_keys = _trailer_keys(header.values("Trailer"))
            header.delete("Trailer")
    # v2ray handlePlainHTTP
    remove_hop_by_hop(header)
    attributes = {":method": request.method.upper(), ":path": request.path}
    for name in header.names():
        # Starlark strings are bytes: the header's bytes as UTF-8 (others kept as escapes),
        # so that a literal compares as in 4.34 and len() counts the bytes.
        value = header.get(name).encode("latin-1").decode("utf-8", "surrogateescape")
        attributes[name.lower()] = value
    attributes.setdefault("user-agent", "")  # 4.34 sets an absent User-Agent to ""
    user_agent = header.get("User-Agent") if header.has("User-Agent") else ""
    header.set("Connection", "close")
    lines = [f"{request.method} {request.request_uri} HTTP/1.1\r\n", f"Host: {request.host}\r\n"]
    if _go_trim(user_agent):
        lines.append(f"User-Agent: {_go_trim(user_agent)}\r\n")
    body_length = UNKNOWN_LENGTH if chunked else length
    if _should_send_length(request.method, body_length, chunked):
        lines.append(f"Content-Length: {body_length}\r\n")
    elif chunked:
        lines.append("Transfer-Encoding: chunked\r\n")
    if trailer_keys:
        lines.append(f"Trailer: {','.join(sorted(trailer_keys))}\r\n")
    lines.append(header.encode(_REQUEST_WRITE_EXCLUDED))
    lines.append("\r\n")
    return ForwardPlan(
        head="".join(lines).encode("latin-1"),
        chunked=chunked,
        trailers=bool(trailer_keys),
        attributes=attributes,
    )


def _trailer_keys(values: Iterable[str]) -> list[str]:
    keys: list[str] = []
    for value in values:
        for part in value.split(","):
            key = canonical_header_name(part.strip(" \t"))
            if not key:
                continue
            if key in _FORBIDDEN_TRAILERS:
                raise RemoteProtocolError(f"bad trailer key {key!r}")
            if key not in keys:
                keys.append(key)
    return keys


def _should_send_length(method: str, length: int, chunked: bool) -> bool:
    """Go ``transferWriter.shouldSendContentLength`` (no identity coding ever set)."""
    if chunked or length < 0:
        return False
    return length > 0 or method in _LENGTH_METHODS


def encode_chunk(data: bytes | bytearray | memoryview) -> bytes:
    """One chunk of a chunked body (Go's chunkedWriter: lower-case hex size)."""
    return b"%x\r\n%s\r\n" % (len(data), bytes(data)) if len(data) else b""


def encode_last_chunk(trailers: Iterable[tuple[str, str]] = ()) -> bytes:
    """The last chunk, the trailers sorted as Go writes them, and the blank line."""
    return b"0\r\n" + GoHeader(trailers).encode().encode("latin-1") + b"\r\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyResponse:
    """An origin's response head as parsed: ``status_line`` is the raw first line
    (Go derives the reason text from it); ``chunked`` and ``length`` are the body
    framing h11 found (``length`` -1: until close or chunked)."""

    version: str
    status: int
    status_line: str
    headers: tuple[tuple[str, str], ...]
    chunked: bool


class BodyMode(Enum):
    """How the client-side response body is written."""

    NONE = "none"
    RAW = "raw"
    CHUNKED = "chunked"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponsePlan:
    """The response head for the client and how to write the body after it.

    ``keep_alive`` is False when 4.34 ends the connection after this response
    (length unknown). ``tail`` is written after the body (chunked: see
    :func:`encode_last_chunk`; Go's quirk for a chunked HEAD response: ``\\r\\n``).
    """

    head: bytes
    body: BodyMode
    keep_alive: bool
    trailers: bool
    tail: bytes


def _body_allowed(status: int) -> bool:
    return not (100 <= status < 200 or status in (204, 304))


def _go_status_text(status_line: str, status: int) -> str:
    _, _, rest = status_line.rstrip("\r\n").partition(" ")
    rest = rest.lstrip(" ")
    prefix = f"{status} "
    return rest[len(prefix) :] if rest.startswith(prefix) else rest


def plan_client_response(response: ProxyResponse, request_method: str) -> ResponsePlan:
    """The response as 4.34 writes it to the client (Go ``ReadResponse`` then v2ray's
    header edits then ``Response.Write``)."""
    header = GoHeader(response.headers)
    major, _, minor = response.version.partition(".")
    http11 = (int(major), int(minor or 0)) >= (1, 1)
    status = response.status
    is_head = request_method == "HEAD"
    # readTransfer: Transfer-Encoding only counts from HTTP/1.1 on; chunked drops
    # Content-Length.
    chunked = response.chunked and http11
    header.delete("Transfer-Encoding")
    if chunked:
        header.delete("Content-Length")
    # shouldClose(removeCloseHeader=true)
    connection = header.values("Connection")
    has_close = _has_token(connection, "close")
    if http11:
        close = has_close
        if has_close:
            header.delete("Connection")
    else:
        close = has_close or not _has_token(connection, "keep-alive")
    # fixLength
    length_text = header.get("Content-Length").strip(" \t")
    if is_head or not _body_allowed(status):
        real_length = 0
    elif chunked:
        real_length = UNKNOWN_LENGTH
    elif length_text:
        real_length = _parse_length(length_text)
    else:
        header.delete("Content-Length")
        real_length = UNKNOWN_LENGTH
    if is_head:
        length = _parse_length(length_text) if length_text else UNKNOWN_LENGTH
    else:
        length = real_length
    trailer_keys = _trailer_keys(header.values("Trailer")) if chunked else []
    if chunked:
        header.delete("Trailer")
    if real_length == UNKNOWN_LENGTH and not chunked and _body_allowed(status):
        close = True
    # v2ray
    remove_hop_by_hop(header)
    if length >= 0:
        header.set("Proxy-Connection", "keep-alive")
        header.set("Connection", "keep-alive")
        header.set("Keep-Alive", KEEP_ALIVE_TIMEOUT_TEXT)
        close = False
    else:
        close = True
    # Response.Write / newTransferWriter
    if chunked:
        length = UNKNOWN_LENGTH
    lines = [
        f"HTTP/{response.version} {status:03d} {_go_status_text(response.status_line, status)}\r\n"
    ]
    if close and not _has_token(header.values("Connection"), "close"):
        lines.append("Connection: close\r\n")
    length_sent = _should_send_length(request_method, length, chunked)
    if length_sent:
        lines.append(f"Content-Length: {length}\r\n")
    elif chunked:
        lines.append("Transfer-Encoding: chunked\r\n")
    if trailer_keys:
        lines.append(f"Trailer: {','.join(sorted(trailer_keys))}\r\n")
    lines.append(header.encode(_RESPONSE_WRITE_EXCLUDED))
    if length == 0 and not chunked and not length_sent and _body_allowed(status):
        lines.append("Content-Length: 0\r\n")
    lines.append("\r\n")
    if is_head:
        body, tail = BodyMode.NONE, (b"\r\n" if chunked else b"")
    elif chunked:
        body, tail = BodyMode.CHUNKED, b""
    elif length == 0 or not _body_allowed(status):
        body, tail = BodyMode.NONE, b""
    else:
        body, tail = BodyMode.RAW, b""
    return ResponsePlan(
        head="".join(lines).encode("latin-1"),
        body=body,
        keep_alive=not close,
        trailers=bool(trailer_keys),
        tail=tail,
    )


def _parse_length(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise RemoteProtocolError(f"bad Content-Length {text!r}")
    return int(text)


def encode_informational(response: ProxyResponse) -> bytes:
    """A 1xx response passed on before the final one (4.34 would take it for the
    final response and lose the real one; v2py passes it and waits for the next)."""
    header = GoHeader(response.headers)
    remove_hop_by_hop(header)
    text = _go_status_text(response.status_line, response.status)
    head = f"HTTP/{response.version} {response.status:03d} {text}\r\n{header.encode()}\r\n"
    return head.encode("latin-1")


# -- incremental readers (h11) ----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestHeadReceived:
    """A request head; ``chunked``/``length`` is its body framing."""

    request: ProxyRequest
    chunked: bool
    length: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestBodyReceived:
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestEnded:
    """The request is complete; ``trailers`` came after a chunked body."""

    trailers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientClosed:
    """The client ended its side between requests."""


RequestEvent = RequestHeadReceived | RequestBodyReceived | RequestEnded | ClientClosed


def _raw_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]


def _lacks_host(head: bytes) -> bool:
    """Whether an HTTP/1.1 head (complete in ``head``) has no Host line: h11 refuses
    such a request, 4.34 serves it (the URI gives the host)."""
    lines = head.split(b"\n")
    if not lines[0].rstrip(b"\r").endswith(b"HTTP/1.1"):
        return False
    for line in lines[1:]:
        line = line.rstrip(b"\r")
        if not line:
            return True
        if line.split(b":", 1)[0].lower() == b"host":
            return False
    return True


class HttpRequestReader:
    """Client requests one at a time, from a byte stream (h11 does the parsing).

    ``receive_data(data)`` (``b""`` = EOF), then ``next_event()`` until it returns
    None (more data needed, or the request ended: call :meth:`start_next` to parse
    the next pipelined one). :meth:`take_trailing` hands over the bytes after the
    current request (a CONNECT tunnel's first bytes). Malformed input raises
    RemoteProtocolError from ``next_event``.
    """

    def __init__(self, *, max_head_bytes: int = HEAD_MAX_BYTES) -> None:
        self._max_head = max_head_bytes
        self._raw: bytearray | None = bytearray()  # bytes of a head still being parsed
        self._injected = False
        self._ended = False
        self._eof = False
        self._conn = self._new_conn()

    def _new_conn(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_head)

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed client bytes; ``b""`` is the client's EOF (later bytes are ignored)."""
        if self._eof:
            return
        if not data:
            self._eof = True
        elif self._raw is not None:
            self._raw += data
        self._conn.receive_data(bytes(data))

    def next_event(self) -> RequestEvent | None:
        """The next event, or None. Raises RemoteProtocolError on a malformed request."""
        if self._ended:
            return None
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            if not self._retry_with_host():
                raise RemoteProtocolError(f"bad request: {exc}") from exc
            return self.next_event()
        if event is h11.NEED_DATA or event is h11.PAUSED:
            return None
        if isinstance(event, h11.Request):
            self._raw = None
            headers = _raw_headers(event.headers.raw_items())
            if self._injected:
                del headers[0]
            request = make_proxy_request(
                event.method.decode("latin-1"),
                event.target.decode("latin-1"),
                event.http_version.decode("latin-1"),
                headers,
            )
            chunked = any(name.lower() == "transfer-encoding" for name, _ in headers)
            length = 0
            if not chunked:
                for name, value in headers:
                    if name.lower() == "content-length":
                        length = int(value)
            return RequestHeadReceived(request=request, chunked=chunked, length=length)
        if isinstance(event, h11.Data):
            return RequestBodyReceived(data=bytes(event.data))
        if isinstance(event, h11.EndOfMessage):
            self._ended = True
            return RequestEnded(trailers=tuple(_raw_headers(event.headers.raw_items())))
        if isinstance(event, h11.ConnectionClosed):
            self._ended = True
            return ClientClosed()
        raise RemoteProtocolError(f"unexpected {type(event).__name__}")  # pragma: no cover

    def _retry_with_host(self) -> bool:
        raw = self._raw
        if raw is None or self._injected:
            return False
        end = find_head_end(raw)
        if end is None or not _lacks_host(bytes(raw[:end])):
            return False
        first = raw.index(b"\n") + 1
        self._injected = True
        self._conn = self._new_conn()
        self._conn.receive_data(bytes(raw[:first]) + b"Host: -\r\n" + bytes(raw[first:]))
        if self._eof:
            self._conn.receive_data(b"")
        return True

    def start_next(self) -> None:
        """Begin the next request (what followed the last one is kept)."""
        data, closed = self._conn.trailing_data
        self._conn = self._new_conn()
        self._raw = bytearray(data)
        self._injected = self._ended = False
        if data:
            self._conn.receive_data(data)
        if closed or self._eof:
            self._conn.receive_data(b"")

    def take_trailing(self) -> bytes:
        """The bytes received after the current request; the reader is done after this."""
        data, _ = self._conn.trailing_data
        self._ended = True
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseHeadReceived:
    response: ProxyResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class InformationalReceived:
    response: ProxyResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseBodyReceived:
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseEnded:
    trailers: tuple[tuple[str, str], ...] = ()


ResponseEvent = ResponseHeadReceived | InformationalReceived | ResponseBodyReceived | ResponseEnded


class HttpResponseReader:
    """The origin's response to one forwarded request (h11 does the parsing; it knows a
    HEAD response has no body). Same verbs as :class:`HttpRequestReader`; a response
    that is malformed or cut short raises RemoteProtocolError from ``next_event``."""

    def __init__(self, request_method: str, *, max_head_bytes: int = HEAD_MAX_BYTES) -> None:
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head_bytes)
        self._conn.send(
            h11.Request(
                method=request_method.encode("latin-1"),
                target=b"/",
                headers=[(b"host", b"-")],
            )
        )
        self._conn.send(h11.EndOfMessage())
        # The raw bytes up to the first status line: Go takes the reason text from it.
        self._line: bytearray | None = bytearray()
        self._ended = False

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed origin bytes; ``b""`` is the origin's EOF."""
        if data and self._line is not None and len(self._line) < HEAD_MAX_BYTES:
            self._line += data
        self._conn.receive_data(bytes(data))

    def _response(self, event: h11.Response | h11.InformationalResponse) -> ProxyResponse:
        version = event.http_version.decode("latin-1")
        if self._line is not None and b"\n" in self._line:
            line = bytes(self._line).split(b"\n", 1)[0].decode("latin-1")
        else:  # after a 1xx: h11's reason is all there is
            reason = event.reason.decode("latin-1")
            line = f"HTTP/{version} {event.status_code}" + (f" {reason}" if reason else "")
        self._line = None
        headers = _raw_headers(event.headers.raw_items())
        chunked = any(name.lower() == "transfer-encoding" for name, _ in headers)
        return ProxyResponse(
            version=version,
            status=event.status_code,
            status_line=line,
            headers=tuple(headers),
            chunked=chunked,
        )

    def next_event(self) -> ResponseEvent | None:
        """The next event, or None while more data is needed (or after the end)."""
        if self._ended:
            return None
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise RemoteProtocolError(f"bad response: {exc}") from exc
        if event is h11.NEED_DATA or event is h11.PAUSED:
            return None
        if isinstance(event, h11.InformationalResponse):
            return InformationalReceived(response=self._response(event))
        if isinstance(event, h11.Response):
            return ResponseHeadReceived(response=self._response(event))
        if isinstance(event, h11.Data):
            return ResponseBodyReceived(data=bytes(event.data))
        if isinstance(event, h11.EndOfMessage):
            self._ended = True
            return ResponseEnded(trailers=tuple(_raw_headers(event.headers.raw_items())))
        self._ended = True
        raise RemoteProtocolError("origin closed before the response ended")


# --------------------------------------------------------------------------
# the HTTP outbound's client side (4.34 ``proxy/http/client.go`` ``setUpHTTPTunnel``)

#: Go's default ``User-Agent`` on a request that sets none.
GO_USER_AGENT = "Go-http-client/1.1"


def connect_target(host: str, port: int) -> str:
    """``host:port`` as Go's ``Destination.NetAddr`` writes it (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def encode_connect_request(target: str, credentials: tuple[str, str] | None = None) -> bytes:
    """The CONNECT request 4.34's HTTP outbound writes (Go's ``Request.Write``: request
    line, ``Host``, ``User-Agent``, then the headers sorted by name) [verified against
    the binary]. ``credentials`` (user, password) adds ``Proxy-Authorization: Basic``."""
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}", f"User-Agent: {GO_USER_AGENT}"]
    if credentials is not None:
        token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode("ascii")
        lines.append(f"Proxy-Authorization: Basic {token}")
    lines.append("Proxy-Connection: Keep-Alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True, kw_only=True)
class TunnelEstablished:
    """The proxy answered the CONNECT with 200; the connection is now a raw tunnel."""

    status_line: str


class HttpConnectClient:
    """Client side of one HTTP CONNECT handshake (h11 parses the proxy's answer).

    The request is queued at construction: flush :meth:`data_to_send`, feed the
    proxy's bytes to :meth:`receive_data` (``b""`` is EOF) until :meth:`next_event`
    returns :class:`TunnelEstablished`; :attr:`trailing_data` then holds tunnel bytes
    that arrived behind the response head. Any status but exactly 200 (a 1xx
    included, as Go's ``ReadResponse`` takes it for the answer) raises
    RemoteProtocolError ``Proxy responded with non 200 code: <status>`` from
    :meth:`next_event`, as does a malformed or missing answer.

    Unlike 4.34, bytes the proxy sends right behind a 200 are kept: Go reads the
    answer through a ``bufio.Reader`` that is then dropped, losing them.
    """

    def __init__(
        self,
        target: str,
        credentials: tuple[str, str] | None = None,
        *,
        max_head_bytes: int = HEAD_MAX_BYTES,
    ) -> None:
        self._out = encode_connect_request(target, credentials)
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head_bytes)
        self._conn.send(
            h11.Request(
                method=b"CONNECT",
                target=target.encode("utf-8", "surrogateescape"),
                headers=[(b"host", target.encode("utf-8", "surrogateescape"))],
            )
        )
        self._conn.send(h11.EndOfMessage())
        self._line = bytearray()
        self._done = False
        self._trailing = b""

    def data_to_send(self) -> bytes:
        """The request bytes (once); empties the buffer."""
        out, self._out = self._out, b""
        return out

    @property
    def trailing_data(self) -> bytes:
        """Bytes received behind the 200 response head (empty before it)."""
        return self._trailing

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes from the proxy; ``b""`` is EOF."""
        if self._done:
            self._trailing += data
            return
        if len(self._line) < HEAD_MAX_BYTES:
            self._line += data
        self._conn.receive_data(bytes(data))

    def _status(self, code: int) -> str:
        # Go's Response.Status: the status line after the version ("407 Proxy ...").
        line = bytes(self._line).split(b"\n", 1)[0].rstrip(b"\r").decode("latin-1")
        _, _, rest = line.partition(" ")
        return rest.strip() or str(code)

    def next_event(self) -> TunnelEstablished | None:
        """:class:`TunnelEstablished` once, else None while more input is needed."""
        if self._done:
            return None
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise RemoteProtocolError(f"bad proxy response: {exc}") from exc
        if event is h11.NEED_DATA:
            return None
        if isinstance(event, h11.Response | h11.InformationalResponse):
            status = self._status(event.status_code)
            if event.status_code != HTTP_OK:
                raise RemoteProtocolError(f"Proxy responded with non 200 code: {status}")
            self._done = True
            self._trailing = self._conn.trailing_data[0]
            return TunnelEstablished(status_line=status)
        raise RemoteProtocolError("proxy closed the connection before answering")
