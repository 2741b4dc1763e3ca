"""HTTP/2 (``network: "h2"`` / ``"http"``) as v2ray-core 4.34
``transport/internet/http`` (docs/spec/transports.md section 4), on the sans-I/O ``h2``
library (and ``h11`` to read HTTP/1.x requests).

Each proxied connection is one HTTP/2 stream: the request body is the uplink, the
response body the downlink.

Client (4.34 ``dialer.go`` over Go's ``http2.Transport``):

* TLS is required ("TLS must be enabled for http transport."); ALPN must select ``h2``.
* Connections are pooled per destination for the transport's lifetime; a new stream
  goes on the first live connection whose peer still allows another concurrent stream
  (``SETTINGS_MAX_CONCURRENT_STREAMS``), else on a new connection.
* Request: ``PUT``, ``:authority`` a random entry of ``host``, ``:path`` the normalized
  path, ``accept-encoding: identity``, ``user-agent: Go-http-client/2.0``; SETTINGS
  ENABLE_PUSH=0, INITIAL_WINDOW_SIZE=4 MiB, MAX_HEADER_LIST_SIZE=10 MiB and a 1 GiB
  connection window, as x/net 0.7.0. A status other than 200 fails the dial.
* Closing a stream that is not finished both ways sends RST_STREAM(CANCEL).

Server (4.34 ``hub.go``: Go's ``http.Server``; with TLS ``ServeTLS``, without it h2c):

* ALPN ``h2`` (TLS) or the connection preface (no TLS) means HTTP/2; anything else is
  served as HTTP/1.x (as Go does; a 4.34 client never sends it).
* Host check: ``:authority`` / ``Host`` must equal one of ``host`` (no port).
  Path check: the decoded URL path must *start with* the path (no ``/`` boundary). The
  method is not checked. A miss is ``404`` with ``content-length: 0`` (HTTP/2: then
  RST_STREAM NO_ERROR if the request is still open; HTTP/1.x: the connection stays
  open for the next request, as Go's bytes show).
* Success: ``200`` with ``cache-control: no-store`` and ``date``, sent at once.
* The first IP of ``X-Forwarded-For`` becomes the stream's peer (port 0).
* SETTINGS as Go's server: MAX_FRAME_SIZE=1 MiB, MAX_CONCURRENT_STREAMS=250,
  MAX_HEADER_LIST_SIZE=1 MiB+320, INITIAL_WINDOW_SIZE=1 MiB, connection window +983041.
* Request heads must arrive within 4 s (``ReadHeaderTimeout``).

Not done: the h2c ``Upgrade: h2c`` dance over HTTP/1.1 (such a request is served as
HTTP/1.1); HTTP/1.x requests with a body are streamed at once, where Go first tries to
read up to 256 KiB of the body before its 200 goes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from v2py.common.net import is_ip
from v2py.config.transport_extra import HttpConfig
from v2py.transport.layer import InnerTransport, LayerHandler, LayerListener
from v2py.transport.multiplex import ConnectionPool, FedStream, TaskSet, run_handler
from v2py.transport.stream import READ_CHUNK_BYTES, Stream

if TYPE_CHECKING:
    import h2.connection
    import h2.events

__all__ = ["H2Stream", "H2Transport"]

log = logging.getLogger(__name__)

#: What a 4.34 client dials without TLS (dialer.go).
TLS_REQUIRED = "TLS must be enabled for http transport."
#: Go ``http.Server.ReadHeaderTimeout`` in hub.go (also bounds the TLS handshake).
READ_HEADER_TIMEOUT_S = 4.0
#: The HTTP/2 connection preface (RFC 9113 section 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: Pending outgoing bytes of one stream above which ``drain`` waits.
WRITE_HIGH_WATER_BYTES = 256 * 1024
#: HTTP/2 error codes used here (RFC 9113 section 7).
NO_ERROR = 0x0
CANCEL = 0x8

#: x/net 0.7.0 ``http2.Transport`` (the Debian 4.34 client).
CLIENT_INITIAL_WINDOW = 4 << 20
CLIENT_MAX_HEADER_LIST = 10 << 20
CLIENT_CONNECTION_WINDOW_INCREMENT = 1 << 30
#: x/net 0.7.0 ``http2.Server`` defaults, as captured from 4.34.
SERVER_MAX_FRAME_SIZE = 1 << 20
SERVER_MAX_CONCURRENT_STREAMS = 250
SERVER_MAX_HEADER_LIST = (1 << 20) + 320
SERVER_INITIAL_WINDOW = 1 << 20
SERVER_CONNECTION_WINDOW_INCREMENT = (1 << 20) - 65535 + 1

_HTTP1_MAX_HEAD_BYTES = (1 << 20) + 4096


def _http_date() -> bytes:
    return email.utils.formatdate(usegmt=True).encode()


def _xff_peer(value: bytes | None) -> tuple[str, int] | None:
    """4.34 ``ParseXForwardedFor``: the first entry, if it is an IP."""
    if not value:
        return None
    first = value.split(b",", 1)[0].strip().decode("latin-1")
    return (first, 0) if is_ip(first) else None


class _Accepts:
    """The server's request check (4.34 ``Listener.ServeHTTP``)."""

    def __init__(self, config: HttpConfig) -> None:
        self.hosts = frozenset(config.hosts)
        self.path = config.normalized_path

    def ok(self, host: str, target: str) -> bool:
        if host not in self.hosts:
            return False
        if target.startswith(("http://", "https://")):
            path = urlsplit(target).path
        else:
            path = target.split("?", 1)[0].split("#", 1)[0]
        return unquote(path).startswith(self.path)


