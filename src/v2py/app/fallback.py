"""Handing a connection that is not the inbound's protocol to a fallback (v2ray-core 4.34
``fallbacks`` of the VLESS and Trojan inbounds): the fallback is picked by ALPN and
request path (``protocol/fallback.py``), dialled (TCP or a Unix socket, 5 attempts as
4.34's retry), given the PROXY header its ``xver`` asks for, then the bytes already
read, and the two connections are relayed under the level-0 policy."""

from __future__ import annotations

import asyncio
import logging

from v2py.app.policy import Timeouts
from v2py.app.relay import relay
from v2py.app.stats import negotiated_alpn, uncounted
from v2py.protocol.fallback import FallbackTable, FallbackTarget, proxy_header
from v2py.transport.stream import READ_CHUNK_BYTES, PushTarget, Stream, StreamLayer

__all__ = ["serve_fallback"]

log = logging.getLogger(__name__)

#: 4.34's ``retry.ExponentialBackoff(5, 100)`` around the fallback's dial.
_DIAL_DELAYS_S = (0.0, 0.1, 0.2, 0.3, 0.4)
#: Go's system dialer gives up after this long (as v2py's other dials).
_DIAL_TIMEOUT_S = 16.0


async def _dial(target: FallbackTarget) -> Stream:
    if target.network == "unix":
        from v2py.transport.ds import dial_unix_address

        return await dial_unix_address(target.address, timeout=_DIAL_TIMEOUT_S)
    from v2py.transport.tcp import dial_tcp

    assert isinstance(target.address, str)
    host, _, port = target.address.rpartition(":")
    if not port.isdigit():
        raise OSError(f"address {target.address}: missing port in address")
    return await dial_tcp(host.strip("[]"), int(port), timeout=_DIAL_TIMEOUT_S)


async def serve_fallback(
    stream: Stream,
    first: bytes,
    table: FallbackTable,
    timeouts: Timeouts,
    slog: logging.LoggerAdapter[logging.Logger],
    *,
    by_alpn: bool = True,
) -> None:
    """Serve ``stream`` (whose first read was ``first``) from its fallback until either
    side ends or a timeout; the caller closes ``stream``. ``by_alpn`` False: the
    connection's ALPN is not looked at (4.34's Trojan inbound never sees it)."""
    try:
        target = table.pick(negotiated_alpn(stream) if by_alpn else None, first)
    except ValueError as exc:
        slog.warning("fallback: %s", exc)
        return
    last: BaseException | None = None
    for delay in _DIAL_DELAYS_S:
        if delay:
            await asyncio.sleep(delay)
        try:
            below = await _dial(target)
            break
        except (OSError, TimeoutError) as exc:
            last = exc
    else:
        from v2py.transport.ds import shown_address

        slog.warning("fallback: failed to dial to %s: %s", shown_address(target.address), last)
        return
    try:
        head = b""
        if target.xver:
            remote, local = stream.peer, stream.local
            if remote is None or local is None:
                slog.warning("fallback: no address for the PROXY header")
                return
            head = proxy_header(target.xver, remote, local)
        if head:
            below.write(head)  # 4.34 writes the PROXY header on its own, then the bytes
        if first:
            below.write(first)
        if _is_tls(stream):
            # 4.34 closes a TLS client connection as soon as the fallback's answer ended
            # (its TLS conn is a buffer writer, closed at the end of the copy); a plain
            # TCP one stays until the uplinkOnly timeout, as the relay does.
            below = _ClosesAtEnd(below, stream)
        await relay(stream, below, timeouts)
    except OSError as exc:
        slog.info("fallback ends: %s", exc)
    finally:
        below.close()


def _is_tls(stream: Stream) -> bool:
    """Whether the connection is TLS itself (not WebSocket or another layer over it)."""
    return hasattr(uncounted(stream), "alpn")


class _ClosesAtEnd(StreamLayer):
    """The fallback's connection, which closes ``client`` when it ends (pull mode)."""

    def __init__(self, below: Stream, client: Stream) -> None:
        self._below = below
        self._push: PushTarget | None = None
        self._client = client

    @property
    def can_push(self) -> bool:
        return False

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        below: Stream = self._below
        data = await below.read(max_bytes)
        if not data:
            self._client.close()
        return data
