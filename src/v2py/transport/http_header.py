"""The TCP ``http`` header (v2ray-core 4.34 ``transport/internet/headers/http``): an
HTTP-looking request and response in front of the stream, as docs/spec/transports.md
section 7 describes.

* Client: the request head (method, a path picked at random, version, headers with a
  value picked at random each) goes out in the same write as the first bytes; the
  response head is skipped up to its blank line (at most 8192 bytes), unchecked.
* Server: the request head is read (at most 8192 bytes); its decoded URL path must
  equal one of ``path`` (query ignored, absolute form accepted), nothing else is
  checked. Incomplete heads are judged as Go does, so garbage fails at once. The
  response head goes out in front of the first response bytes. A connection closed
  before that gets ``404`` (path mismatch) or ``400`` (anything else, including a
  good head whose proxy gave up) with ``Connection: close``.

On the wire it sits above TLS: TCP, TLS, this header, then the proxy protocol.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable
from email.utils import formatdate

from v2py.config.stream import HttpRequestConfig, HttpResponseConfig
from v2py.protocol.http_head import (
    HEAD_END,
    RequestHeadError,
    parse_request_head,
    partial_head_ok,
    request_path,
)
from v2py.transport.layer import InnerTransport, LayerHandler, LayerListener
from v2py.transport.stream import READ_CHUNK_BYTES, PushLayer, PushTarget, Stream

log = logging.getLogger(__name__)

__all__ = ["HttpHeaderStream", "HttpHeaderTransport", "HttpHeaderError"]

#: 4.34 ``maxHeaderLength``.
MAX_HEAD_BYTES = 8192
_ERROR_HEADERS = (
    ("Connection", ("close",)),
    ("Cache-Control", ("private",)),
    ("Content-Length", ("0",)),
)


class HttpHeaderError(ConnectionError):
    """The peer's head is missing, too long or (server) not an accepted request."""


def _pick(values: tuple[str, ...], choice: Callable[[int], int]) -> str:
    if not values:
        return ""
    return values[0] if len(values) == 1 else values[choice(len(values))]