# --------------------------------------------------------------------------
# the stream


class H2Stream(FedStream):
    """One HTTP/2 stream as a :class:`~v2py.transport.stream.Stream` (pull mode)."""

    _write_high_water = WRITE_HIGH_WATER_BYTES

    def __init__(
        self, owner: _H2Connection, stream_id: int, *, peer: tuple[str, int] | None = None
    ) -> None:
        super().__init__()
        self._owner = owner
        self.stream_id = stream_id
        self._peer = peer
        self._out = bytearray()
        self._out_eof = False  # write_eof asked
        self._ended = False  # END_STREAM sent
        self._remote_ended = False
        self._closed = False
        self._writable.set()

    # -- fed by the connection ---------------------------------------------
    def _feed(self, data: bytes) -> None:
        if data:
            self._chunks.append(data)
            self._readable.set()

    def _feed_eof(self) -> None:
        self._eof = True
        self._remote_ended = True
        self._readable.set()

    def _unsent(self) -> int:
        return len(self._out)

    # -- Stream -------------------------------------------------------------
    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        data = await super().read(max_bytes)
        if data:  # the application read it: reopen the windows
            self._owner.consumed(self.stream_id, len(data))
        return data

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._error is not None:
            raise ConnectionResetError(f"write on a reset HTTP/2 stream: {self._error}")
        if self._closed or self._out_eof:
            raise ConnectionResetError("write on a closed HTTP/2 stream")
        if data:
            self._out += data
            self._owner.pump()

    async def drain(self) -> None:
        await super().drain()
        await self._owner.drain_below()

    def write_eof(self) -> None:
        if self._out_eof or self._closed or self._error is not None:
            return
        self._out_eof = True
        self._owner.pump()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._owner.stream_closed(self)
        self._closed_event.set()

    @property
    def peer(self) -> tuple[str, int] | None:
        return self._peer if self._peer is not None else self._owner.below.peer

    @property
    def local(self) -> tuple[str, int] | None:
        return self._owner.below.local


# --------------------------------------------------------------------------
# one HTTP/2 connection (either side)


