"""WebSocket as a stream layer (v2ray-core 4.34 ``transport/internet/websocket``).

Framing is ``websockets``' sans-I/O :class:`websockets.protocol.Protocol` (its C
masking speedups included); the HTTP upgrade around it is our own, because the
answers must be those of Go's ``net/http`` server and gorilla's ``Upgrader`` byte for
byte (docs/spec/transports.md section 2; ``protocol/http_head.py``):

* server: the URL path must equal the configured path after percent-decoding
  (query ignored), else ``404`` with ``Date`` and ``Content-Length: 0``; then
  gorilla's checks (``Connection: upgrade``, ``Upgrade: websocket``, ``GET``,
  version 13, a key) answer ``400``/``405`` as Go does; those answers keep an
  HTTP/1.1 connection alive for the next request, as Go's server does. A head over
  6144 bytes gets ``431``, an unreadable one ``400``, both closing. Each head must
  arrive within 4 s (Go's ``ReadHeaderTimeout``). No subprotocol or extension is
  ever echoed. The first ``X-Forwarded-For`` address, when an IP, becomes the
  stream's peer (port 0).
* client: gorilla's request (``Host`` from ``headers.Host`` else the destination,
  port omitted for ws:80 and wss:443; ``User-Agent: Go-http-client/1.1`` unless
  configured; then every header sorted by name); anything but ``101`` with the
  right ``Sec-WebSocket-Accept`` fails the dial; 8 s handshake timeout.
* data: every write is one binary message; all data messages (text or binary,
  fragmented or not) are one byte stream for the reader; pings are answered; a
  Close is echoed and ends the stream; ``close()`` sends Close 1000 first. There is
  no half-close in 4.34's WebSocket connection: ``write_eof`` sends nothing. No size
  limit, no compression.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import time
from collections.abc import Callable
from email.utils import formatdate

from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side

from v2py.config.stream import WsConfig
from v2py.protocol.http_head import (
    HEAD_END,
    RequestHead,
    RequestHeadError,
    go_error_reply,
    parse_request_head,
    request_path,
    ws_accept,
)
from v2py.transport.layer import (
    DecodingLayerStream,
    InnerTransport,
    LayerAccept,
    LayerTransport,
)
from v2py.transport.stream import READ_CHUNK_BYTES, PushTarget, Stream

log = logging.getLogger(__name__)
#: Given to every websockets Protocol (saves a getLogger lookup per connection).
_WS_LOGGER = logging.getLogger("websockets.protocol")

__all__ = ["WsStream", "WsTransport", "WsHandshakeError"]

#: Go ``http.Server.MaxHeaderBytes`` (2048) plus the 4096 bytes Go allows on top.
MAX_HEAD_BYTES = 2048 + 4096
#: Go ``ReadHeaderTimeout`` of 4.34's WebSocket server.
READ_HEADER_TIMEOUT_S = 4.0
#: gorilla Dialer ``HandshakeTimeout`` in 4.34's dialer.go.
CLIENT_HANDSHAKE_TIMEOUT_S = 8.0
#: Largest response head the client reads.
MAX_RESPONSE_HEAD_BYTES = 16 * 1024
#: Destinations whose upgrade request a client transport keeps ready.
_REQUEST_CACHE_SIZE = 256
#: Go discards at most this much of an error request's body to keep the connection.
MAX_DISCARDED_BODY_BYTES = 256 * 1024
DEFAULT_USER_AGENT = "Go-http-client/1.1"
_CLOSE_NORMAL = b"\x03\xe8"  # code 1000, no reason (gorilla FormatCloseMessage)
_RESERVED_CLIENT_HEADERS = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
    }
)


class WsHandshakeError(ConnectionError):
    """The WebSocket upgrade failed (client: the server's answer; server: the request)."""


def http_date(now: float | None = None) -> str:
    """An HTTP ``Date`` value (RFC 7231 IMF-fixdate)."""
    return formatdate(now if now is not None else time.time(), usegmt=True)


def _go_text_reply(version: tuple[int, int], status: str, date: str) -> bytes:
    # gorilla returnError: http.Error + Sec-Websocket-Version (headers in Go's order).
    body = status.partition(" ")[2] + "\n"
    return (
        f"HTTP/{version[0]}.{version[1]} {status}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Sec-Websocket-Version: 13\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"Date: {date}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode("latin-1")


def _not_found(version: tuple[int, int], date: str) -> bytes:
    return (
        f"HTTP/{version[0]}.{version[1]} 404 Not Found\r\nDate: {date}\r\nContent-Length: 0\r\n\r\n"
    ).encode("latin-1")


def _forwarded_for(head: RequestHead) -> str | None:
    """The first ``X-Forwarded-For`` entry when it is an IP (4.34 ``ParseXForwardedFor``)."""
    import ipaddress

    value = head.get("x-forwarded-for")
    if not value:
        return None
    first = value.split(",")[0]
    if first.startswith("[") and first.endswith("]"):
        first = first[1:-1]
    if first and (not first[0].isalnum() or not first[-1].isalnum()):
        first = first.strip()
    try:
        return str(ipaddress.ip_address(first))
    except ValueError:
        return None


# --------------------------------------------------------------------------
# server handshake


async def _read_head(below: Stream, buffer: bytearray) -> tuple[bytes, bytearray] | None:
    """Read one request head (through the blank line) within ``READ_HEADER_TIMEOUT_S``.

    Returns (head, rest) or None when the peer closed or went silent before any
    byte. Raises WsHandshakeError after answering a broken or oversized head.
    """
    try:
        async with asyncio.timeout(READ_HEADER_TIMEOUT_S):
            while True:
                end = buffer.find(HEAD_END)
                if end >= 0:
                    if end + len(HEAD_END) > MAX_HEAD_BYTES:
                        break
                    head = bytes(buffer[: end + len(HEAD_END)])
                    return head, buffer[end + len(HEAD_END) :]
                if len(buffer) > MAX_HEAD_BYTES:
                    break
                data = await below.read()
                if not data:
                    return None
                buffer += data
    except TimeoutError:
        if buffer:
            # Go parses the partial line it has at the deadline; garbage gets a 400.
            _reply(below, go_error_reply("400 Bad Request"))
            raise WsHandshakeError("incomplete request head at the header timeout") from None
        return None
    _reply(below, go_error_reply("431 Request Header Fields Too Large"))
    raise WsHandshakeError("request head too large")


def _reply(below: Stream, data: bytes) -> None:
    with contextlib.suppress(ConnectionError):
        below.write(data)


async def server_handshake(
    below: Stream, path: str, *, clock: Callable[[], float] = time.time
) -> tuple[bytes, str | None] | None:
    """Serve HTTP on ``below`` until a WebSocket upgrade on ``path`` succeeds.

    Returns (bytes already received after the upgrade request, X-Forwarded-For IP),
    or None when the client went away. Raises WsHandshakeError once the connection
    must close (after the answer Go would give).
    """
    buffer = bytearray()
    while True:
        got = await _read_head(below, buffer)
        if got is None:
            return None
        head_bytes, buffer = got
        try:
            head = parse_request_head(head_bytes)
        except RequestHeadError as exc:
            _reply(below, go_error_reply("400 Bad Request"))
            raise WsHandshakeError(str(exc)) from None
        if head.version[0] != 1:
            _reply(below, go_error_reply("505 HTTP Version Not Supported"))
            raise WsHandshakeError("unsupported HTTP version")
        if head.version >= (1, 1) and head.get("host") is None:
            _reply(below, go_error_reply("400 Bad Request", "missing required Host header"))
            raise WsHandshakeError("missing Host")
        # (the Date of an error answer is only formatted when one is given)
        answer = _answer(head, path, clock())
        if answer is None:
            key = head.get("sec-websocket-key") or ""
            below.write(
                (
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Accept: {ws_accept(key)}\r\n\r\n"
                ).encode("latin-1")
            )
            return bytes(buffer), _forwarded_for(head)
        _reply(below, answer)
        keep_alive = head.version >= (1, 1) and not head.has_token("connection", "close")
        if not keep_alive or head.get("transfer-encoding") is not None:
            raise WsHandshakeError(f"answered {answer[9:12].decode()}")
        body = _content_length(head)
        if body is None or body > MAX_DISCARDED_BODY_BYTES:
            raise WsHandshakeError("request body not skippable")
        buffer = await _skip(below, buffer, body)


def _answer(head: RequestHead, path: str, now: float) -> bytes | None:
    """Go's answer to a request head, or None to upgrade."""
    if request_path(head.target) != path:
        return _not_found(head.version, http_date(now))
    # gorilla Upgrader.Upgrade, in its order.
    if not head.has_token("connection", "upgrade") or not head.has_token("upgrade", "websocket"):
        return _go_text_reply(head.version, "400 Bad Request", http_date(now))
    if head.method != "GET":
        return _go_text_reply(head.version, "405 Method Not Allowed", http_date(now))
    if not head.has_token("sec-websocket-version", "13"):
        return _go_text_reply(head.version, "400 Bad Request", http_date(now))
    if not head.get("sec-websocket-key"):
        return _go_text_reply(head.version, "400 Bad Request", http_date(now))
    return None


def _content_length(head: RequestHead) -> int | None:
    value = head.get("content-length")
    if value is None:
        return 0
    return int(value) if value.isascii() and value.isdigit() else None


async def _skip(below: Stream, buffer: bytearray, count: int) -> bytearray:
    while len(buffer) < count:
        async with asyncio.timeout(READ_HEADER_TIMEOUT_S):
            data = await below.read()
        if not data:
            raise WsHandshakeError("closed inside a request body")
        buffer += data
    return buffer[count:]


# --------------------------------------------------------------------------
# client handshake


def client_request(config: WsConfig, host: str, port: int, *, tls: bool, key: str) -> bytes:
    """gorilla's upgrade request for a dial to ``host:port``.

    Raises:
        WsHandshakeError: ``headers`` sets one gorilla refuses to duplicate.
    """
    before, after = client_request_parts(config, host, port, tls=tls)
    return before + key.encode("ascii") + after


def client_request_parts(
    config: WsConfig, host: str, port: int, *, tls: bool
) -> tuple[bytes, bytes]:
    """gorilla's upgrade request for a dial to ``host:port`` as the bytes before and
    after the ``Sec-WebSocket-Key`` value (the one part that changes per connection).

    Raises:
        WsHandshakeError: ``headers`` sets one gorilla refuses to duplicate.
    """
    host_text = f"[{host}]" if ":" in host and not host.startswith("[") else host
    default_port = 443 if tls else 80
    authority = host_text if port == default_port else f"{host_text}:{port}"
    user_agent = DEFAULT_USER_AGENT
    extra: dict[str, str] = {}
    for name, value in config.headers.items():
        canonical = _canonical(name)
        lowered = canonical.lower()
        if lowered == "host":
            authority = value
        elif lowered in _RESERVED_CLIENT_HEADERS:
            raise WsHandshakeError(f"websocket: duplicate header not allowed: {canonical}")
        elif lowered == "user-agent":
            user_agent = value
        elif lowered == "sec-websocket-protocol":
            extra["Sec-WebSocket-Protocol"] = value
        else:
            extra[canonical] = value
    extra.update(
        {
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "",  # the key goes between the two parts
            "Sec-WebSocket-Version": "13",
            "Upgrade": "websocket",
        }
    )
    lines = [
        f"GET {config.normalized_path} HTTP/1.1",
        f"Host: {authority}",
        f"User-Agent: {user_agent}",
    ]
    lines.extend(f"{name}: {extra[name]}" for name in sorted(extra, key=lambda n: n.encode()))
    # The key's line is ours alone: a configured Sec-WebSocket-Key was refused above.
    cut = lines.index("Sec-WebSocket-Key: ") + 1
    before = "\r\n".join(lines[:cut])
    after = "".join(f"\r\n{line}" for line in lines[cut:]) + "\r\n\r\n"
    return before.encode("utf-8"), after.encode("utf-8")


def _canonical(name: str) -> str:
    """Go ``textproto.CanonicalMIMEHeaderKey`` (names with odd bytes stay as they are)."""
    if not name or any(not (c.isascii() and (c.isalnum() or c == "-")) for c in name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


async def client_handshake(below: Stream, request: bytes, key: str) -> bytes:
    """Send ``request`` and check the answer; returns the bytes after the 101 head.

    Raises:
        WsHandshakeError: any status but 101, or a wrong accept value.
    """
    below.write(request)
    buffer = bytearray()
    while (end := buffer.find(HEAD_END)) < 0:
        if len(buffer) > MAX_RESPONSE_HEAD_BYTES:
            raise WsHandshakeError("response head too large")
        data = await below.read()
        if not data:
            raise WsHandshakeError("connection closed during the WebSocket handshake")
        buffer += data
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or status[1] != "101":
        raise WsHandshakeError(f"bad handshake: {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    if (
        "websocket" not in headers.get("upgrade", "").lower()
        or "upgrade" not in headers.get("connection", "").lower()
        or headers.get("sec-websocket-accept") != ws_accept(key)
    ):
        raise WsHandshakeError("bad handshake: wrong upgrade headers")
    return bytes(buffer[end + len(HEAD_END) :])


# --------------------------------------------------------------------------
# the stream


class WsStream(DecodingLayerStream):
    """A byte stream over WebSocket messages; pushes when the stream below can.

    ``peer`` is the X-Forwarded-For address when the server got one.
    """

    def __init__(
        self,
        below: Stream,
        *,
        client: bool,
        initial: bytes = b"",
        peer: tuple[str, int] | None = None,
    ) -> None:
        self._below = below
        self._ws = Protocol(
            Side.CLIENT if client else Side.SERVER, max_size=None, logger=_WS_LOGGER
        )
        self._peer = peer
        self._eof = False
        self._closed = False
        self._held: list[bytes] = []
        self._push: PushTarget | None = None
        self._push_paused = False
        if initial:
            self._feed(initial)

    def _feed(self, data: bytes) -> None:
        ws = self._ws
        ws.receive_data(data)
        for frame in ws.events_received():
            if not isinstance(frame, Frame):
                continue  # handshake events: never produced by an OPEN protocol
            opcode = frame.opcode
            if opcode is Opcode.BINARY or opcode is Opcode.TEXT or opcode is Opcode.CONT:
                if frame.data:
                    self._held.append(bytes(frame.data))
            elif opcode is Opcode.CLOSE:
                self._eof = True
        self._send_pending()
        if ws.state.name != "OPEN":
            self._eof = True  # a Close or a protocol error: nothing more to read

    def _send_pending(self) -> None:
        for out in self._ws.data_to_send():
            if out:
                with contextlib.suppress(ConnectionError):
                    self._below.write(out)
            else:
                # The protocol's end of stream: a server closes TCP after the Close.
                self._eof = True
                with contextlib.suppress(ConnectionError, OSError):
                    self._below.write_eof()

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        while not self._held:
            if self._eof:
                return b""
            data = await self._below.read()
            if not data:
                self._eof = True
                with contextlib.suppress(Exception):
                    self._ws.receive_eof()
                return b""
            self._feed(data)
        held = self._held
        first = held[0]
        if len(first) >= max_bytes:
            if len(first) == max_bytes:
                del held[0]
                return first
            held[0] = first[max_bytes:]
            return first[:max_bytes]
        total = len(first)
        count = 1
        while count < len(held) and total + len(held[count]) <= max_bytes:
            total += len(held[count])
            count += 1
        chunk = first if count == 1 else b"".join(held[:count])
        del held[:count]
        return chunk

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise ConnectionResetError("write on a closed WebSocket stream")
        if not data:
            return
        ws = self._ws
        if ws.state.name != "OPEN":
            raise ConnectionResetError("the WebSocket is closing")
        ws.send_binary(bytes(data))
        for out in ws.data_to_send():
            self._below.write(out)

    # -- push mode (DecodingLayerStream) -------------------------------------------
    def _take_held(self) -> bytes:
        held = self._held
        if not held:
            return b""
        data = held[0] if len(held) == 1 else b"".join(held)
        held.clear()
        return data

    def _held_end(self) -> bool:
        return self._eof and not self._held

    def pushed_data(self, data: bytes | bytearray) -> None:
        target = self._push
        if target is None:
            return
        try:
            self._feed(bytes(data))
        except Exception as exc:  # a library error on bad framing
            self.stop_push()
            target.pushed_error(exc)
            return
        self._deliver()

    def pushed_eof(self) -> None:
        self._eof = True
        self._deliver()

    def _deliver(self) -> None:
        """Hand on what is held, then the end, unless the target paused us."""
        target = self._push
        if target is None or self._push_paused:
            return
        held = self._take_held()
        if held:
            target.pushed_data(held)
        if self._eof and self._push is target and not self._push_paused:
            self.stop_push()
            target.pushed_eof()

    def write_eof(self) -> None:
        """4.34's WebSocket connection has no half-close: nothing is sent."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        ws = self._ws
        if ws.state.name == "OPEN":
            with contextlib.suppress(Exception):
                ws.send_close(1000, "")
                for out in ws.data_to_send():
                    if out:
                        self._below.write(out)
        self._below.close()


# --------------------------------------------------------------------------
# the transport


class WsTransport(LayerTransport):
    """``network: "ws"`` over TCP (``tls`` says whether TLS sits beneath, for the
    default port in ``Host``)."""

    name = "ws"

    def __init__(self, inner: InnerTransport, config: WsConfig, *, tls: bool = False) -> None:
        super().__init__(inner)
        self.config = config
        self.tls = tls
        #: The upgrade request around its key, per destination (built once).
        self._requests: dict[tuple[str, int], tuple[bytes, bytes]] = {}

    def _request(self, host: str, port: int, key: str) -> bytes:
        parts = self._requests.get((host, port))
        if parts is None:
            parts = client_request_parts(self.config, host, port, tls=self.tls)
            if len(self._requests) >= _REQUEST_CACHE_SIZE:
                self._requests.clear()
            self._requests[host, port] = parts
        return parts[0] + key.encode("ascii") + parts[1]

    async def dial(self, host: str, port: int, *, timeout: float | None = None) -> Stream:
        loop = asyncio.get_running_loop()
        budget = CLIENT_HANDSHAKE_TIMEOUT_S if timeout is None else timeout
        deadline = loop.time() + budget
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        request = self._request(host, port, key)
        # (the transport below keeps to ``timeout`` itself: TCP's connect, TLS's handshake)
        below = await self.inner.dial(host, port, timeout=budget)
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + CLIENT_HANDSHAKE_TIMEOUT_S)):
                rest = await client_handshake(below, request, key)
        except BaseException:
            below.close()
            raise
        return WsStream(below, client=True, initial=rest)

    def _accepting(self) -> LayerAccept:
        path = self.config.normalized_path

        async def accept(below: Stream) -> Stream | None:
            try:
                upgraded = await server_handshake(below, path)
            except (WsHandshakeError, OSError) as exc:
                log.debug("websocket: %s from %s", exc, below.peer)
                return None
            if upgraded is None:
                return None
            rest, forwarded = upgraded
            peer = (forwarded, 0) if forwarded is not None else None
            return WsStream(below, client=False, initial=rest, peer=peer)

        return accept
