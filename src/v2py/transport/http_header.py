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
from v2py.transport.layer import InnerTransport, LayerAccept, LayerStream, LayerTransport
from v2py.transport.stream import READ_CHUNK_BYTES, PrefixedStream, Stream

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


class HttpHeaderStream(LayerStream, PrefixedStream):
    """A stream behind the header; pushes (as the stream below) once the peer's head
    has been read. What came after the head is read first (the prefix)."""

    def __init__(
        self,
        below: Stream,
        *,
        outgoing_head: bytes,
        server_paths: tuple[str, ...] | None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(b"", below)
        self._out_head: bytes | None = outgoing_head
        self._paths = server_paths
        self._in_done = False
        self._failure: tuple[str, str] | None = None
        self._clock = clock

    @property
    def can_push(self) -> bool:
        return self._in_done and bool(getattr(self._below, "can_push", False))

    async def _read_head(self) -> None:
        buffer = bytearray()
        server = self._paths is not None
        try:
            while True:
                end = buffer.find(HEAD_END)
                if end >= 0:
                    head = bytes(buffer[: end + len(HEAD_END)])
                    self._prefix = bytes(buffer[end + len(HEAD_END) :])
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
        return await super().read(max_bytes)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        head = self._out_head
        if head is not None:
            self._out_head = None
            self._below.write(head + bytes(data))
            return
        self._below.write(data)

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


class HttpHeaderTransport(LayerTransport):
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
        super().__init__(inner)
        self.request = request
        self.response = response
        self._choice = choice or random.SystemRandom().randrange
        self._clock = clock

    async def dial(self, host: str, port: int, *, timeout: float | None = None) -> Stream:
        below = await self.inner.dial(host, port, timeout=timeout)
        head = request_head(self.request, self._choice)
        return HttpHeaderStream(below, outgoing_head=head, server_paths=None)

    def _accepting(self) -> LayerAccept:
        """Each accepted stream answers, when closed, a request that got no response
        (4.34 Conn.Close)."""
        paths = self.request.effective_paths
        response = self.response

        async def accept(below: Stream) -> Stream | None:
            clock = self._clock
            date = formatdate(clock() if clock is not None else None, usegmt=True)
            head = response_head(
                response.effective_version,
                response.effective_status,
                response.effective_headers,
                self._choice,
                date,
            )
            return HttpHeaderStream(below, outgoing_head=head, server_paths=paths, clock=clock)

        return accept