class _H2Connection:
    """Drives one ``h2`` connection object over a stream below it."""

    def __init__(self, below: Stream, *, client: bool) -> None:
        import h2.config
        import h2.connection
        import h2.settings

        self.below = below
        self.client = client
        config = h2.config.H2Configuration(client_side=client, header_encoding=None)
        conn = h2.connection.H2Connection(config=config)
        codes = h2.settings.SettingCodes
        if client:
            initial = {
                codes.ENABLE_PUSH: 0,
                codes.INITIAL_WINDOW_SIZE: CLIENT_INITIAL_WINDOW,
                codes.MAX_HEADER_LIST_SIZE: CLIENT_MAX_HEADER_LIST,
            }
        else:
            initial = {
                codes.MAX_FRAME_SIZE: SERVER_MAX_FRAME_SIZE,
                codes.MAX_CONCURRENT_STREAMS: SERVER_MAX_CONCURRENT_STREAMS,
                codes.MAX_HEADER_LIST_SIZE: SERVER_MAX_HEADER_LIST,
                codes.INITIAL_WINDOW_SIZE: SERVER_INITIAL_WINDOW,
            }
        conn.local_settings = h2.settings.Settings(client=client, initial_values=initial)
        conn.max_inbound_frame_size = conn.local_settings.max_frame_size
        self.h2: h2.connection.H2Connection = conn
        self.streams: dict[int, H2Stream] = {}
        self.closed = False
        self._error: BaseException | None = None
        self._responses: dict[int, asyncio.Future[int]] = {}

    def start(self, *, upgrade_preface: bool = False) -> None:
        """Send the preface and SETTINGS (flush included)."""
        self.h2.initiate_connection()
        increment = (
            CLIENT_CONNECTION_WINDOW_INCREMENT
            if self.client
            else SERVER_CONNECTION_WINDOW_INCREMENT
        )
        self.h2.increment_flow_control_window(increment)
        self.flush()

    # -- output -------------------------------------------------------------
    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.closed:
            try:
                self.below.write(data)
            except (ConnectionError, OSError) as exc:
                self.terminate(exc)

    async def drain_below(self) -> None:
        if self._error is not None:
            raise ConnectionResetError(str(self._error))
        await self.below.drain()

    def pump(self) -> None:
        """Send what the flow-control windows allow of every stream's pending output."""
        import h2.exceptions

        if self.closed:
            return
        conn = self.h2
        for stream in list(self.streams.values()):
            if stream._ended or stream._error is not None:
                continue
            sid = stream.stream_id
            try:
                while stream._out:
                    window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                    if window <= 0:
                        break
                    chunk = bytes(stream._out[:window])
                    del stream._out[:window]
                    conn.send_data(sid, chunk)
                if not stream._out and stream._out_eof and not stream._ended:
                    stream._ended = True
                    conn.end_stream(sid)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as exc:
                stream._fail(ConnectionResetError(f"HTTP/2 stream {sid}: {exc}"))
                continue
            if len(stream._out) <= WRITE_HIGH_WATER_BYTES:
                stream._writable.set()
        self.flush()

    def consumed(self, stream_id: int, size: int) -> None:
        """The application read ``size`` bytes of ``stream_id``: reopen the windows."""
        import h2.exceptions

        if self.closed or size <= 0:
            return
        with contextlib.suppress(h2.exceptions.StreamClosedError, KeyError):
            self.h2.acknowledge_received_data(size, stream_id)
        self.flush()

    def stream_closed(self, stream: H2Stream) -> None:
        """The application closed ``stream``: end or reset what is still open."""
        import h2.exceptions

        self.streams.pop(stream.stream_id, None)
        if self.closed or stream._error is not None:
            return
        sid = stream.stream_id
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            if self.client:
                if not (stream._ended and stream._remote_ended):
                    self.h2.reset_stream(sid, CANCEL)
            else:
                # Go's handler returning: what is left is sent, the response ends, and
                # an unfinished request body is reset with NO_ERROR.
                if not stream._ended:
                    window = self.h2.local_flow_control_window(sid)
                    if stream._out and window >= len(stream._out):
                        self.h2.send_data(sid, bytes(stream._out))
                    stream._out.clear()
                    stream._ended = True
                    self.h2.end_stream(sid)
                if not stream._remote_ended:
                    self.h2.reset_stream(sid, NO_ERROR)
        self.flush()

    # -- input --------------------------------------------------------------
    def receive(self, data: bytes) -> list[h2.events.Event]:
        """Feed bytes from below; returns the events (flush afterwards)."""
        import h2.exceptions

        try:
            return self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.flush()  # the GOAWAY h2 prepared
            raise ConnectionResetError(f"HTTP/2 protocol error: {exc}") from exc

    def common_event(self, event: h2.events.Event) -> None:
        """Data, ends, resets and windows (both sides)."""
        import h2.events

        if isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id) if event.stream_id is not None else None
            data = event.data or b""
            padding = (event.flow_controlled_length or 0) - len(data)
            if stream is None:
                # Nobody reads it (closed or refused): give the window back at once.
                self.consumed(event.stream_id or 0, event.flow_controlled_length or 0)
                return
            if padding > 0:
                self.consumed(stream.stream_id, padding)
            stream._feed(data)
            if event.stream_ended is not None:
                stream._feed_eof()
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None:
                stream._feed_eof()
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None:
                stream._fail(
                    ConnectionResetError(f"HTTP/2 stream reset by peer (code {event.error_code})")
                )
            waiter = self._responses.pop(event.stream_id or 0, None)
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionResetError("HTTP/2 stream reset by peer"))
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self.pump()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.terminate(ConnectionResetError(f"HTTP/2 GOAWAY (code {event.error_code})"))

    def terminate(self, exc: BaseException) -> None:
        """The connection is gone: every stream fails with ``exc``."""
        if self._error is None:
            self._error = exc
        self.closed = True
        for stream in list(self.streams.values()):
            stream._fail(exc)
        for waiter in self._responses.values():
            if not waiter.done():
                waiter.set_exception(exc)
        self._responses.clear()

    # -- client -------------------------------------------------------------
    def can_open(self) -> bool:
        """Whether a new stream may go on this connection now (Go ``CanTakeNewRequest``)."""
        if self.closed:
            return False
        limit = self.h2.remote_settings.max_concurrent_streams
        return self.h2.open_outbound_streams < limit

    async def open_stream(self, authority: str, path: str) -> H2Stream:
        """Send the PUT request and wait for the 200. Raises OSError."""
        headers = [
            (b":authority", authority.encode()),
            (b":method", b"PUT"),
            (b":path", path.encode()),
            (b":scheme", b"https"),
            (b"accept-encoding", b"identity"),
            (b"user-agent", b"Go-http-client/2.0"),
        ]
        stream, status = await self.open_request(headers)
        if status != 200:
            stream.close()
            raise ConnectionRefusedError(f"unexpected status {status}")
        return stream

    async def open_request(
        self, headers: list[tuple[bytes, bytes]], first: bytes = b""
    ) -> tuple[H2Stream, int]:
        """Send a request with ``headers`` (and ``first`` as its first DATA, at once, as
        Go's transport streams a request body before the answer); return the stream
        and the response status once it came. Raises OSError."""
        import h2.exceptions

        loop = asyncio.get_running_loop()
        try:
            sid = self.h2.get_next_available_stream_id()
            self.h2.send_headers(sid, headers)
        except h2.exceptions.H2Error as exc:
            raise ConnectionResetError(f"HTTP/2: cannot open a stream: {exc}") from exc
        stream = H2Stream(self, sid)
        self.streams[sid] = stream
        waiter: asyncio.Future[int] = loop.create_future()
        self._responses[sid] = waiter
        if first:
            stream.write(first)
        self.flush()
        try:
            status = await waiter
        except BaseException:
            stream.close()
            raise
        return stream, status

    def client_event(self, event: h2.events.Event) -> None:
        import h2.events

        if isinstance(event, h2.events.ResponseReceived):
            waiter = self._responses.pop(event.stream_id or 0, None)
            status = 0
            for name, value in event.headers or ():
                if name == b":status":
                    with contextlib.suppress(ValueError):
                        status = int(value)
            if waiter is not None and not waiter.done():
                waiter.set_result(status)
        else:
            self.common_event(event)

    async def run_client(self) -> None:
        """Read until the connection ends (the pool's background task)."""
        try:
            while True:
                data = await self.below.read()
                if not data:
                    raise ConnectionResetError("HTTP/2 connection closed by peer")
                for event in self.receive(data):
                    self.client_event(event)
                self.flush()
        except asyncio.CancelledError:
            self.terminate(ConnectionResetError("HTTP/2 connection closed"))
            raise
        except (ConnectionError, OSError) as exc:
            self.terminate(exc)
        finally:
            self.closed = True
            self.below.close()


