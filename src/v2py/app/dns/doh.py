"""DNS over HTTPS (v2ray-core 4.34 ``app/dns/nameserver_doh.go``), imported only when a
``https://`` or ``https+local://`` name server is configured.

* ``https://host[:port]/path``: each connection to the server is dispatched like any
  TCP session (inbound tag ``dns.tag``, protocol ``https``), so routing rules pick the
  outbound that carries it; as in 4.34 the connections of one lookup end with it.
* ``https+local://``: dialled directly; connections are kept and reused (closed after
  90 s idle, Go's ``IdleConnTimeout``).

What goes on the wire, checked against the 4.34 binary (``docs/routing.md``): TLS with
ALPN ``h2, http/1.1`` (verified with the system roots, which OpenSSL, like Go, lets
``SSL_CERT_FILE`` replace; the URL's host is the verified name and the SNI, none for an
IP); then one ``POST`` per question, A first, with Go's headers (``Accept`` and
``Content-Type: application/dns-message``, ``Accept-Encoding: gzip``, ``User-Agent:
Go-http-client/2.0`` or ``/1.1``) over HTTP/2, or HTTP/1.1 when the server's ALPN
does not pick ``h2``. Over HTTP/2 the client preface carries Go's SETTINGS and
connection window. Question IDs count 1, 2, ... per server, as 4.34 ``newReqID``.

A lookup whose request fails (connection, TLS, status other than 200, an answer that
does not parse) goes on to the next server: 4.34 only logs such a failure and lets
the query's 4 s deadline pass, after which it tries the next server too; v2py moves
on at once. An answer with an error rcode or without addresses ends the lookup.
A 307 or 308 answer with a ``Location`` is followed as Go's client follows it: the same
POST (body and headers) to that URL, dialled the same way, at most 10 requests in all
("stopped after 10 redirects"); a redirect to a URL that is not ``https`` fails the
request (Go would post it in the clear). Other 3xx answers fail the request (Go turns the
POST into a GET without the question, which a DoH server answers with an error).
Answers are cached per name as 4.34 does (AAAA then A addresses; an entry for one
family answers even while the other is missing).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from v2py.app.dns.nameserver import (
    QUERY_TIMEOUT_S,
    CachingNameServer,
    DnsLookupError,
    parse_answer,
    query_session,
    run_query_path,
)
from v2py.common.net import tcp
from v2py.config.routing import DohAddress
from v2py.transport.stream import Stream

if TYPE_CHECKING:
    import h2.connection
    import h11

    from v2py.app.handler import Dispatch

__all__ = [
    "DohNameServer",
    "StreamDialer",
    "decode_body",
    "direct_dialer",
    "dispatched_dialer",
    "h1_request_headers",
    "h2_request_headers",
    "tls_context",
]

log = logging.getLogger(__name__)

#: Go's ``http.Transport`` ``IdleConnTimeout`` for both kinds.
IDLE_TIMEOUT_S = 90.0
#: The largest DNS message; a longer body is not an answer.
MAX_BODY_BYTES = 65535
#: Go's http.Client: requests in one chain of redirects (``stopped after 10 redirects``).
MAX_REQUESTS = 10
_FOLLOWED = frozenset({307, 308})
DNS_MESSAGE = b"application/dns-message"
ALPN = ("h2", "http/1.1")
#: Go's HTTP/2 client preface: SETTINGS ENABLE_PUSH=0, INITIAL_WINDOW_SIZE=4 MiB,
#: MAX_HEADER_LIST_SIZE=10 MiB (in that order), then a connection WINDOW_UPDATE of 1 GiB.
H2_SETTINGS = ((2, 0), (4, 4 << 20), (6, 10 << 20))
H2_CONNECTION_WINDOW_INCREMENT = 1 << 30
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

Response = tuple[int, list[tuple[bytes, bytes]], bytes]
#: Opens a byte stream to ``host:port``; returns it and the task carrying it, if any
#: (cancelled when the connection is dropped).
StreamDialer = Callable[[str, int], Awaitable[tuple[Stream, "asyncio.Task[None] | None"]]]


class DohError(Exception):
    """One DoH request failed (connection, TLS, HTTP or the answer)."""


class _StaleConnection(DohError):
    """A kept-alive HTTP/1.1 connection was found closed before any answer: the request
    goes again on a new connection (Go's transport retries such a request too)."""


# --------------------------------------------------------------------------
# request building and answer decoding (no I/O)


def h2_request_headers(
    address: DohAddress, length: int, referer: str | None = None
) -> list[tuple[bytes, bytes]]:
    """The HTTP/2 request header list of Go's client, in its order (``referer``: the
    URL a redirect came from, which Go adds)."""
    return [
        (b":authority", address.authority.encode()),
        (b":method", b"POST"),
        (b":path", address.target.encode()),
        (b":scheme", b"https"),
        (b"accept", DNS_MESSAGE),
        (b"content-type", DNS_MESSAGE),
        *([(b"referer", referer.encode())] if referer else []),
        (b"content-length", str(length).encode()),
        (b"accept-encoding", b"gzip"),
        (b"user-agent", b"Go-http-client/2.0"),
    ]


def h1_request_headers(
    address: DohAddress, length: int, referer: str | None = None
) -> list[tuple[bytes, bytes]]:
    """The HTTP/1.1 request headers of Go's client, in its order and spelling."""
    return [
        (b"Host", address.authority.encode()),
        (b"User-Agent", b"Go-http-client/1.1"),
        (b"Content-Length", str(length).encode()),
        (b"Accept", DNS_MESSAGE),
        (b"Content-Type", DNS_MESSAGE),
        *([(b"Referer", referer.encode())] if referer else []),
        (b"Accept-Encoding", b"gzip"),
    ]


def decode_body(headers: Sequence[tuple[bytes, bytes]], body: bytes) -> bytes:
    """The response body as Go's transport hands it over: gunzipped when the server
    used ``Content-Encoding: gzip`` (it asked for it). Raises DohError."""
    encoding = next((v for k, v in headers if k.lower() == b"content-encoding"), b"")
    if encoding.strip().lower() != b"gzip":
        return body
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        plain = decoder.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error as exc:
        raise DohError(f"bad gzip body: {exc}") from None
    if len(plain) > MAX_BODY_BYTES:
        raise DohError("answer too long")
    if not decoder.eof:
        raise DohError("bad gzip body: truncated")
    return plain


def tls_context() -> ssl.SSLContext:
    """Verification with the system roots (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` apply,
    as for Go); ALPN ``h2``, ``http/1.1`` (``ForceAttemptHTTP2``)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.set_alpn_protocols(list(ALPN))
    return context


# --------------------------------------------------------------------------
# connections


class _Connection(Protocol):
    def available(self) -> bool:
        """Can take one more request now."""
        ...

    def idle(self) -> bool: ...

    async def request(
        self, address: DohAddress, body: bytes, referer: str | None = None
    ) -> Response: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class _H2Pending:
    future: asyncio.Future[Response]
    status: int = 0
    headers: list[tuple[bytes, bytes]] | None = None
    body: bytearray | None = None


class _H2Connection:
    """HTTP/2 over one TLS stream; requests share it as streams (h2 library)."""

    def __init__(self, stream: Stream) -> None:
        import h2.config
        import h2.connection
        import h2.settings
        from hyperframe.frame import SettingsFrame

        self._stream = stream
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={h2.settings.SettingCodes(k): v for k, v in H2_SETTINGS},
        )
        conn.initiate_connection()
        conn.data_to_send()  # h2's SETTINGS: the same values plus defaults; Go's goes out
        frame = SettingsFrame(0)
        frame.settings = dict(H2_SETTINGS)
        conn.increment_flow_control_window(H2_CONNECTION_WINDOW_INCREMENT)
        stream.write(_H2_PREFACE + frame.serialize() + conn.data_to_send())
        self._h2: h2.connection.H2Connection = conn
        self._pending: dict[int, _H2Pending] = {}
        self._dead = False
        self._reader = asyncio.get_running_loop().create_task(self._read())

    def available(self) -> bool:
        return not self._dead

    def idle(self) -> bool:
        return not self._pending

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data:
            self._stream.write(data)

    async def request(
        self, address: DohAddress, body: bytes, referer: str | None = None
    ) -> Response:
        if self._dead:
            raise DohError("connection closed")
        conn = self._h2
        stream_id = conn.get_next_available_stream_id()
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = _H2Pending(future)
        try:
            conn.send_headers(stream_id, h2_request_headers(address, len(body), referer))
            if conn.local_flow_control_window(stream_id) < len(body):
                raise DohError("query larger than the server's flow-control window")
            conn.send_data(stream_id, body, end_stream=True)
            self._flush()
            return await future
        except asyncio.CancelledError:
            if not self._dead:
                with contextlib.suppress(Exception):
                    conn.reset_stream(stream_id, 8)  # CANCEL, as Go on a cancelled request
                    self._flush()
            raise
        finally:
            self._pending.pop(stream_id, None)

    async def _read(self) -> None:
        import h2.events

        failure: BaseException = ConnectionResetError("DoH server closed the connection")
        try:
            while not self._dead:
                data = await self._stream.read()
                if not data:
                    break
                for event in self._h2.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        self._on_response(event.stream_id, event.headers or [])
                    elif isinstance(event, h2.events.DataReceived):
                        self._on_data(event.stream_id, event.data or b"")
                        self._h2.acknowledge_received_data(
                            event.flow_controlled_length or 0, event.stream_id or 0
                        )
                    elif isinstance(event, h2.events.StreamEnded):
                        self._on_end(event.stream_id or 0)
                    elif isinstance(event, h2.events.StreamReset):
                        self._fail(event.stream_id or 0, DohError("stream reset by the server"))
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        failure = DohError(f"GOAWAY (error code {event.error_code})")
                        self._dead = True
                self._flush()
        except asyncio.CancelledError:
            failure = DohError("connection closed")
            raise
        except Exception as exc:  # bad input from the server fails its requests only
            failure = exc
        finally:
            self._dead = True
            for stream_id in list(self._pending):
                self._fail(stream_id, failure)
            self._stream.close()

    def _on_response(self, stream_id: int | None, headers: list[tuple[bytes, bytes]]) -> None:
        pending = self._pending.get(stream_id or 0)
        if pending is None:
            return
        status = next((v for k, v in headers if k == b":status"), b"0")
        pending.status = int(status) if status.isdigit() else 0
        pending.headers = [(k, v) for k, v in headers if not k.startswith(b":")]
        pending.body = bytearray()

    def _on_data(self, stream_id: int | None, data: bytes) -> None:
        pending = self._pending.get(stream_id or 0)
        if pending is None or pending.body is None:
            return
        pending.body += data
        if len(pending.body) > MAX_BODY_BYTES:
            self._fail(stream_id or 0, DohError("answer too long"))

    def _on_end(self, stream_id: int) -> None:
        pending = self._pending.get(stream_id)
        if pending is None or pending.future.done():
            return
        if pending.headers is None or pending.body is None:
            pending.future.set_exception(DohError("stream ended without a response"))
            return
        pending.future.set_result((pending.status, pending.headers, bytes(pending.body)))

    def _fail(self, stream_id: int, exc: BaseException) -> None:
        pending = self._pending.get(stream_id)
        if pending is not None and not pending.future.done():
            pending.future.set_exception(exc)

    def close(self) -> None:
        self._dead = True
        self._reader.cancel()
        self._stream.close()


class _H1Connection:
    """HTTP/1.1 over one TLS stream, one request at a time, kept alive (h11)."""

    def __init__(self, stream: Stream) -> None:
        import h11

        self._stream = stream
        self._h11: h11.Connection = h11.Connection(h11.CLIENT)
        self._busy = False
        self._dead = False
        self._served = 0

    def available(self) -> bool:
        return not self._busy and not self._dead

    def idle(self) -> bool:
        return not self._busy

    async def request(
        self, address: DohAddress, body: bytes, referer: str | None = None
    ) -> Response:
        import h11

        self._busy = True
        conn = self._h11
        reused = self._served > 0
        answered = False
        try:
            self._stream.write(
                conn.send(
                    h11.Request(
                        method="POST",
                        target=address.target,
                        headers=h1_request_headers(address, len(body), referer),
                    )
                )
                or b""
            )
            self._stream.write(conn.send(h11.Data(data=body)) or b"")
            self._stream.write(conn.send(h11.EndOfMessage()) or b"")
            status = 0
            headers: list[tuple[bytes, bytes]] = []
            answer = bytearray()
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await self._stream.read())
                elif isinstance(event, h11.Response):
                    answered = True
                    status = event.status_code
                    headers = list(event.headers)
                elif isinstance(event, h11.Data):
                    answer += event.data
                    if len(answer) > MAX_BODY_BYTES:
                        raise DohError("answer too long")
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise ConnectionResetError("DoH server closed the connection")
            if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()
                self._served += 1
            else:
                self.close()
            return status, headers, bytes(answer)
        except (h11.ProtocolError, OSError) as exc:
            self.close()
            if reused and not answered:
                raise _StaleConnection(str(exc)) from None
            if isinstance(exc, OSError):
                raise
            raise DohError(f"bad HTTP/1.1 response: {exc}") from None
        except BaseException:
            self.close()
            raise
        finally:
            self._busy = False

    def close(self) -> None:
        self._dead = True
        self._stream.close()


class _Pool:
    """The connections to one server (Go's ``http.Transport``): HTTP/2 connections are
    shared, an HTTP/1.1 one serves one request at a time; idle ones close after
    ``idle_timeout``."""

    def __init__(
        self,
        address: DohAddress,
        dial: StreamDialer,
        context: Callable[[], ssl.SSLContext],
        idle_timeout: float = IDLE_TIMEOUT_S,
    ) -> None:
        self._address = address
        self._dial = dial
        self._context = context
        self._idle_timeout = idle_timeout
        self._connections: list[_Connection] = []
        self._carriers: dict[_Connection, asyncio.Task[None]] = {}
        self._idle_timers: dict[_Connection, asyncio.TimerHandle] = {}
        self._dialing: asyncio.Event | None = None
        self._closed = False

    async def request(
        self, body: bytes, address: DohAddress | None = None, referer: str | None = None
    ) -> Response:
        """POST ``body`` to ``address`` (default: the pool's), which must have the
        pool's host and port (a redirect on the same server)."""
        target = address or self._address
        try:
            return await self._request_once(body, target, referer)
        except _StaleConnection:
            return await self._request_once(body, target, referer)

    async def _request_once(
        self, body: bytes, address: DohAddress, referer: str | None
    ) -> Response:
        conn = await self._acquire()
        timer = self._idle_timers.pop(conn, None)
        if timer is not None:
            timer.cancel()
        try:
            return await conn.request(address, body, referer)
        finally:
            if not conn.available() and conn.idle():
                self._drop(conn)
            elif conn.idle() and not self._closed:
                loop = asyncio.get_running_loop()
                self._idle_timers[conn] = loop.call_later(self._idle_timeout, self._drop, conn)

    async def _acquire(self) -> _Connection:
        waited = False
        while True:
            if self._closed:
                raise DohError("closed")
            for conn in self._connections:
                if conn.available():
                    return conn
            if self._dialing is None or waited:
                break
            waited = True  # wait for a dial in progress once: it may give a shared h2 connection
            await self._dialing.wait()
        event = asyncio.Event()
        if self._dialing is None:
            self._dialing = event
        try:
            conn = await self._connect()
        finally:
            event.set()
            if self._dialing is event:
                self._dialing = None
        return conn

    async def _connect(self) -> _Connection:
        from v2py.transport.tls import TlsStream

        address = self._address
        below, carrier = await self._dial(address.host, address.port)
        try:
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            obj = self._context().wrap_bio(incoming, outgoing, server_hostname=address.host)
            stream = TlsStream(below, obj, incoming, outgoing)
            await stream.handshake()
            conn: _Connection = (
                _H2Connection(stream) if stream.alpn == "h2" else _H1Connection(stream)
            )
        except BaseException:
            below.close()
            if carrier is not None:
                carrier.cancel()
            raise
        if self._closed:
            conn.close()
            if carrier is not None:
                carrier.cancel()
            raise DohError("closed")
        self._connections.append(conn)
        if carrier is not None:
            self._carriers[conn] = carrier
        return conn

    def _drop(self, conn: _Connection) -> None:
        timer = self._idle_timers.pop(conn, None)
        if timer is not None:
            timer.cancel()
        with contextlib.suppress(ValueError):
            self._connections.remove(conn)
        conn.close()
        carrier = self._carriers.pop(conn, None)
        if carrier is not None:
            carrier.cancel()

    def close(self) -> None:
        """Close every connection (and end the dispatched sessions carrying them)."""
        self._closed = True
        for conn in list(self._connections):
            self._drop(conn)


# --------------------------------------------------------------------------
# dialers


async def direct_dialer(host: str, port: int) -> tuple[Stream, asyncio.Task[None] | None]:
    """A TCP connection from this host (4.34 ``internet.DialSystem``)."""
    from v2py.transport.tcp import dial_tcp

    return await dial_tcp(host, port), None


def dispatched_dialer(dispatcher: Callable[[], Dispatch | None], tag: str) -> StreamDialer:
    """Connections dispatched as TCP sessions with inbound tag ``tag`` and protocol
    ``https`` (4.34 ``NewDoHNameServer``'s ``DialContext``); direct while
    ``dispatcher()`` gives None (no instance around the DNS client)."""

    async def dial(host: str, port: int) -> tuple[Stream, asyncio.Task[None] | None]:
        from v2py.app.chain import stream_pair

        found = dispatcher()
        if found is None:
            return await direct_dialer(host, port)
        ours, theirs = stream_pair()
        destination = tcp(host, port)
        session = query_session(tag, destination, protocol="https")
        session.mux_preferred = True  # 4.34: "forced to use mux for DOH"

        async def carry() -> None:
            try:
                await found.dispatch(session, theirs)
            finally:
                theirs.close()

        return ours, run_query_path(carry, destination)

    return dial


# --------------------------------------------------------------------------
# the name server


def redirect_address(current: DohAddress, location: str) -> DohAddress:
    """Where a redirect from ``current`` to ``location`` (absolute, scheme-relative or
    relative, resolved as Go resolves it) goes, dialled the same way; raises DohError
    for a URL that is not ``https`` or that the config would refuse."""
    from urllib.parse import urljoin

    from v2py.config.routing import parse_doh_address

    url = urljoin(current.url, location.strip())
    if not url.lower().startswith("https://"):
        raise DohError(f"failed to retrieve response: redirected to {url!r}, not https")
    try:
        parsed = parse_doh_address(url)
    except ValueError as exc:
        raise DohError(f"failed to retrieve response: redirected to {url!r}: {exc}") from None
    assert parsed is not None
    return dataclasses.replace(parsed, local=current.local)


class DohNameServer(CachingNameServer):
    """DoH to ``address``; ``dial`` opens the byte stream (see :func:`direct_dialer`,
    :func:`dispatched_dialer`). ``per_lookup`` closes the connections after each lookup
    (the dispatched kind, as 4.34). ``clock`` is the loop's time; ``context`` makes the
    TLS context (default :func:`tls_context`, made on first use)."""

    def __init__(
        self,
        address: DohAddress,
        *,
        dial: StreamDialer,
        per_lookup: bool,
        client_ip: str | None = None,
        timeout: float = QUERY_TIMEOUT_S,
        clock: Callable[[], float] | None = None,
        context: Callable[[], ssl.SSLContext] | None = None,
        idle_timeout: float = IDLE_TIMEOUT_S,
    ) -> None:
        super().__init__(address.name, client_ip=client_ip, timeout=timeout, clock=clock)
        self.address = address
        self._dial = dial
        self._per_lookup = per_lookup
        self._make_context = context or tls_context
        self._context: ssl.SSLContext | None = None
        self._idle_timeout = idle_timeout
        #: Kept connections (not ``per_lookup``), per server host and port: the
        #: configured one and those redirects led to.
        self._pools: dict[tuple[str, int], _Pool] = {}

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = self._make_context()
        return self._context

    async def _ask_all(self, fqdn: str, questions: list[tuple[int, int]]) -> None:
        # The dispatched kind's connections end with the lookup (4.34).
        pools: dict[tuple[str, int], _Pool] = {} if self._per_lookup else self._pools
        try:
            await asyncio.gather(*(self._ask(pools, fqdn, k, i) for k, i in questions))
        except DohError as exc:
            raise DnsLookupError(f"{self.name}: {exc}", retry_next=True) from None
        finally:
            if self._per_lookup:
                for pool in pools.values():
                    pool.close()

    def _pool_for(self, pools: dict[tuple[str, int], _Pool], address: DohAddress) -> _Pool:
        key = (address.host, address.port)
        pool = pools.get(key)
        if pool is None:
            pool = pools[key] = _Pool(address, self._dial, self._tls, self._idle_timeout)
        return pool

    async def _ask(
        self, pools: dict[tuple[str, int], _Pool], fqdn: str, rdtype: int, query_id: int
    ) -> None:
        question = self._question(fqdn, rdtype, query_id)
        address = self.address
        referer: str | None = None  # Go's Referer: the URL the redirect came from
        for sent in range(1, MAX_REQUESTS + 1):
            try:
                status, headers, body = await self._pool_for(pools, address).request(
                    question, address, referer
                )
            except DohError:
                raise
            except Exception as exc:  # OSError, TLS, HTTP protocol errors: the server failed
                raise DohError(f"failed to retrieve response: {exc}") from None
            location = next((v for k, v in headers if k.lower() == b"location"), None)
            if status not in _FOLLOWED or location is None:
                break
            if sent == MAX_REQUESTS:
                raise DohError("failed to retrieve response: stopped after 10 redirects")
            referer = address.url
            address = redirect_address(address, location.decode("latin-1"))
        if status != 200:
            raise DohError(f"DOH server returned code {status}")
        try:
            answer = parse_answer(decode_body(headers, body))
        except ValueError as exc:
            raise DohError(f"failed to handle DOH response: {exc}") from None
        self._remember(fqdn, rdtype, answer)

    async def aclose(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()
