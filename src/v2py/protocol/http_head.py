"""HTTP/1.x request heads as Go's ``net/http`` ``readRequest`` sees them, for the two
V2Ray layers that take one: the WebSocket server (``transport/internet/websocket/hub.go``,
a Go ``http.Server`` plus gorilla's ``Upgrader``) and the TCP ``http`` header
(``transport/internet/headers/http/http.go``). Their answers must be Go's byte for
byte, so this is a small parser of our own rather than h11 (which, for one, refuses
an HTTP/1.1 request without ``Host`` that the TCP header must accept).

Pure: bytes in, values out; the date string is passed in.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

__all__ = [
    "HEAD_END",
    "RequestHead",
    "RequestHeadError",
    "go_error_reply",
    "parse_request_head",
    "partial_head_ok",
    "request_path",
    "ws_accept",
]

HEAD_END = b"\r\n\r\n"
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class RequestHeadError(ValueError):
    """The head is not an HTTP request Go would read; ``reason`` as Go words it
    where Go shows it (``"missing required Host header"``), else empty."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestHead:
    """A parsed request line and header block (names lower-cased, values in order)."""

    method: str
    target: str
    version: tuple[int, int]
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        """The first value of header ``name`` (Go ``Header.Get``), or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def has_token(self, name: str, token: str) -> bool:
        """Whether any value of ``name`` lists ``token`` (comma-separated, any case)."""
        wanted = token.lower()
        for value in self.headers.get(name.lower(), ()):
            if any(part.strip().lower() == wanted for part in value.split(",")):
                return True
        return False


def _version(text: str) -> tuple[int, int] | None:
    # Go ParseHTTPVersion: "HTTP/" digit "." digit.
    if len(text) != 8 or not text.startswith("HTTP/") or text[6] != ".":
        return None
    major, minor = text[5], text[7]
    if not (major.isascii() and major.isdigit() and minor.isascii() and minor.isdigit()):
        return None
    return int(major), int(minor)


def _request_line(line: str) -> tuple[str, str, tuple[int, int]]:
    method, sep1, rest = line.partition(" ")
    target, sep2, proto = rest.partition(" ")
    if not sep1 or not sep2:
        raise RequestHeadError(f"malformed HTTP request {line!r}")
    version = _version(proto)
    if version is None:
        raise RequestHeadError(f"malformed HTTP version {proto!r}")
    if not method or any(ord(c) > 0x7F or ord(c) not in _TOKEN for c in method):
        raise RequestHeadError(f"invalid method {method!r}")
    if not target:
        raise RequestHeadError("empty request target")
    return method, target, version


def parse_request_head(head: bytes) -> RequestHead:
    """Parse a complete head (through the blank line; the blank line may be absent).

    Raises:
        RequestHeadError: not a request Go's ``readRequest`` accepts.
    """
    text = head.decode("latin-1")
    lines = text.split("\n")
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise RequestHeadError("empty request")
    method, target, version = _request_line(lines[0])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name[0] in " \t":
            raise RequestHeadError(f"malformed MIME header line: {line!r}")
        headers.setdefault(name.strip().lower(), []).append(value.strip(" \t"))
    if len(headers.get("host", ())) > 1:
        raise RequestHeadError("too many Host headers")
    return RequestHead(
        method=method,
        target=target,
        version=version,
        headers={k: tuple(v) for k, v in headers.items()},
    )


def partial_head_ok(prefix: bytes) -> bool:
    """Whether an incomplete head could still become a request.

    Go's header reader (TCP ``http`` header) parses what it has each time it reads
    more, treating the incomplete last line as complete, and gives up at the first
    line that cannot be one (garbage gets its 400 at once).
    """
    if not prefix:
        return False  # Go: an empty first line is EOF, not "need more"
    text = prefix.decode("latin-1")
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    try:
        _request_line(lines[0])
    except RequestHeadError:
        return False
    return all(":" in line and line[:1] not in (" ", "\t") for line in lines[1:])


def request_path(target: str) -> str | None:
    """The decoded URL path of a request target (Go ``URL.Path``), None if invalid.

    Origin form ``/a%2Fb?q`` gives ``/a/b``; absolute form ``http://h/x`` gives ``/x``;
    ``*`` stays ``*``. Fragments are not split off (Go's ``ParseRequestURI``).
    """
    if target == "*":
        return "*"
    path = target
    if not target.startswith("/"):
        scheme, sep, rest = target.partition("://")
        if not sep or not scheme.isascii() or not scheme[:1].isalpha():
            return None
        slash = rest.find("/")
        query = rest.find("?")
        if slash < 0 or (0 <= query < slash):
            return ""
        path = rest[slash:]
    path = path.partition("?")[0]
    if not _valid_escapes(path):
        return None
    return unquote_to_bytes(path).decode("utf-8", "surrogateescape")


def _valid_escapes(text: str) -> bool:
    index = text.find("%")
    while index >= 0:
        pair = text[index + 1 : index + 3]
        if len(pair) < 2 or any(c not in "0123456789abcdefABCDEF" for c in pair):
            return False
        index = text.find("%", index + 3)
    return True


def ws_accept(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key`` (RFC 6455 4.2.2)."""
    digest = hashlib.sha1(key.encode("latin-1") + _WS_GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def go_error_reply(status: str, reason: str = "") -> bytes:
    """Go ``net/http``'s reply to a request it cannot read; it closes afterwards."""
    text = f"{status}: {reason}" if reason else status
    return (
        f"HTTP/1.1 {text}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Connection: close\r\n\r\n{text}"
    ).encode("latin-1")