# --------------------------------------------------------------------------
# server side


class _H2Server:
    """Serves one accepted connection (HTTP/2 or HTTP/1.x)."""

    def __init__(self, below: Stream, accepts: _Accepts, handler: LayerHandler) -> None:
        self.below = below
        self.accepts = accepts
        self.handler = handler
        self.tasks = TaskSet()

    async def serve(self, *, tls: bool) -> None:
        try:
            async with asyncio.timeout(READ_HEADER_TIMEOUT_S):
                first = await self.below.read()
        except TimeoutError:
            return
        if not first:
            return
        alpn = getattr(self.below, "alpn", None) if tls else None
        if alpn == "h2":
            await self._serve_h2(first)
            return
        if not tls:
            while len(first) < len(PREFACE) and PREFACE.startswith(first):
                async with asyncio.timeout(READ_HEADER_TIMEOUT_S):
                    more = await self.below.read()
                if not more:
                    return
                first += more
            if first.startswith(PREFACE):
                await self._serve_h2(first)
                return
        await self._serve_http1(first)

    async def _run_handler(self, stream: Stream) -> None:
        await run_handler(self.handler, stream, log, "h2: stream handler failed")

    def _spawn(self, stream: Stream) -> None:
        self.tasks.spawn(self._run_handler(stream))

    async def _finish(self) -> None:
        self.tasks.cancel()
        await self.tasks.wait()

    # -- HTTP/2 ---------------------------------------------------------------
    async def _serve_h2(self, first: bytes) -> None:
        import h2.events

        conn = _H2Connection(self.below, client=False)
        conn.start()
        data = first
        try:
            while data:
                for event in conn.receive(data):
                    if isinstance(event, h2.events.RequestReceived):
                        self._request(conn, event)
                    else:
                        conn.common_event(event)
                conn.flush()
                if conn.closed:
                    break
                data = await self.below.read()
            conn.terminate(ConnectionResetError("HTTP/2 connection closed by peer"))
        except (ConnectionError, OSError) as exc:
            conn.terminate(exc)
        finally:
            conn.closed = True
            await self._finish()

    def _request(self, conn: _H2Connection, event: h2.events.RequestReceived) -> None:
        import h2.exceptions

        sid = event.stream_id or 0
        fields: dict[bytes, bytes] = {}
        for name, value in event.headers or ():
            fields.setdefault(bytes(name), bytes(value))
        authority = fields.get(b":authority", fields.get(b"host", b"")).decode("latin-1")
        target = fields.get(b":path", b"").decode("latin-1")
        h2conn = conn.h2
        try:
            if not self.accepts.ok(authority, target):
                h2conn.send_headers(
                    sid,
                    [(b":status", b"404"), (b"content-length", b"0"), (b"date", _http_date())],
                    end_stream=True,
                )
                if event.stream_ended is None:
                    h2conn.reset_stream(sid, NO_ERROR)
                return
            h2conn.send_headers(
                sid,
                [(b":status", b"200"), (b"cache-control", b"no-store"), (b"date", _http_date())],
            )
        except h2.exceptions.H2Error as exc:
            log.info("h2: cannot answer stream %d: %s", sid, exc)
            return
        stream = H2Stream(conn, sid, peer=_xff_peer(fields.get(b"x-forwarded-for")))
        conn.streams[sid] = stream
        if event.stream_ended is not None:
            stream._feed_eof()
        self._spawn(stream)

    # -- HTTP/1.x -------------------------------------------------------------
    async def _serve_http1(self, first: bytes) -> None:
        import h11

        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_HTTP1_MAX_HEAD_BYTES)
        conn.receive_data(first)
        try:
            while True:
                async with asyncio.timeout(READ_HEADER_TIMEOUT_S):
                    request = await self._next_h11(conn)
                if not isinstance(request, h11.Request):
                    return
                keep = await self._answer_http1(conn, request)
                if not keep or conn.our_state is not h11.DONE:
                    return
                if conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (TimeoutError, h11.ProtocolError, ConnectionError, OSError):
            return
        finally:
            await self._finish()

    async def _next_h11(self, conn: object) -> object:
        import h11

        assert isinstance(conn, h11.Connection)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await self.below.read()
                conn.receive_data(data)
                if not data:
                    return h11.ConnectionClosed()
                continue
            return event

    async def _answer_http1(self, conn: object, request: object) -> bool:
        import h11

        assert isinstance(conn, h11.Connection) and isinstance(request, h11.Request)
        version = b"HTTP/" + request.http_version
        fields = {name.lower(): value for name, value in request.headers}
        target = request.target.decode("latin-1")
        host = fields.get(b"host", b"").decode("latin-1")
        if target.startswith(("http://", "https://")):
            host = urlsplit(target).netloc
        date = _http_date()
        if not self.accepts.ok(host, target):
            self.below.write(
                version + b" 404 Not Found\r\nDate: " + date + b"\r\nContent-Length: 0\r\n\r\n"
            )
            # h11 tracks the exchange; its own bytes are not sent (Go's are above).
            conn.send(h11.Response(status_code=404, headers=[(b"content-length", b"0")]))
            conn.send(h11.EndOfMessage())
            while conn.their_state is h11.SEND_BODY:
                event = await self._next_h11(conn)
                if isinstance(event, h11.ConnectionClosed):
                    return False
            await self.below.drain()
            return conn.our_state is h11.DONE and request.http_version == b"1.1"
        self.below.write(
            version
            + b" 200 OK\r\nCache-Control: no-store\r\nDate: "
            + date
            + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        conn.send(h11.Response(status_code=200, headers=[(b"transfer-encoding", b"chunked")]))
        stream = _Http1Stream(self, conn, peer=_xff_peer(fields.get(b"x-forwarded-for")))
        await self._run_handler(stream)
        return stream.finished_cleanly


class _Http1Stream:
    """A streamed HTTP/1.x exchange: request body in, chunked response body out."""

    can_push = False
    #: A transport connection: the relay never half-closes it (app/relay.py).
    relays_end = False

    def __init__(self, server: _H2Server, conn: object, *, peer: tuple[str, int] | None) -> None:
        self._server = server
        self._conn = conn
        self._peer = peer
        self._eof_sent = False
        self._closed = False
        self.finished_cleanly = False

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        import h11

        conn = self._conn
        assert isinstance(conn, h11.Connection)
        if conn.their_state is not h11.SEND_BODY:
            return b""
        event = await self._server._next_h11(conn)
        if isinstance(event, h11.Data):
            return bytes(event.data)
        if isinstance(event, h11.EndOfMessage):
            return b""
        raise ConnectionResetError("HTTP/1.1 request body ended early")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof_sent or self._closed:
            raise ConnectionResetError("write on a closed HTTP/1.1 stream")
        if data:
            self._server.below.write(b"%x\r\n" % len(data) + bytes(data) + b"\r\n")

    async def drain(self) -> None:
        await self._server.below.drain()

    def write_eof(self) -> None:
        import h11

        if self._eof_sent or self._closed:
            return
        self._eof_sent = True
        self._server.below.write(b"0\r\n\r\n")
        conn = self._conn
        assert isinstance(conn, h11.Connection)
        with contextlib.suppress(h11.LocalProtocolError):
            conn.send(h11.EndOfMessage())

    def close(self) -> None:
        import h11

        if self._closed:
            return
        with contextlib.suppress(ConnectionError, OSError):
            self.write_eof()
        self._closed = True
        conn = self._conn
        assert isinstance(conn, h11.Connection)
        self.finished_cleanly = conn.their_state is h11.DONE

    async def wait_closed(self) -> None:
        return None

    @property
    def peer(self) -> tuple[str, int] | None:
        return self._peer if self._peer is not None else self._server.below.peer

    @property
    def local(self) -> tuple[str, int] | None:
        return self._server.below.local


# --------------------------------------------------------------------------
# the transport


class H2Transport:
    """``network: "h2"`` over TCP (+ TLS below it, which the client requires)."""

    name = "h2"
    listener_ends_sessions = False

    def __init__(
        self,
        inner: InnerTransport,
        config: HttpConfig,
        *,
        tls: bool,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.inner = inner
        self.config = config
        self.tls = tls
        self._rng = rng
        self._pool: ConnectionPool[_H2Connection] = ConnectionPool()
        self._tasks = TaskSet()

    def _authority(self) -> str:
        hosts = self.config.hosts
        return hosts[int.from_bytes(self._rng(4), "big") % len(hosts)]

    async def dial(self, host: str, port: int, *, timeout: float | None = None) -> Stream:
        if not self.tls:
            raise ConnectionRefusedError(TLS_REQUIRED)
        async with asyncio.timeout(timeout):
            conn = await self._pool.get(host, port, lambda: self._connect(host, port))
            return await conn.open_stream(self._authority(), self.config.normalized_path)

    async def _connect(self, host: str, port: int) -> _H2Connection:
        below = await self.inner.dial(host, port)
        alpn = getattr(below, "alpn", None)
        if alpn != "h2":
            below.close()
            raise ConnectionRefusedError(f"http2: unexpected ALPN protocol {alpn or ''}; want h2")
        conn = _H2Connection(below, client=True)
        conn.start()
        self._tasks.spawn(conn.run_client())
        return conn

    async def listen(
        self, host: str, port: int, handler: LayerHandler, *, reuse_port: bool = False
    ) -> LayerListener:
        accepts = _Accepts(self.config)
        tls = self.tls

        async def accept(below: Stream) -> None:
            try:
                await _H2Server(below, accepts, handler).serve(tls=tls)
            except (ConnectionError, OSError) as exc:
                log.info("h2: connection ended: %s", exc)
            finally:
                below.close()

        return await self.inner.listen(host, port, accept, reuse_port=reuse_port)

    async def aclose(self) -> None:
        self._tasks.cancel()
        await self._tasks.wait()
        self._pool.clear()
        await self.inner.aclose()