def request_head(config: HttpRequestConfig, choice: Callable[[int], int]) -> bytes:
    """The client's request head (4.34 ``GetClientWriter``)."""
    lines = [
        " ".join(
            (
                config.effective_method,
                _pick(config.effective_paths, choice),
                "HTTP/" + config.effective_version,
            )
        )
    ]
    lines.extend(f"{name}: {_pick(values, choice)}" for name, values in config.effective_headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def response_head(
    version: str,
    status: tuple[str, str],
    headers: tuple[tuple[str, tuple[str, ...]], ...],
    choice: Callable[[int], int],
    date: str,
) -> bytes:
    """A response head (4.34 ``formResponseHeader``: ``Date`` added unless configured)."""
    lines = [f"HTTP/{version} {status[0]} {status[1]}"]
    lines.extend(f"{name}: {_pick(values, choice)}" for name, values in headers)
    if not any(name.lower() == "date" for name, _ in headers):
        lines.append(f"Date: {date}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def _error_head(status: tuple[str, str], date: str) -> bytes:
    return response_head("1.1", status, _ERROR_HEADERS, lambda n: 0, date)


class HttpHeaderStream(PushLayer):
    """A stream behind the header; pushes (as the stream below) once the peer's head
    has been read."""

    def __init__(
        self,
        below: Stream,
        *,
        outgoing_head: bytes,
        server_paths: tuple[str, ...] | None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._below = below
        self._out_head: bytes | None = outgoing_head
        self._paths = server_paths
        self._in_done = False
        self._rest = b""
        self._failure: tuple[str, str] | None = None
        self._clock = clock
        self._push: PushTarget | None = None

    @property
    def can_push(self) -> bool:
        return self._in_done and bool(getattr(self._below, "can_push", False))

    def _take_held(self) -> bytes:
        rest, self._rest = self._rest, b""
        return rest

    async def _read_head(self) -> None:
        buffer = bytearray()
        server = self._paths is not None
        try:
            while True:
                end = buffer.find(HEAD_END)
                if end >= 0:
                    head = bytes(buffer[: end + len(HEAD_END)])
                    self._rest = bytes(buffer[end + len(HEAD_END) :])
                    break
                if len(buffer) >= MAX_HEAD_BYTES:
                    raise HttpHeaderError("header too long")
                data = await self._below.read()
                if not data:
                    raise HttpHeaderError("connection closed before the header ended")
                buffer += data
                if (
                    server
                    and buffer.find(HEAD_END) < 0
                    and len(buffer) >= len(HEAD_END)
                    and not partial_head_ok(bytes(buffer[: -len(HEAD_END)]))
                ):
                    raise HttpHeaderError("malformed request head")
            if server:
                assert self._paths is not None
                try:
                    parsed = parse_request_head(head)
                except RequestHeadError as exc:
                    raise HttpHeaderError(str(exc)) from None
                if request_path(parsed.target) not in self._paths:
                    self._failure = ("404", "Not Found")
                    raise HttpHeaderError("header mismatch")
        except HttpHeaderError:
            if self._failure is None:
                self._failure = ("400", "Bad Request")
            raise
        self._in_done = True

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        if not self._in_done:
            await self._read_head()
        rest = self._rest
        if rest:
            self._rest = rest[max_bytes:]
            return rest[:max_bytes]
        below: Stream = self._below
        return await below.read(max_bytes)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        head = self._out_head
        if head is not None:
            self._out_head = None
            self._below.write(head + bytes(data))
            return
        self._below.write(data)

    async def drain(self) -> None:
        await self._below.drain()

    def write_eof(self) -> None:
        self._below.write_eof()

    def close(self) -> None:
        if self._paths is not None and self._out_head is not None:
            # 4.34 Conn.Close: the response head never went out, so the request was
            # probably not valid; answer with an error head.
            self._out_head = None
            clock = self._clock
            date = formatdate(clock() if clock is not None else None, usegmt=True)
            with contextlib.suppress(ConnectionError, OSError):
                self._below.write(_error_head(self._failure or ("400", "Bad Request"), date))
        self._below.close()

    def abort(self) -> None:
        """Close at once."""
        abort = getattr(self._below, "abort", None)
        if abort is not None:
            abort()
        else:
            self._below.close()

    async def wait_closed(self) -> None:
        await self._below.wait_closed()

    @property
    def peer(self) -> tuple[str, int] | None:
        below: Stream = self._below
        return below.peer

    @property
    def local(self) -> tuple[str, int] | None:
        below: Stream = self._below
        return below.local


class HttpHeaderTransport:
    """``tcpSettings.header.type: "http"`` over TCP (or TLS over TCP)."""

    def __init__(
        self,
        inner: InnerTransport,
        request: HttpRequestConfig,
        response: HttpResponseConfig,
        *,
        choice: Callable[[int], int] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.inner = inner
        self.request = request
        self.response = response
        self._choice = choice or random.SystemRandom().randrange
        self._clock = clock

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def listener_ends_sessions(self) -> bool:
        return self.inner.listener_ends_sessions

    async def dial(self, host: str, port: int, *, timeout: float | None = None) -> Stream:
        below = await self.inner.dial(host, port, timeout=timeout)
        head = request_head(self.request, self._choice)
        return HttpHeaderStream(below, outgoing_head=head, server_paths=None)

    async def listen(
        self, host: str, port: int, handler: LayerHandler, *, reuse_port: bool = False
    ) -> LayerListener:
        paths = self.request.effective_paths
        response = self.response

        async def accept(below: Stream) -> None:
            clock = self._clock
            date = formatdate(clock() if clock is not None else None, usegmt=True)
            head = response_head(
                response.effective_version,
                response.effective_status,
                response.effective_headers,
                self._choice,
                date,
            )
            stream = HttpHeaderStream(below, outgoing_head=head, server_paths=paths, clock=clock)
            try:
                await handler(stream)
            finally:
                stream.close()  # answers a request that got no response (4.34 Conn.Close)

        return await self.inner.listen(host, port, accept, reuse_port=reuse_port)

    async def aclose(self) -> None:
        await self.inner.aclose()
