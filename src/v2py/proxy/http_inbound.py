"""The ``http`` inbound: an HTTP forward proxy (v2ray-core 4.34 ``proxy/http/server.go``).

* ``CONNECT host:port`` -> ``200 Connection established``, then a raw tunnel.
* Any other request is parsed, re-written the way 4.34 (Go's ``net/http``) writes it
  and dispatched to **its own** host; the origin's response is parsed and re-written
  for the client. After a request with ``Proxy-Connection: keep-alive`` whose
  response had a known length, the next request on the connection is read and
  dispatched the same way (pipelined requests wait their turn); otherwise the
  connection ends after the response. A later request never reaches an earlier
  request's origin. See :mod:`v2py.protocol.http_proxy` for the exact re-writing.
* Origin-form requests are accepted only with ``allow_transparent`` (destination
  from ``Host``), else ``400`` and close.
* With ``accounts``, a missing or wrong ``Proxy-Authorization: Basic`` gets 4.34's
  ``407`` and the connection is closed.
* An origin that cannot be reached or answers garbage gets 4.34's ``503``.
* A malformed head is not answered (4.34 closes without a response).
* Each request head must arrive within the handshake timeout (4.34's read deadline).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from v2py.app.handler import Dispatch
from v2py.app.log import AccessMessage
from v2py.app.policy import PolicyTable
from v2py.app.session import Session, SessionLogger, SniffingSettings, session_logger
from v2py.common.net import tcp
from v2py.errors import ProtocolError, RemoteProtocolError
from v2py.protocol.http_proxy import (
    RESPONSE_400,
    RESPONSE_407,
    RESPONSE_503,
    RESPONSE_CONNECT_OK,
    BodyMode,
    ClientClosed,
    ForwardPlan,
    HttpRequestReader,
    HttpResponseReader,
    InformationalReceived,
    ProxyRequest,
    RequestBodyReceived,
    RequestEnded,
    RequestHeadReceived,
    ResponseBodyReceived,
    ResponseEnded,
    ResponseHeadReceived,
    ResponsePlan,
    check_basic_auth,
    encode_chunk,
    encode_informational,
    encode_last_chunk,
    plan_client_response,
    plan_forward_request,
)
from v2py.transport.stream import READ_CHUNK_BYTES, PrefixedStream, Stream

__all__ = ["HttpInbound"]

log = logging.getLogger(__name__)


class HttpInbound:
    """HTTP proxy inbound; parameters mirror the JSON settings."""

    def __init__(
        self,
        *,
        tag: str,
        listen: str,
        port: int,
        accounts: dict[str, str] | None = None,
        allow_transparent: bool = False,
        user_level: int = 0,
        policy: PolicyTable,
        sniffing: SniffingSettings,
    ) -> None:
        self.tag = tag
        self._listen = listen
        self._port = port
        self._accounts = dict(accounts or {})
        self._allow_transparent = allow_transparent
        self._user_level = user_level
        self._policy = policy
        self._sniffing = sniffing

    async def start(self, dispatcher: Dispatch) -> None:
        """No extra listeners."""

    def close(self) -> None:
        """Nothing to release (connections belong to the caller's listener)."""

    async def handle(self, session: Session, stream: Stream, dispatcher: Dispatch) -> None:
        """Serve one accepted connection: every request on it in turn; logs failures
        with the session id and always closes ``stream``."""
        slog = session_logger(log, session)
        handshake = self._policy.for_level(self._user_level).handshake
        reader = HttpRequestReader()
        session.level = self._user_level
        session.sniffing = self._sniffing
        try:
            while True:
                try:
                    async with asyncio.timeout(handshake):
                        head = await _next_head(stream, reader)
                except TimeoutError:
                    slog.info("http: request head timed out")
                    return
                if head is None:
                    return
                if not await self._serve_one(head, stream, reader, session, dispatcher, slog):
                    return
                reader.start_next()
        except ProtocolError as exc:
            slog.info("http: %s", exc)
        except OSError as exc:
            slog.info("http connection ended: %s", exc)
        finally:
            stream.close()

    async def _serve_one(
        self,
        head: RequestHeadReceived,
        stream: Stream,
        reader: HttpRequestReader,
        session: Session,
        dispatcher: Dispatch,
        slog: SessionLogger,
    ) -> bool:
        """Serve one request; True when the connection goes on to the next one."""
        request = head.request
        if self._accounts:
            user = check_basic_auth(request, self._accounts)
            if user is None:
                slog.info("http: proxy authentication failed")
                await _respond(stream, RESPONSE_407)
                return False
            session.user_email = user
        if request.is_connect:
            stream.write(RESPONSE_CONNECT_OK)
            session.destination = tcp(*request.destination())
            # 4.34's access line names the request URL (Go prints CONNECT's as //host:port)
            session.access = AccessMessage(session.source_text(), "//" + request.target)
            await dispatcher.dispatch(session, PrefixedStream(reader.take_trailing(), stream))
            return False
        if not request.url_host and not self._allow_transparent:
            if request.host:
                request.destination()  # a malformed Host closes unanswered, as in 4.34
            slog.info("http: not a proxy request: %s %s", request.method, request.target)
            await _respond(stream, RESPONSE_400)
            return False
        host, port = request.destination()
        plan = plan_forward_request(request, chunked=head.chunked, length=head.length)
        exchange = _Exchange(stream, reader, plan, request, slog)
        # One session per request, sharing the connection's id (as 4.34's context does).
        sub = dataclasses.replace(
            session,
            destination=tcp(host, port),
            access=AccessMessage(session.source_text(), request.target),
            attributes=plan.attributes,
            # 4.34's Content.Protocol for a plain request (sniffing may replace it)
            sniffed_protocol="http/1.1",
        )
        await exchange.run(dispatcher, sub)
        await stream.drain()
        return exchange.keep_alive


async def _respond(stream: Stream, response: bytes) -> None:
    stream.write(response)
    await stream.drain()


async def _next_head(stream: Stream, reader: HttpRequestReader) -> RequestHeadReceived | None:
    """The next request head, or None when the client ended the connection."""
    while True:
        event = reader.next_event()
        if event is None:
            reader.receive_data(await stream.read(READ_CHUNK_BYTES))
            continue
        if isinstance(event, RequestHeadReceived):
            return event
        if isinstance(event, ClientClosed):
            return None
        raise RemoteProtocolError(f"unexpected {type(event).__name__}")  # pragma: no cover


class _Exchange:
    """One forwarded request, as the stream the outbound relays (the inbound side).

    ``read`` yields the re-written request head and body (pulled from the client
    through the request reader), then waits until the response is complete and
    reports the end: like 4.34, the origin sees no half-close before its response.
    ``write`` takes the origin's bytes, parses the response and writes it to the
    client as 4.34 re-writes it; bytes after the response are dropped.
    """

    can_push = False  # parsed request by request: read by the relay's tasks

    def __init__(
        self,
        client: Stream,
        reader: HttpRequestReader,
        plan: ForwardPlan,
        request: ProxyRequest,
        slog: SessionLogger,
    ) -> None:
        self._client = client
        self._slog = slog
        self._reader = reader
        self._plan = plan
        self._method = request.method
        self._request_keep_alive = request.keep_alive
        self._pending = plan.head
        self._request_done = False
        self._responses = HttpResponseReader(request.method)
        self._response: ResponsePlan | None = None
        self._done = asyncio.Event()
        self.keep_alive = False

    async def run(self, dispatcher: Dispatch, session: Session) -> None:
        """Dispatch, and return once the response is complete (or has failed)."""
        task = asyncio.ensure_future(dispatcher.dispatch(session, self))
        done = asyncio.ensure_future(self._done.wait())
        try:
            await asyncio.wait((task, done), return_when=asyncio.FIRST_COMPLETED)
        finally:
            # The response is complete: like 4.34 the connection moves on without
            # waiting for the origin to close; the outbound's relay is ended here.
            task.cancel()
            done.cancel()
            await asyncio.wait((task, done))
        error = None if task.cancelled() else task.exception()
        if error is not None and not isinstance(error, (ProtocolError, OSError)):
            raise error
        if not self._done.is_set():
            self._fail(error or RemoteProtocolError("no response from the origin"))

    def _fail(self, error: BaseException) -> None:
        self._slog.info("http: failed to read response: %s", error)
        if self._response is None:
            # 4.34 answers 503 and, after Proxy-Connection: keep-alive, reads on.
            self._client.write(RESPONSE_503)
            self.keep_alive = self._request_keep_alive
        else:
            self.keep_alive = False
        self._done.set()

    # -- Stream: the outbound reads the request ----------------------------------------
    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        while not self._pending:
            if self._request_done:
                await self._done.wait()
                return b""
            event = self._reader.next_event()
            if event is None:
                self._reader.receive_data(await self._client.read(READ_CHUNK_BYTES))
            elif isinstance(event, RequestBodyReceived):
                self._pending = encode_chunk(event.data) if self._plan.chunked else event.data
            elif isinstance(event, RequestEnded):
                self._request_done = True
                if self._plan.chunked:
                    self._pending = encode_last_chunk(event.trailers if self._plan.trailers else ())
            else:  # pragma: no cover - the reader stops at the end of a request
                raise RemoteProtocolError(f"unexpected {type(event).__name__}")
        data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return data

    # -- Stream: the outbound writes the response --------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._done.is_set() or not data:
            return
        self._responses.receive_data(bytes(data))
        self._process()

    def write_eof(self) -> None:
        if self._done.is_set():
            return
        self._responses.receive_data(b"")
        self._process()

    def _process(self) -> None:
        try:
            while not self._done.is_set():
                event = self._responses.next_event()
                if event is None:
                    return
                self._on_response_event(event)
        except RemoteProtocolError as exc:
            self._fail(exc)

    def _on_response_event(
        self,
        event: ResponseHeadReceived | InformationalReceived | ResponseBodyReceived | ResponseEnded,
    ) -> None:
        if isinstance(event, InformationalReceived):
            self._client.write(encode_informational(event.response))
        elif isinstance(event, ResponseHeadReceived):
            self._response = plan_client_response(event.response, self._method)
            self._client.write(self._response.head)
        elif isinstance(event, ResponseBodyReceived):
            assert self._response is not None
            if self._response.body is BodyMode.CHUNKED:
                self._client.write(encode_chunk(event.data))
            elif self._response.body is BodyMode.RAW:
                self._client.write(event.data)
        else:
            assert self._response is not None
            tail = self._response.tail
            if self._response.body is BodyMode.CHUNKED:
                trailers = event.trailers if self._response.trailers else ()
                tail = encode_last_chunk(trailers) + tail
            if tail:
                self._client.write(tail)
            self.keep_alive = self._request_keep_alive and self._response.keep_alive
            self._done.set()

    async def drain(self) -> None:
        await self._client.drain()

    def close(self) -> None:
        """The client connection belongs to the inbound."""

    async def wait_closed(self) -> None:
        """Nothing of its own to wait for."""

    @property
    def peer(self) -> tuple[str, int] | None:
        return self._client.peer

    @property
    def local(self) -> tuple[str, int] | None:
        return self._client.local
