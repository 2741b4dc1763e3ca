"""Links an inbound session to an outbound (v2ray-core app/dispatcher/default.go).

Sniffing happens here: up to two waits of 100 ms for the client's first bytes,
then HTTP Host / TLS SNI may replace the destination address (port kept).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from v2py.app.packet import PacketLink
from v2py.app.session import Session
from v2py.common.net import Network
from v2py.protocol.sniff import SniffStatus, sniff
from v2py.proxy.base import Outbound
from v2py.transport.stream import READ_CHUNK_BYTES, PushLayer, PushTarget, Stream

log = logging.getLogger(__name__)
access_log = logging.getLogger("v2py.access")


def _access_log_wanted() -> bool:
    """False when an access record would reach no output: level off, or (``"access":
    "none"``) only NullHandlers and no propagation; skips building the record."""
    if not access_log.isEnabledFor(logging.INFO):
        return False
    if access_log.propagate:
        return True
    return not all(isinstance(h, logging.NullHandler) for h in access_log.handlers)


SNIFF_ATTEMPTS = 2
SNIFF_WAIT_S = 0.1
SNIFF_MAX_BYTES = 2048


class PrefixedStream(PushLayer):
    """A stream that first returns ``prefix`` (bytes already read while sniffing)."""

    def __init__(self, prefix: bytes, inner: Stream, *, eof: bool = False) -> None:
        self._prefix = prefix
        self._inner = inner
        self._eof = eof
        self._below = inner
        self._push: PushTarget | None = None

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix[:max_bytes], self._prefix[max_bytes:]
            return data
        if self._eof:
            return b""
        return await self._inner.read(max_bytes)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._inner.write(data)

    async def drain(self) -> None:
        await self._inner.drain()

    def write_eof(self) -> None:
        self._inner.write_eof()

    def close(self) -> None:
        self._inner.close()

    async def wait_closed(self) -> None:
        await self._inner.wait_closed()

    @property
    def peer(self) -> tuple[str, int] | None:
        return self._inner.peer

    @property
    def local(self) -> tuple[str, int] | None:
        return self._inner.local

    # -- push mode (PushLayer): the sniffed prefix first, then the inner stream --------
    def _take_held(self) -> bytes:
        held, self._prefix = self._prefix, b""
        return held

    def _held_end(self) -> bool:
        return self._eof


async def sniff_stream(session: Session, stream: Stream) -> Stream:
    """Read the client's first bytes, maybe override ``session.destination``; return a
    stream that replays those bytes."""
    buf = b""
    eof = False
    for _ in range(SNIFF_ATTEMPTS):
        try:
            async with asyncio.timeout(SNIFF_WAIT_S):
                while True:
                    data = await stream.read(SNIFF_MAX_BYTES)
                    if not data:
                        eof = True
                        break
                    buf += data
                    result = sniff(buf[:SNIFF_MAX_BYTES])
                    if result.status is not SniffStatus.NEED_MORE or len(buf) >= SNIFF_MAX_BYTES:
                        break
        except TimeoutError:
            pass
        if eof or buf:
            break
    if buf:
        result = sniff(buf[:SNIFF_MAX_BYTES])
        if result.status is SniffStatus.FOUND:
            session.sniffed_protocol = result.protocol
            dest = session.destination
            if (
                result.domain
                and dest is not None
                and any(result.protocol.startswith(p) for p in session.sniffing.dest_override)
            ):
                session.destination = dest.with_address(result.domain)
                log.info("[%d] sniffed domain: %s", session.id, result.domain)
    return PrefixedStream(buf, stream, eof=eof)


class Dispatcher:
    """Picks the outbound (the first one: v2py has no routing rules yet) and runs it."""

    def __init__(self, outbounds: Sequence[Outbound]) -> None:
        if not outbounds:
            raise ValueError("at least one outbound is required")
        self._outbounds = list(outbounds)
        self._by_tag = {o.tag: o for o in outbounds if o.tag}

    def pick(self, session: Session) -> Outbound:
        return self._outbounds[0]

    def _log_access(self, session: Session, outbound: Outbound) -> None:
        if not _access_log_wanted():
            return
        access_log.info(
            "from %s accepted %s [%s -> %s]%s",
            session.source_text(),
            session.destination,
            session.inbound_tag or "?",
            outbound.tag or "?",
            f" email: {session.user_email}" if session.user_email else "",
        )

    async def dispatch(self, session: Session, stream: Stream) -> None:
        """Sniff if enabled, then hand the stream to the chosen outbound."""
        dest = session.destination
        if dest is not None and dest.network is Network.TCP and session.sniffing.enabled:
            stream = await sniff_stream(session, stream)
        outbound = self.pick(session)
        self._log_access(session, outbound)
        await outbound.handle(session, stream)

    async def dispatch_packets(self, session: Session, link: PacketLink) -> None:
        """UDP is never sniffed; hand the link to the chosen outbound."""
        outbound = self.pick(session)
        self._log_access(session, outbound)
        await outbound.handle_packets(session, link)
