"""The ``http`` inbound: an HTTP forward proxy (v2ray-core 4.34 ``proxy/http/server.go``).

* ``CONNECT host:port`` -> ``200 Connection established``, then a raw tunnel.
* An absolute-URI request (``GET http://host/path``) is rewritten to origin-form and
  forwarded with ``Connection: close``: one request per connection, the origin's
  response is relayed as is and the connection ends with it.
* Origin-form requests are accepted only with ``allow_transparent`` (destination
  from ``Host``), else ``400``.
* With ``accounts``, a missing or wrong ``Proxy-Authorization: Basic`` gets 4.34's
  ``407`` and the connection is closed.
* A malformed head is not answered (4.34 closes without a response).
"""

from __future__ import annotations

import asyncio
import logging

from v2py.app.dispatcher import PrefixedStream
from v2py.app.handler import Dispatch
from v2py.app.policy import PolicyTable
from v2py.app.session import Session, SniffingSettings, session_logger
from v2py.common.net import tcp
from v2py.errors import ProtocolError, RemoteProtocolError
from v2py.protocol.http_proxy import (
    HEAD_MAX_BYTES,
    RESPONSE_400,
    RESPONSE_407,
    RESPONSE_CONNECT_OK,
    HttpProxyRequest,
    check_basic_auth,
    decode_request_head,
    encode_origin_request,
    find_head_end,
)
from v2py.transport.stream import READ_CHUNK_BYTES, Stream

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
        """Serve one accepted connection; logs failures with the session id and always
        closes ``stream``."""
        slog = session_logger(log, session)
        timeouts = self._policy.for_level(self._user_level)
        try:
            try:
                async with asyncio.timeout(timeouts.handshake):
                    parsed = await self._read_head(stream)
            except TimeoutError:
                slog.info("http: request head timed out")
                return
            if parsed is None:
                return
            request, rest = parsed
            if self._accounts:
                user = check_basic_auth(request, self._accounts)
                if user is None:
                    slog.info("http: proxy authentication failed")
                    await self._respond(stream, RESPONSE_407)
                    return
                session.user_email = user
            if not request.host or (not request.absolute and not self._allow_transparent):
                slog.info("http: not a proxy request: %s %s", request.method, request.target)
                await self._respond(stream, RESPONSE_400)
                return
            if request.is_connect:
                stream.write(RESPONSE_CONNECT_OK)
                prefix = rest
            else:
                prefix = encode_origin_request(request) + rest
            session.destination = tcp(request.host, request.port)
            session.level = self._user_level
            session.sniffing = self._sniffing
            await dispatcher.dispatch(session, PrefixedStream(prefix, stream))
        except ProtocolError as exc:
            slog.info("http: %s", exc)
        except OSError as exc:
            slog.info("http connection ended: %s", exc)
        finally:
            stream.close()

    @staticmethod
    async def _respond(stream: Stream, response: bytes) -> None:
        stream.write(response)
        await stream.drain()

    @staticmethod
    async def _read_head(stream: Stream) -> tuple[HttpProxyRequest, bytes] | None:
        buf = bytearray()
        while True:
            data = await stream.read(READ_CHUNK_BYTES)
            if not data:
                return None
            start = max(0, len(buf) - 3)
            buf += data
            if find_head_end(buf, start) is None:
                if len(buf) > HEAD_MAX_BYTES:
                    raise RemoteProtocolError("request head too large")
                continue
            parsed = decode_request_head(buf)
            if parsed is None:  # pragma: no cover - find_head_end said complete
                continue
            request, end = parsed
            return request, bytes(buf[end:])
